"""Aggregation: the table's numbers over common pairs, their standard errors, the methods near
each row's best."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sise.eval.benchmark.aggregation import aggregate
from sise.eval.benchmark.report import format_table
from sise.eval.benchmark.store import ResultRow
from sise.eval.data import EvalPair


def _pair(boxes: list, others: list, class_index: int = 0, image_id: str = "a") -> EvalPair:
    return EvalPair(image_id, Path("x.jpg"), class_index, "c", boxes, 4, 4, other_boxes=others)


def test_summaries_compare_methods_on_common_pairs() -> None:
    from sise.eval.benchmark.store import ResultRow

    pairs = [EvalPair(f"{i}", Path("x.jpg"), i % 2, "c", [(0, 0, 1, 1)], 8, 8) for i in range(3)]
    rows = [
        ResultRow("id", p.image_id, p.class_index, "c", method, metric, value, 1.0)
        for p, value in zip(pairs, (10.0, 20.0, 60.0), strict=True)
        for method in ("gradcam", "sise")
        for metric in ("ebpg", "pointing")
        if not (method == "sise" and p.image_id == "2")  # SISE has not done pair 2 yet
    ]
    summary = aggregate(rows, pairs, ["gradcam", "sise"], ["ebpg", "pointing"])
    assert summary.counts == {"gradcam": 2, "sise": 2}
    assert summary.values["ebpg"]["gradcam"] == 15.0
    summary = aggregate(rows, pairs, ["gradcam", "sise"], ["ebpg", "pointing"], common_only=False)
    assert summary.counts == {"gradcam": 3, "sise": 2}
    assert summary.values["ebpg"]["gradcam"] == 30.0


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


def test_values_of_pairs_a_metric_no_longer_applies_to_are_left_out() -> None:
    """A pair that has left pointing_difficult's subset (another subset file) keeps its stored
    row, which the table must not count."""
    pairs = [
        EvalPair(str(i), Path("x.jpg"), 0, "c", [(0, 0, 1, 1)], 8, 8, in_difficult_subset=inside)
        for i, inside in enumerate([True, False])
    ]
    rows = [
        ResultRow("id", p.image_id, 0, "c", "gradcam", metric, 100.0 * (p.image_id == "0"), 1.0)
        for p in pairs
        for metric in ("ebpg", "pointing_difficult")
    ]
    summary = aggregate(rows, pairs, ["gradcam"], ["ebpg", "pointing_difficult"])
    assert summary.counts == {"gradcam": 2}
    assert summary.metric_counts["pointing_difficult"] == {"gradcam": 1}
    assert summary.values["pointing_difficult"] == {"gradcam": 100.0}
    assert summary.values["ebpg"] == {"gradcam": 50.0}
