"""The pointing game's difficult subset: TorchRay's file format, its rule for images it does not
list, the installed package's files, and the errors that say how to get them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sise.errors import SiseError
from sise.eval.data import EvalPair, read_difficult_subset


def _pair(stem: str, class_index: int) -> EvalPair:
    return EvalPair("x", Path(f"/data/{stem}.jpg"), class_index, "c", [(0, 0, 1, 1)], 4, 4)


def test_flags_and_images_the_file_does_not_list(tmp_path: Path) -> None:
    flags = tmp_path / "flags.txt"
    flags.write_text("000001\t0\t1\t0\n000002\t1\t0\t0\n")  # TorchRay's: name, tab, 0/1 per class
    subset = read_difficult_subset("voc", flags)
    assert subset.source == str(flags)
    assert [subset.contains(_pair("000001", c)) for c in range(3)] == [False, True, False]
    assert [subset.contains(_pair("000002", c)) for c in range(3)] == [True, False, False]
    # TorchRay skips only what a listed image leaves unflagged: an unlisted image is in
    assert subset.contains(_pair("000003", 0)) and subset.contains(_pair("000003", 2))
    with pytest.raises(SiseError, match=r"gives 3 class flags .* class index is 5"):
        subset.contains(_pair("000001", 5))


def test_a_file_in_another_format_or_missing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("000001 0 1\n")
    with pytest.raises(SiseError, match="line 1: expected an image name then tab-separated"):
        read_difficult_subset("voc", broken)
    with pytest.raises(SiseError, match="does not exist"):
        read_difficult_subset("voc", tmp_path / "none.txt")
    with pytest.raises(SiseError, match="exists for VOC 2007 test and COCO 2014 val, not for"):
        read_difficult_subset("synthetic")


def test_without_torchray_the_error_says_how_to_get_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules: importing it raises ModuleNotFoundError, as without the package
    monkeypatch.setitem(sys.modules, "torchray", None)
    monkeypatch.setitem(sys.modules, "torchray.benchmark", None)
    with pytest.raises(SiseError) as error:
        read_difficult_subset("coco")
    message = str(error.value)
    assert "pointing_game_ebp_coco_difficult.txt" in message
    assert "pip install torchray==1.0.0.2" in message
    assert "--pointing-difficult-flags FILE" in message


def test_the_installed_packages_files() -> None:
    pytest.importorskip("torchray.benchmark", reason="torchray is not installed")
    voc = read_difficult_subset("voc")
    assert len(voc.flags) == 4952 and len(voc.flags["000001"]) == 20  # VOC 2007 test
    assert voc.contains(_pair("000001", 11)) and not voc.contains(_pair("000001", 14))
    coco = read_difficult_subset("coco")
    assert all(len(flags) == 80 for flags in coco.flags.values())
    assert coco.source == "torchray.benchmark/pointing_game_ebp_coco_difficult.txt"
