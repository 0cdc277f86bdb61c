"""The benchmark's metric registry: one definition per metric, its settings, its values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sise.errors import SiseError
from sise.eval.benchmark.scoring import (
    DEFAULT_METRICS,
    METRICS,
    MetricSettings,
    ScoringBatch,
    check_metrics,
    required_metrics,
    score_batch,
)
from sise.eval.data import EvalPair, distractor_mask, gt_mask


def _pair(boxes: list, others: list, class_index: int = 0, image_id: str = "a") -> EvalPair:
    return EvalPair(image_id, Path("x.jpg"), class_index, "c", boxes, 4, 4, other_boxes=others)


def test_distractor_metric_from_the_pairs_boxes() -> None:
    # the same configuration as above, given as VOC-style boxes on a 4x4 image
    with_others = _pair([(0, 0, 2, 2)], [(1, 1, 3, 3)])
    alone = _pair([(0, 0, 2, 2)], [], image_id="b")
    assert torch.equal(distractor_mask(alone, 4, 4), torch.zeros(4, 4, dtype=torch.bool))
    energy = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0])) / 4
    pairs = [with_others, alone]
    batch = ScoringBatch(
        model=torch.nn.Identity(),
        pairs=pairs,
        inputs=torch.zeros(2, 3, 4, 4),
        targets=torch.zeros(2, dtype=torch.long),
        maps=torch.stack([energy, energy]),
        ground_truth=torch.stack([gt_mask(p, 4, 4) for p in pairs]),
        settings=MetricSettings(),
        score="sigmoid",
        batch_size=8,
    )
    values = score_batch(batch, ["distractor", "ebpg"])
    assert values["distractor"][0].item() == pytest.approx(30.0, abs=1e-5)
    assert math.isnan(values["distractor"][1].item())
    assert values["ebpg"].tolist() == pytest.approx([30.0, 30.0])  # (1 + 2) / 10
    assert required_metrics(alone, ["ebpg", "distractor"]) == {"ebpg"}
    assert required_metrics(with_others, ["ebpg", "distractor"]) == {"ebpg", "distractor"}


def test_one_definition_per_metric() -> None:
    assert DEFAULT_METRICS[:5] == ("ebpg", "miou", "bbox", "drop", "increase")  # the paper's rows
    for name, metric in METRICS.items():
        assert metric.name == name
        assert metric.label.endswith("↑" if metric.higher_is_better else "↓")
    assert not METRICS["distractor"].higher_is_better
    assert check_metrics(["distractor", "ebpg"], "sigmoid") == ["ebpg", "distractor"]
    with pytest.raises(SiseError, match="no metric to compute"):
        check_metrics([], "sigmoid")
    with pytest.raises(SiseError, match="unknown metric 'accuracy'"):
        check_metrics(["accuracy"], "sigmoid")
    with pytest.raises(SiseError, match="drop, increase need a positive score"):
        check_metrics(["drop", "increase", "ebpg"], "logit")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 0}, "--steps must be a positive integer"),
        ({"steps": -3}, "--steps must be a positive integer"),
        ({"miou_fraction": 0.0}, "--miou-fraction must lie in"),
        ({"miou_fraction": float("nan")}, "--miou-fraction must lie in"),
        ({"drop_baseline": "grey"}, "--drop-baseline must be one of zero, blur"),
        ({"deletion_substrate": "noise"}, "--deletion-substrate must be one of"),
        ({"pointing_tolerance": float("inf")}, "--pointing-tolerance must be a finite"),
        ({"pointing_tolerance": -1.0}, "--pointing-tolerance must be a finite"),
    ],
)
def test_settings_are_checked(changes: dict, message: str) -> None:
    with pytest.raises(SiseError, match=message):
        MetricSettings(**changes).validate()


def test_torchrays_pointing_game_is_asked_for_by_name(tmp_path: Path) -> None:
    """Not among the default metrics (an earlier run must not recompute every pair), accepted
    by name; its subset file is checked at once and stays out of the run's identity."""
    assert "pointing_all" not in DEFAULT_METRICS and "pointing_difficult" not in DEFAULT_METRICS
    opt_in = {name for name, metric in METRICS.items() if not metric.default}
    assert {"pointing_all", "pointing_difficult"} <= opt_in
    assert set(METRICS) == {*DEFAULT_METRICS, *opt_in}
    assert check_metrics(["pointing_difficult", "ebpg"], "logit") == ["ebpg", "pointing_difficult"]
    flags = tmp_path / "flags.txt"
    flags.write_text("000001\t1\n")
    given = MetricSettings(pointing_difficult_flags=str(flags))
    given.validate()
    assert given.identity((64, 64)) == MetricSettings().identity((64, 64))
    with pytest.raises(SiseError, match=r"--pointing-difficult-flags .* is not a file"):
        MetricSettings(pointing_difficult_flags=str(tmp_path / "none.txt")).validate()
    inside = _pair([(0, 0, 2, 2)], [])
    inside.in_difficult_subset = True
    outside = _pair([(0, 0, 2, 2)], [], image_id="b")
    assert required_metrics(inside, ["pointing_difficult", "ebpg"]) == {
        "pointing_difficult",
        "ebpg",
    }
    assert required_metrics(outside, ["pointing_difficult", "ebpg"]) == {"ebpg"}


def test_settings_identity_resolves_the_default_steps() -> None:
    MetricSettings().validate()
    assert MetricSettings().identity((64, 64)) == {
        "miou_fraction": 0.2,
        "drop_baseline": "zero",
        "steps": 64,
        "insertion_substrate": "blur",
        "deletion_substrate": "zero",
        "pointing_tolerance": 15.0,
    }
    assert MetricSettings(steps=8).identity((64, 64))["steps"] == 8


def test_every_metric_number_is_the_mean_of_its_terms() -> None:
    # the standard errors are computed from Metric.terms: its (class) mean must be the number
    generator = torch.Generator().manual_seed(3)
    values = torch.rand(40, generator=generator, dtype=torch.float64) * 100
    classes = torch.randint(0, 4, (40,), generator=generator)
    for name, metric in METRICS.items():
        terms = metric.terms(values)
        if metric.by_class:
            expected = float(torch.stack([terms[classes == c].mean() for c in range(4)]).mean())
        else:
            expected = float(terms.mean())
        assert metric.aggregate(values, classes) == pytest.approx(expected), name
