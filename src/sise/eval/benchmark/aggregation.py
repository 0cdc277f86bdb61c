"""Aggregation: the benchmark's per-pair rows become the table's numbers, each with its standard
error, and the methods near each row's best are marked (:class:`Summary`). Each metric's
aggregation is its :class:`~sise.eval.benchmark.scoring.Metric` entry's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sise.eval.benchmark.scoring import METRICS, Metric, required_metrics
from sise.eval.benchmark.store import ResultRow
from sise.eval.data.pairs import EvalPair

__all__ = ["NEAR_BEST", "Summary", "aggregate"]


@dataclass
class Summary:
    """The table's numbers.

    Attributes:
        values: metric (and ``"seconds"``) → method → value (None: no pair).
        counts: method → pairs aggregated.
        metric_counts: metric → method → pairs that metric was aggregated over (fewer than
            ``counts`` for a metric that does not apply to every pair).
        errors: metric → method → the value's standard error over pairs (NaN: too few pairs).
        near_best: metric → the methods other than the row's best whose paired difference from
            the best, on the pairs both completed, is within :data:`NEAR_BEST` standard errors.
    """

    values: dict[str, dict[str, float | None]]
    counts: dict[str, int]
    metric_counts: dict[str, dict[str, int]]
    errors: dict[str, dict[str, float | None]] = field(default_factory=dict)
    near_best: dict[str, set[str]] = field(default_factory=dict)


#: A method is "near the best" of a row when its paired difference from the best is at most this
#: many standard errors (about a 95 % interval, with no correction for comparing many methods).
NEAR_BEST = 2.0


def _near_best(
    metric: Metric,
    values: dict[str, float | None],
    entries: dict[str, dict[tuple[str, int], tuple[float, int]]],
) -> set[str]:
    """The methods whose paired difference from the best method is within NEAR_BEST SEs."""
    scored = {m: v for m, v in values.items() if v is not None and not math.isnan(v)}
    if len(scored) < 2:
        return set()
    pick = max if metric.higher_is_better else min
    best = pick(scored, key=lambda m: scored[m])
    near = set()
    for method in scored:
        if method == best:
            continue
        shared = sorted(entries[method].keys() & entries[best].keys())
        if not shared:
            continue
        ours = torch.tensor([entries[method][k][0] for k in shared], dtype=torch.float64)
        theirs = torch.tensor([entries[best][k][0] for k in shared], dtype=torch.float64)
        classes = torch.tensor([entries[best][k][1] for k in shared])
        difference = metric.terms(ours) - metric.terms(theirs)
        gap = abs(metric.aggregate(ours, classes) - metric.aggregate(theirs, classes))
        error = metric.standard_error(difference, classes)
        if gap == 0 or gap <= NEAR_BEST * error:  # NaN error: not near
            near.add(method)
    return near


def aggregate(
    rows: Sequence[ResultRow],
    pairs: Sequence[EvalPair],
    methods: Sequence[str],
    metrics: Sequence[str],
    *,
    common_only: bool = True,
) -> Summary:
    """Aggregate per-pair rows into the table's numbers, over the given pairs only.

    Each metric's own :attr:`Metric.aggregate` (means; Drop%: :func:`average_drop`; Increase%:
    :func:`increase_in_confidence`; pointing game: :func:`pointing_game_accuracy`, per class then
    over classes), over the pairs it applies to. ``"seconds"``: the mean time per pair. Each
    number's standard error, and which methods are near each row's best, are computed from the
    same pairs (:class:`Summary`).

    A (pair, method) counts when every metric that applies to the pair is stored, and a metric
    only over the pairs it applies to (:attr:`~sise.eval.benchmark.scoring.Metric.applies`). With
    ``common_only`` (the default) only the pairs that every method has completed count, so that
    the columns of a partial run are still comparable.
    """
    by_key = {(p.image_id, p.class_index): p for p in pairs}
    needed = {key: required_metrics(pair, metrics) for key, pair in by_key.items()}
    have: dict[tuple[str, int, str], set[str]] = {}
    for row in rows:
        if (row.image_id, row.class_index) in by_key:
            have.setdefault((row.image_id, row.class_index, row.method), set()).add(row.metric)
    complete = {key for key, found in have.items() if needed[key[:2]] <= found}
    wanted = set(by_key)
    if common_only:
        wanted = {pair for pair in wanted if all((*pair, m) in complete for m in methods)}
    # (method, metric) → pair → (value, class index)
    per: dict[tuple[str, str], dict[tuple[str, int], tuple[float, int]]] = {}
    seconds: dict[str, dict[tuple[str, int], float]] = {}
    for row in rows:
        pair = (row.image_id, row.class_index)
        if pair in wanted and (*pair, row.method) in complete:
            # a stored value of a metric that does not apply to the pair (one that has left
            # pointing_difficult's subset since) is not counted
            if row.metric in needed[pair]:
                per.setdefault((row.method, row.metric), {})[pair] = (row.value, row.class_index)
            seconds.setdefault(row.method, {})[pair] = row.seconds
    values: dict[str, dict[str, float | None]] = {m: {} for m in [*metrics, "seconds"]}
    errors: dict[str, dict[str, float | None]] = {m: {} for m in metrics}
    metric_counts: dict[str, dict[str, int]] = {m: {} for m in metrics}
    counts: dict[str, int] = {}
    for method in methods:
        for name in metrics:
            entries = list(per.get((method, name), {}).values())
            metric_counts[name][method] = len(entries)
            if not entries:
                values[name][method] = errors[name][method] = None
                continue
            data = torch.tensor([v for v, _ in entries], dtype=torch.float64)
            classes = torch.tensor([c for _, c in entries])
            metric = METRICS[name]
            values[name][method] = metric.aggregate(data, classes)
            errors[name][method] = metric.standard_error(metric.terms(data), classes)
        times = seconds.get(method, {})
        values["seconds"][method] = float(np.mean(list(times.values()))) if times else None
        counts[method] = len(times)
    near_best = {
        name: _near_best(METRICS[name], values[name], {m: per.get((m, name), {}) for m in methods})
        for name in metrics
    }
    return Summary(values, counts, metric_counts, errors, near_best)
