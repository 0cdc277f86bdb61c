"""The pointing game's "difficult" subset of PASCAL VOC 2007 test and MS COCO 2014 val.

Zhang et al. ("Top-down Neural Attention by Excitation Backprop", ECCV 2016) report the pointing
game on all (image, class) pairs and on a "difficult" subset: images where the class's boxes
cover less than a quarter of the image and another class is present. TorchRay
(github.com/facebookresearch/TorchRay, ``torchray.benchmark.pointing_game``) publishes that
subset as two tab-separated files in its package, ``pointing_game_ebp_voc07_difficult.txt`` and
``pointing_game_ebp_coco_difficult.txt``: one line per image, its name (the image file's name
without extension: ``000001``, ``COCO_val2014_000000262148``) then one 0/1 flag per class in the
dataset's class order (20 for VOC, 80 for COCO).

TorchRay's rule, followed here: a pair is in the subset when its image's line flags its class,
*or when its image has no line* (TorchRay skips only the pairs that a listed image leaves
unflagged). The files are TorchRay's (CC-BY-NC) and are not shipped with sise: they are read from
the installed ``torchray`` package or from a path the user gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sise.errors import SiseError
from sise.eval.data.pairs import EvalPair

__all__ = ["DIFFICULT_FILES", "DifficultSubset", "read_difficult_subset"]

#: The dataset kind → TorchRay's file of its difficult subset.
DIFFICULT_FILES: dict[str, str] = {
    "voc": "pointing_game_ebp_voc07_difficult.txt",
    "coco": "pointing_game_ebp_coco_difficult.txt",
}


@dataclass(frozen=True)
class DifficultSubset:
    """The difficult subset: image name → one flag per class.

    Attributes:
        flags: image name (file name without extension) → per-class flags.
        source: where the flags were read from.
    """

    flags: Mapping[str, tuple[bool, ...]]
    source: str

    def contains(self, pair: EvalPair) -> bool:
        """Whether ``pair`` is in the subset: its image's flag for its class, or True for an
        image the file does not list (TorchRay's rule)."""
        flags = self.flags.get(pair.image_path.stem)
        if flags is None:
            return True
        if pair.class_index >= len(flags):
            raise SiseError(
                f"{self.source} gives {len(flags)} class flags for image "
                f"{pair.image_path.stem}, but the pair's class index is {pair.class_index}"
            )
        return flags[pair.class_index]


def _parse(text: str, source: str) -> dict[str, tuple[bool, ...]]:
    flags: dict[str, tuple[bool, ...]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, *values = line.rstrip("\n").split("\t")
        if not values or any(v.strip() not in ("0", "1") for v in values):
            raise SiseError(
                f"{source}, line {number}: expected an image name then tab-separated 0/1 class "
                "flags (TorchRay's difficult-subset format)"
            )
        flags[name.strip()] = tuple(v.strip() == "1" for v in values)
    if not flags:
        raise SiseError(f"{source} lists no image")
    return flags


def read_difficult_subset(kind: str, path: str | Path | None = None) -> DifficultSubset:
    """The difficult subset of ``kind`` (``"voc"`` or ``"coco"``), read from ``path`` or, without
    one, from the installed ``torchray`` package.

    Raises:
        SiseError: a missing file (saying how to get it), a file in another format, or a dataset
            kind without a difficult subset.
    """
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise SiseError(f"the difficult-subset file {str(file)!r} does not exist")
        return DifficultSubset(_parse(file.read_text(), str(file)), str(file))
    if kind not in DIFFICULT_FILES:
        raise SiseError(
            f"the pointing game's difficult subset exists for VOC 2007 test and COCO 2014 val, "
            f"not for the {kind} dataset: leave out pointing_difficult, or give a subset file in "
            "TorchRay's format with --pointing-difficult-flags FILE"
        )
    name = DIFFICULT_FILES[kind]
    try:
        from importlib import resources

        text = (resources.files("torchray.benchmark") / name).read_text()
    except (ImportError, FileNotFoundError) as error:
        raise SiseError(
            f"pointing_difficult needs TorchRay's file {name} ({error}): it comes with the "
            "torchray package (pip install torchray==1.0.0.2; CC-BY-NC, so sise does not ship "
            "it), or give a copy of it with --pointing-difficult-flags FILE"
        ) from None
    return DifficultSubset(_parse(text, f"torchray.benchmark/{name}"), f"torchray.benchmark/{name}")
