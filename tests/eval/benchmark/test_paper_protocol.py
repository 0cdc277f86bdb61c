"""The paper's protocol end to end on miniature VOC 2007 and COCO 2014 trees in their real layouts
(tests/paper_trees.py), with TorchRay-layout ResNet-50 checkpoints of random weights at a 64 px
shorter side: the pairs (difficult and crowd objects), Caffe's non-square inputs, TorchRay's
pointing game with its difficult subset, and the paper's values beside the table.

What tests/eval/data/test_voc.py and test_coco.py hold already (the readers' pairs, difficult
and crowd flags, boxes and masks on their own fixtures) is not repeated: here the trees go
through ``sise benchmark``'s whole path."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest
import torch
from paper_trees import (
    COCO_DIFFICULT,
    COCO_PAIRS,
    VOC_DIFFICULT,
    VOC_PAIRS,
    write_coco_tree,
    write_difficult_files,
    write_voc_tree,
)
from torchray_files import torchray_file_state

from sise.eval.benchmark import BenchmarkConfig, run_benchmark
from sise.eval.benchmark import run as running
from sise.eval.benchmark.paper import PAPER_METRICS, PAPER_VALUES
from sise.eval.benchmark.scoring import MetricSettings
from sise.eval.data import load_dataset, select_pairs

METRICS = [*PAPER_METRICS, "pointing_all", "pointing_difficult"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paper")
    voc_flags, coco_flags = write_difficult_files(root)
    files = {"voc": write_voc_tree(root), "coco": write_coco_tree(root)}
    files |= {"voc_flags": voc_flags, "coco_flags": coco_flags}
    for dataset, classes in (("voc", 20), ("coco", 80)):
        files[f"{dataset}_ckpt"] = root / f"resnet50_{dataset}.pth"
        torch.save(torchray_file_state("resnet50", classes), files[f"{dataset}_ckpt"])
    return files


def _run(trees: dict[str, Path], dataset: str, tmp_path: Path, **changes: object) -> object:
    spec = {"voc": "voc2007", "coco": "coco2014"}[dataset]
    values: dict[str, object] = dict(
        dataset=f"{spec}:{trees[dataset]}",
        model=f"torchray-resnet50:{trees[f'{dataset}_ckpt']}",
        methods=["gradcam"],
        metrics=METRICS,
        db=tmp_path / f"{dataset}.sqlite",
        out=tmp_path,
        input_size=64,
        metric_settings=MetricSettings(pointing_difficult_flags=str(trees[f"{dataset}_flags"])),
        progress=False,
    )
    values.update(changes)
    return run_benchmark(BenchmarkConfig(**values))  # type: ignore[arg-type]


def test_pairs_skip_difficult_only_classes_and_keep_crowds(trees: dict[str, Path]) -> None:
    _, voc, _ = load_dataset(f"voc2007:{trees['voc']}")
    pairs = select_pairs(voc, None)
    assert [(p.image_id, p.class_name) for p in pairs] == VOC_PAIRS
    dog = pairs[0]  # its difficult second dog stays in its boxes
    assert dog.difficult == [False, True] and dog.boxes == [(4, 4, 20, 20), (29, 9, 45, 30)]
    _, coco, _ = load_dataset(f"coco2014:{trees['coco']}")
    pairs = select_pairs(coco, None)
    assert [(p.image_id, p.class_name) for p in pairs] == COCO_PAIRS
    assert [p.crowd for p in pairs] == [[True], [False], [False, False]]
    assert [len(p.segmentations) for p in pairs] == [1, 1, 2]


def test_voc_run_has_the_papers_table_and_torchrays_pointing_game(
    trees: dict[str, Path], tmp_path: Path
) -> None:
    result = _run(trees, "voc", tmp_path)
    assert result is not None
    assert result.pairs == 4 and result.counts == {"gradcam": 4}  # type: ignore[attr-defined]
    counts = result.metric_counts  # type: ignore[attr-defined]
    assert counts["pointing_all"] == {"gradcam": 4}
    assert counts["pointing_difficult"] == {"gradcam": len(VOC_DIFFICULT)}
    with sqlite3.connect(tmp_path / "voc.sqlite") as conn:
        difficult = conn.execute(
            "SELECT image_id, class_name FROM results WHERE metric = 'pointing_difficult' "
            "ORDER BY image_id, class_index"
        ).fetchall()
        shapes = dict(conn.execute("SELECT image_id, height || 'x' || width FROM maps").fetchall())
    assert difficult == VOC_DIFFICULT
    # Caffe's resize: the shorter side to 64 px, int(64 * 48 / 36) = 85 on the other
    assert shapes == {"000001": "64x85", "000002": "85x64", "000003": "64x85"}

    # the paper's values beside the measured ones (VOC, ResNet-50: Grad-CAM is published)
    assert result.paper_setting == ("voc", "resnet50")  # type: ignore[attr-defined]
    compared = result.paper["gradcam"]  # type: ignore[attr-defined]
    assert set(compared) == set(PAPER_METRICS)
    published = PAPER_VALUES[("voc", "resnet50")]["gradcam"]
    for metric, comparison in compared.items():
        assert comparison.paper == published[metric]
        assert comparison.measured == result.values[metric]["gradcam"]  # type: ignore[attr-defined]
        error = result.errors[metric]["gradcam"]  # type: ignore[attr-defined]
        assert comparison.within == (abs(comparison.measured - comparison.paper) <= 2 * error)
    markdown = result.markdown  # type: ignore[attr-defined]
    assert markdown.count("| ↳ paper | ") == len(PAPER_METRICS)
    ebpg = compared["ebpg"]
    mark = "✓" if ebpg.within else "✗"
    assert f"| ↳ paper | 60.08 ({ebpg.difference:+.2f} {mark}) |" in markdown
    assert "input: shorter side 64 px, aspect ratio kept" in markdown
    assert "TorchRay's ResNet-50): the published values of Grad-CAM" in markdown
    assert "| Pointing game, TorchRay, difficult (%) ↑ (over 3 pairs) |" in markdown
    rows = {row[0]: row[1:] for row in csv.reader(io.StringIO(result.csv))}  # type: ignore[attr-defined]
    assert rows["EBPG (%) ↑ paper"] == ["60.08"]
    assert rows["EBPG (%) ↑ within 2 SE"] == [str(ebpg.within)]
    assert (tmp_path / "voc_torchray-resnet50.csv").read_text() == result.csv  # type: ignore[attr-defined]


def test_coco_run_scores_crowds_and_its_difficult_subset(
    trees: dict[str, Path], tmp_path: Path
) -> None:
    result = _run(trees, "coco", tmp_path, metrics=["ebpg", "pointing_all", "pointing_difficult"])
    assert result is not None and result.pairs == len(COCO_PAIRS)  # type: ignore[attr-defined]
    with sqlite3.connect(tmp_path / "coco.sqlite") as conn:
        difficult = conn.execute(
            "SELECT image_id, class_name FROM results WHERE metric = 'pointing_difficult' "
            "ORDER BY CAST(image_id AS INTEGER), class_index"
        ).fetchall()
    assert difficult == COCO_DIFFICULT
    # the paper's COCO setting, but the paper publishes only SISE there
    assert result.paper_setting == ("coco", "resnet50") and result.paper == {}  # type: ignore[attr-defined]
    assert "the paper publishes no value of these methods here" in result.markdown  # type: ignore[attr-defined]
    assert "↳ paper" not in result.markdown.split("Best per row")[1]  # type: ignore[attr-defined]


def test_pairs_outside_the_difficult_subset_wait_for_nothing(
    trees: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pointing_difficult alone, the pairs outside the subset have no metric: they are not
    computed, and a rerun finds the run complete."""
    result = _run(trees, "voc", tmp_path, metrics=["pointing_difficult"], out=None)
    assert result is not None and result.counts == {"gradcam": 3}  # type: ignore[attr-defined]
    with sqlite3.connect(tmp_path / "voc.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 3

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a pair was computed again")

    monkeypatch.setattr(running, "evaluate_pack", fail)
    again = _run(trees, "voc", tmp_path, metrics=["pointing_difficult"], out=None)
    assert again.markdown == result.markdown  # type: ignore[attr-defined]


def test_default_steps_follow_the_model_input_size_not_the_photos(
    trees: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Insertion / deletion's default steps, the input height, are the model's input size for
    every pair, as in the run's identity, though a portrait photo's input is taller."""
    from sise.eval.benchmark import explaining

    seen: list[tuple[int | None, tuple[int, int]]] = []

    def recording(batch: object, metrics: list[str]) -> dict[str, torch.Tensor]:
        seen.append((batch.settings.steps, batch.input_hw))  # type: ignore[attr-defined]
        return {name: torch.zeros(len(batch.pairs), dtype=torch.float64) for name in metrics}  # type: ignore[attr-defined]

    monkeypatch.setattr(explaining, "score_batch", recording)
    result = _run(trees, "voc", tmp_path, metrics=["deletion"], out=None)
    assert result is not None and "insertion / deletion: 64 steps" in result.markdown  # type: ignore[attr-defined]
    assert sorted(set(seen)) == [(64, (64, 85)), (64, (85, 64))]


def test_pairs_go_in_order_of_input_shape_so_packs_stay_full(
    trees: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in dataset order, packs of 2 would mix a landscape and a portrait input (dog, cat /
    chair, person) and split into four calls; in order of shape they are two full calls."""
    packs: list[list[str]] = []
    evaluate = running.evaluate_pack

    def recording(loaded: object, pairs: list, *args: object, **kwargs: object) -> object:
        packs.append([f"{p.image_id}/{p.class_name}" for p in pairs])
        return evaluate(loaded, pairs, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(running, "evaluate_pack", recording)
    result = _run(trees, "voc", tmp_path, metrics=["ebpg"], out=None, pack=2)
    assert result is not None and result.counts == {"gradcam": 4}  # type: ignore[attr-defined]
    assert packs == [["000001/dog", "000003/person"], ["000002/cat", "000002/chair"]]
