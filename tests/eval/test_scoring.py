"""The benchmark's metric registry: one definition per metric, its settings, its aggregation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from sise.errors import SiseError
from sise.eval.benchmark.report import format_table
from sise.eval.benchmark.scoring import (
    ALL_METRICS,
    METRICS,
    MetricSettings,
    ScoringBatch,
    aggregate,
    check_metrics,
    required_metrics,
    score_batch,
)
from sise.eval.benchmark.store import ResultRow
from sise.eval.data.datasets import EvalPair, distractor_mask, gt_mask
from sise.eval.metrics import distractor_energy, standard_error


def test_distractor_energy_by_hand() -> None:
    # E on the diagonal (1, 2, 3, 4: total 10); G = rows 0-1 x cols 0-1; D = rows 1-2 x cols 1-2.
    # D \ G = {(1, 2), (2, 1), (2, 2)}: energy 0 + 0 + 3 = 3, so 100 * 3 / 10 = 30.
    # (1, 1) holds 2 but lies in G too: not counted against the map.
    energy = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    own = torch.zeros(4, 4, dtype=torch.bool)
    own[0:2, 0:2] = True
    others = torch.zeros(4, 4, dtype=torch.bool)
    others[1:3, 1:3] = True
    maps = torch.stack([energy, energy, torch.zeros(4, 4)])
    gts = torch.stack([own, own, own])
    distractors = torch.stack([others, torch.zeros_like(others), others])
    values = distractor_energy(maps, gts, distractors)
    assert values[0].item() == pytest.approx(30.0, abs=1e-5)
    assert math.isnan(values[1].item())  # no other object: nothing to be distracted by
    assert values[2].item() == 0.0  # a map without energy puts none on the others
    with pytest.raises(SiseError, match="distractor_mask must be a bool tensor"):
        distractor_energy(maps, gts, distractors.float())
    with pytest.raises(SiseError, match="non-negative"):
        distractor_energy(-maps, gts, distractors)


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


def test_pairs_without_other_objects_are_left_out_and_the_table_says_so() -> None:
    pairs = [
        _pair([(0, 0, 1, 1)], [(2, 2, 3, 3)], image_id="0"),
        _pair([(0, 0, 1, 1)], [], image_id="1"),
        _pair([(0, 0, 1, 1)], [(2, 2, 3, 3)], image_id="2"),
    ]
    rows = [
        ResultRow("id", p.image_id, 0, "c", method, "ebpg", 10.0 * i, 1.0)
        for i, p in enumerate(pairs)
        for method in ("gradcam", "sise")
    ]
    # distractor rows only where it applies; SISE's pair 2 lacks it, so that pair is incomplete
    rows += [
        ResultRow("id", "0", 0, "c", "gradcam", "distractor", 4.0, 1.0),
        ResultRow("id", "2", 0, "c", "gradcam", "distractor", 8.0, 1.0),
        ResultRow("id", "0", 0, "c", "sise", "distractor", 1.0, 1.0),
    ]
    summary = aggregate(rows, pairs, ["gradcam", "sise"], ["ebpg", "distractor"])
    assert summary.counts == {"gradcam": 2, "sise": 2}  # pairs 0 and 1 (1 needs no distractor)
    assert summary.metric_counts["distractor"] == {"gradcam": 1, "sise": 1}
    assert summary.values["distractor"] == {"gradcam": 4.0, "sise": 1.0}
    assert summary.values["ebpg"] == {"gradcam": 5.0, "sise": 5.0}
    markdown, table_csv = format_table(
        summary.values,
        ["gradcam", "sise"],
        ["ebpg", "distractor"],
        summary.counts,
        metric_counts=summary.metric_counts,
    )
    assert "| Distractor energy (%) ↓ (over 1 pair) | 4.00 | **1.00** |" in markdown
    assert "| EBPG (%) ↑ | **5.00** | **5.00** |" in markdown  # every pair: no note
    assert "Distractor energy (%) ↓ (over 1 pair),4.0,1.0" in table_csv
    every = aggregate(rows, pairs, ["gradcam", "sise"], ["ebpg", "distractor"], common_only=False)
    assert every.counts == {"gradcam": 3, "sise": 2}
    assert every.values["distractor"]["gradcam"] == 6.0


def test_one_definition_per_metric() -> None:
    assert ALL_METRICS[:5] == ("ebpg", "miou", "bbox", "drop", "increase")  # the paper's rows
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


def test_standard_error_by_hand_and_against_scipy() -> None:
    from scipy import stats

    terms = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # s = sqrt(((1.5² + 0.5²) * 2) / 3) = sqrt(5 / 3); s / sqrt(4)
    assert standard_error(terms) == pytest.approx(math.sqrt(5 / 3) / 2)
    values = torch.randn(37, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert standard_error(values) == pytest.approx(float(stats.sem(values.numpy())))
    # per class, then over classes: class 0 (0, 100): s² = 5000, n 2; class 1 (100, 100, 0):
    # s² = 10000 / 3, n 3; sqrt(5000 / 2 + 10000 / 9) / 2
    hits = torch.tensor([0.0, 100.0, 100.0, 100.0, 0.0])
    classes = torch.tensor([7, 7, 3, 3, 3])
    assert standard_error(hits, classes) == pytest.approx(math.sqrt(2500 + 10000 / 9) / 2)
    assert math.isnan(standard_error(torch.tensor([5.0])))
    assert math.isnan(standard_error(hits, torch.tensor([7, 7, 3, 3, 4])))  # class 4: one pair
    with pytest.raises(SiseError, match="1-D"):
        standard_error(hits, classes[:3])


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


def test_errors_and_the_methods_near_the_best_by_hand() -> None:
    pairs = [_pair([(0, 0, 1, 1)], [], image_id=str(i)) for i in range(4)]
    ebpg = {
        "sise": [10.0, 20.0, 30.0, 40.0],  # the best: 25
        "gradcam": [9.0, 19.5, 29.0, 39.5],  # 0.75 behind, every pair: differences' SE 0.144
        "rise": [12.0, 18.0, 31.0, 38.0],  # 0.25 behind, noisily: differences' SE 1.03
    }
    rows = [
        ResultRow("id", p.image_id, 0, "c", method, "ebpg", value, 1.0)
        for method, column in ebpg.items()
        for p, value in zip(pairs, column, strict=True)
    ]
    summary = aggregate(rows, pairs, list(ebpg), ["ebpg"])
    assert summary.values["ebpg"] == {"sise": 25.0, "gradcam": 24.25, "rise": 24.75}
    assert summary.errors["ebpg"]["sise"] == pytest.approx(math.sqrt(500 / 3) / 2)
    # gradcam: differences (-1, -0.5, -1, -0.5), SE sqrt(1/12)/2 = 0.144: 0.75 > 2 SE
    # rise: differences (2, -2, 1, -2), SE sqrt(17/4)/2 = 1.03: 0.25 < 2 SE
    assert summary.near_best == {"ebpg": {"rise"}}
    markdown, table_csv = format_table(
        summary.values,
        list(ebpg),
        ["ebpg"],
        summary.counts,
        metric_counts=summary.metric_counts,
        errors=summary.errors,
        near_best=summary.near_best,
    )
    assert "| EBPG (%) ↑ | 24.25 ± 6.52 | *24.75 ± 5.94* | **25.00 ± 6.45** |" in markdown
    assert "within 2 standard errors" in markdown
    assert table_csv.splitlines()[2].startswith("EBPG (%) ↑ SE,6.52")
    plain, _ = format_table(summary.values, list(ebpg), ["ebpg"], summary.counts)
    assert "| EBPG (%) ↑ | 24.25 | 24.75 | **25.00** |" in plain  # without errors: as before


def test_pointing_game_errors_are_per_class() -> None:
    pairs = [
        _pair([(0, 0, 1, 1)], [], class_index=c, image_id=str(i))
        for i, c in enumerate([7, 7, 3, 3, 3])
    ]
    hits = {"sise": [0.0, 1.0, 1.0, 1.0, 0.0], "gradcam": [0.0, 1.0, 1.0, 1.0, 0.0]}
    rows = [
        ResultRow("id", p.image_id, p.class_index, "c", method, "pointing", value, 1.0)
        for method, column in hits.items()
        for p, value in zip(pairs, column, strict=True)
    ]
    summary = aggregate(rows, pairs, list(hits), ["pointing"])
    assert summary.values["pointing"]["sise"] == pytest.approx(100 * (0.5 + 2 / 3) / 2)
    assert summary.errors["pointing"]["sise"] == pytest.approx(math.sqrt(2500 + 10000 / 9) / 2)
    assert summary.near_best["pointing"] == {"gradcam"}  # equal on every pair


def test_near_best_compares_only_the_pairs_both_methods_completed() -> None:
    pairs = [_pair([(0, 0, 1, 1)], [], image_id=str(i)) for i in range(5)]
    ebpg = {
        "sise": [10.0, 20.0, 30.0, 40.0, 50.0],
        "gradcam": [9.0, 19.5, 29.0, 39.5],  # pair 4 not done yet
    }
    rows = [
        ResultRow("id", p.image_id, 0, "c", method, "ebpg", value, 1.0)
        for method, column in ebpg.items()
        for p, value in zip(pairs, column, strict=False)
    ]
    summary = aggregate(rows, pairs, list(ebpg), ["ebpg"], common_only=False)
    assert summary.values["ebpg"] == {"sise": 30.0, "gradcam": 24.25}
    # on the four shared pairs Grad-CAM is 0.75 behind with a paired SE of 0.144: not near;
    # unpaired, 5.75 behind with SEs of 7.1 and 6.5, it would look near
    assert summary.near_best == {"ebpg": set()}
    rows += [ResultRow("id", "4", 0, "c", "gradcam", "ebpg", 60.0, 1.0)]  # now ahead on pair 4
    summary = aggregate(rows, pairs, list(ebpg), ["ebpg"], common_only=False)
    assert summary.near_best == {"ebpg": {"sise"}}  # differences (1, .5, 1, .5, -10): SE 2.2
