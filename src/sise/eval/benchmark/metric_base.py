"""What a benchmark metric is (:class:`Metric`) and what it may look at (:class:`ScoringBatch`):
the types every metric module shares (:mod:`~sise.eval.benchmark.scoring` lists the metrics,
:mod:`~sise.eval.benchmark.field_metrics` adds ROAD, ADCC and the randomisation row)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from torch import Tensor, nn

from sise.core.scores import ScoreKind
from sise.eval.benchmark.metric_names import METRIC_NAMES
from sise.eval.benchmark.metric_settings import MetricSettings
from sise.eval.data.pairs import EvalPair
from sise.eval.metrics import standard_error
from sise.runtime import BatchSize

__all__ = ["Explain", "Metric", "ScoringBatch", "percent_flags"]

#: ``explain(inputs, targets) -> (n, H, W) maps in [0, 1]``: the benchmarked method on other
#: inputs (ADCC's explanation maps) or on another model (the randomised one).
Explain = Callable[[Tensor, Tensor], Tensor]

_T = TypeVar("_T")


@dataclass
class ScoringBatch:
    """What a metric may look at: ``n`` pairs explained by one method, on the model's device.

    Attributes:
        model: the classifier (for the model-truth metrics).
        pairs: the ``n`` pairs.
        inputs: (n, C, H, W) model-ready images.
        targets: (n,) explained classes.
        maps: (n, H, W) explanation maps in [0, 1].
        ground_truth: (n, H, W) bool region ``G`` of each pair's class.
        settings: the metric settings.
        score: the explained score.
        batch_size: masked inputs per forward pass.
        explain: the method on other inputs of the same model (ADCC's coherency), or None.
        explain_randomised: the method on the fully randomised copy of the model (the
            randomisation row), or None.
        seed: the run's seed (ROAD's noise is seeded per pair from it).
    """

    model: nn.Module
    pairs: Sequence[EvalPair]
    inputs: Tensor
    targets: Tensor
    maps: Tensor
    ground_truth: Tensor
    settings: MetricSettings
    score: ScoreKind
    batch_size: BatchSize
    explain: Explain | None = None
    explain_randomised: Explain | None = None
    seed: int = 0
    _shared: dict[Callable[..., object], object] = field(default_factory=dict, repr=False)

    @property
    def input_hw(self) -> tuple[int, int]:
        return (int(self.maps.shape[1]), int(self.maps.shape[2]))

    def shared(self, compute: Callable[[ScoringBatch], _T]) -> _T:
        """``compute(self)``, computed once per batch for all the metrics that use it."""
        if compute not in self._shared:
            self._shared[compute] = compute(self)
        return self._shared[compute]  # type: ignore[return-value]


def _mean(values: Tensor, class_indices: Tensor) -> float:
    return float(values.double().mean())


def _always(pair: EvalPair) -> bool:
    return True


def _same(values: Tensor) -> Tensor:
    return values


def percent_flags(values: Tensor) -> Tensor:
    return 100.0 * (values > 0.5).double()


@dataclass(frozen=True)
class Metric:
    """One benchmark metric.

    Attributes:
        name: the key in the results database and on the command line.
        label: the table's row label, with its direction arrow.
        higher_is_better: the table bolds the highest (else the lowest) value of the row.
        compute: (n,) float64 values of a :class:`ScoringBatch`, one per pair (any value for a
            pair it does not apply to).
        aggregate: the table's number from the (P,) per-pair values and the pairs' (P,) class
            indices (default: the mean).
        terms: the (P,) per-pair terms whose mean (with ``by_class``: the mean over classes of
            each class's mean) ``aggregate`` is; the standard errors are computed from them
            (default: the values themselves).
        by_class: ``aggregate`` averages per class first (the pointing game).
        applies: whether the metric has a value for a pair (default: every pair); the others are
            left out, and the table says over how many pairs the row is.
        needs_positive_score: a relative change of the score: not with ``--score logit``.
        describe: the settings line it adds under the table's title (None: nothing to say).
    Whether a metric is computed when none are named is written once, in
    :data:`~sise.eval.benchmark.metric_names.METRIC_NAMES` (:attr:`default`).
    """

    name: str
    label: str
    higher_is_better: bool
    compute: Callable[[ScoringBatch], Tensor]
    aggregate: Callable[[Tensor, Tensor], float] = _mean
    terms: Callable[[Tensor], Tensor] = _same
    by_class: bool = False
    applies: Callable[[EvalPair], bool] = _always
    needs_positive_score: bool = False
    describe: Callable[[MetricSettings, tuple[int, int]], str] | None = None

    @property
    def default(self) -> bool:
        """Computed when no metrics are named
        (:data:`~sise.eval.benchmark.metric_names.DEFAULT_METRICS`)."""
        return METRIC_NAMES[self.name]

    def standard_error(self, values: Tensor, class_indices: Tensor) -> float:
        """The standard error of ``aggregate(values, class_indices)``, or of the difference of
        two methods' numbers when ``values`` are their per-pair differences of :attr:`terms`
        (:func:`sise.eval.metrics.standard_error`)."""
        return standard_error(values, class_indices if self.by_class else None)
