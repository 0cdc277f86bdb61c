"""The benchmark's metrics, each defined once: label, direction, per-pair value, aggregation.

A :class:`Metric` says everything the benchmark needs to know about one metric: its table label,
whether higher is better, how to compute its value for each explained pair, which pairs it
applies to, how per-pair values become the table's number, and the line it adds to the table's
settings. :data:`METRICS` lists them in the table's row order: the paper's rows (EBPG, mIoU,
Bbox, Drop%, Increase%; SPEC section 3), then the pointing game, RISE's insertion and deletion
AUC, this project's distractor energy, TorchRay's pointing-game protocol (``pointing_all``,
``pointing_difficult``: the numbers TorchRay publishes, computed on the original image; asked
for by name, not in :data:`DEFAULT_METRICS`), and the model-truth metrics the field reports
now (ROAD, ADCC and its parts, the randomisation row: :mod:`~sise.eval.benchmark.field_metrics`,
asked for by name too). The types are :mod:`~sise.eval.benchmark.metric_base`'s.

**Adding a metric** is one entry in :data:`METRICS` and its name in
:data:`~sise.eval.benchmark.metric_names.METRIC_NAMES` (the command line's list, without torch,
with whether it is computed by default; checked against :data:`METRICS` at import), and, if it
has a setting, one field of :class:`~sise.eval.benchmark.metric_settings.MetricSettings`: the
runner computes and stores it, resumes it, aggregates it
(:mod:`~sise.eval.benchmark.aggregation`) and prints it from that entry alone. Per-pair
computations shared by several metrics (Drop% and Increase% come from the same masked forwards)
go through :meth:`ScoringBatch.shared`, so they run once.

The metric *settings* (:mod:`~sise.eval.benchmark.metric_settings`, imported from here too:
every metric reads them) change the stored values, so a run's configuration holds them and
their hash decides what a rerun may reuse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sise.errors import SiseError
from sise.eval.benchmark.field_metrics import FIELD_METRICS, drop_increase
from sise.eval.benchmark.metric_base import Metric, ScoringBatch, percent_flags
from sise.eval.benchmark.metric_names import DEFAULT_METRICS, METRIC_NAMES
from sise.eval.benchmark.metric_settings import MetricSettings
from sise.eval.data.pairs import EvalPair, distractor_mask, pointing_region
from sise.eval.metrics import (
    average_drop,
    bbox_score,
    distractor_energy,
    energy_pointing_game,
    increase_in_confidence,
    insertion_deletion_auc,
    miou,
    pointing_game_accuracy,
    pointing_game_hits,
    pointing_game_hits_original,
    scaled_tolerance,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Metric",
    "MetricSettings",
    "ScoringBatch",
    "check_metrics",
    "required_metrics",
    "score_batch",
]

# --------------------------------------------------------------------------------------------
# per-pair computations (each runs once per batch, whatever metrics use it)


def _insertion_deletion(batch: ScoringBatch) -> tuple[Tensor, Tensor]:
    settings = batch.settings
    return insertion_deletion_auc(
        batch.model,
        batch.inputs,
        batch.targets,
        batch.maps,
        steps=settings.resolved_steps(batch.input_hw),
        score=batch.score,
        insertion_substrate=settings.insertion_substrate,  # type: ignore[arg-type]
        deletion_substrate=settings.deletion_substrate,  # type: ignore[arg-type]
        batch_size=batch.batch_size,
    )


def _pointing_hits(batch: ScoringBatch) -> Tensor:
    # TorchRay's tolerance is in original-image pixels: scale it to each pair's input grid
    tolerance = torch.tensor(
        [
            scaled_tolerance(
                (pair.height, pair.width), batch.input_hw, batch.settings.pointing_tolerance
            )
            for pair in batch.pairs
        ],
        dtype=torch.float64,
        device=batch.maps.device,
    )
    return pointing_game_hits(batch.maps, batch.ground_truth, tolerance).double()


def _original_hits(batch: ScoringBatch) -> Tensor:
    regions = [pointing_region(pair) for pair in batch.pairs]
    tolerance = batch.settings.pointing_tolerance
    return pointing_game_hits_original(batch.maps, regions, tolerance).double()


def _describe_original(settings: MetricSettings, input_hw: tuple[int, int]) -> str:
    return (
        f"pointing game (TorchRay): the map resized to the original image, its maximum within "
        f"{settings.pointing_tolerance:g} px of the class's region (VOC: its boxes, difficult "
        "ones included; COCO: its segmentations, crowds included), accuracy per class then "
        "averaged; difficult: TorchRay's difficult subset only"
    )


def _pointing_accuracy(values: Tensor, classes: Tensor) -> float:
    return pointing_game_accuracy(values > 0.5, classes)


def _distractor(batch: ScoringBatch) -> Tensor:
    h, w = batch.input_hw
    others = torch.stack([distractor_mask(pair, h, w) for pair in batch.pairs])
    return distractor_energy(batch.maps, batch.ground_truth, others.to(batch.maps.device)).double()


def _describe_drop(settings: MetricSettings, input_hw: tuple[int, int]) -> str:
    what = (
        "a masked-out pixel takes the input-space zero, i.e. the normalisation mean"
        if settings.drop_baseline == "zero"
        else "a masked-out pixel takes the Gaussian-blurred image"
    )
    return f"Drop% / Increase%: masking baseline `{settings.drop_baseline}` ({what})"


def _describe_games(settings: MetricSettings, input_hw: tuple[int, int]) -> str:
    return (
        f"insertion / deletion: {settings.resolved_steps(input_hw)} steps, canvases "
        f"`{settings.insertion_substrate}` / `{settings.deletion_substrate}`; reported as AUC × 100"
    )


#: The metrics, in the table's row order (the paper's five first). See the module docstring.
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "ebpg",
            "EBPG (%) ↑",
            True,
            lambda b: energy_pointing_game(b.maps, b.ground_truth).double(),
        ),
        Metric(
            "miou",
            "mIoU (%) ↑",
            True,
            lambda b: 100.0 * miou(b.maps, b.ground_truth, b.settings.miou_fraction).double(),
            describe=lambda s, hw: (
                f"mIoU: map binarised to its top {100 * s.miou_fraction:g}% of pixels"
            ),
        ),
        Metric("bbox", "Bbox (%) ↑", True, lambda b: bbox_score(b.maps, b.ground_truth).double()),
        Metric(
            "drop",
            "Drop% ↓",
            False,
            lambda b: b.shared(drop_increase)[0].double(),
            aggregate=lambda values, classes: average_drop(values),
            needs_positive_score=True,
            describe=_describe_drop,
        ),
        Metric(
            "increase",
            "Increase% ↑",
            True,
            lambda b: b.shared(drop_increase)[1].double(),
            aggregate=lambda values, classes: increase_in_confidence(values > 0.5),
            terms=percent_flags,
            needs_positive_score=True,
            describe=_describe_drop,
        ),
        Metric(
            "pointing",
            "Pointing game (%) ↑",
            True,
            _pointing_hits,
            aggregate=_pointing_accuracy,
            terms=percent_flags,
            by_class=True,
            describe=lambda s, hw: (
                f"pointing game: {s.pointing_tolerance:g} px tolerance on the original image, "
                "accuracy per class then averaged"
            ),
        ),
        Metric(
            "insertion",
            "Insertion AUC (%) ↑",
            True,
            lambda b: 100.0 * b.shared(_insertion_deletion)[0].double(),
            describe=_describe_games,
        ),
        Metric(
            "deletion",
            "Deletion AUC (%) ↓",
            False,
            lambda b: 100.0 * b.shared(_insertion_deletion)[1].double(),
            describe=_describe_games,
        ),
        Metric(
            "distractor",
            "Distractor energy (%) ↓",
            False,
            _distractor,
            applies=lambda pair: bool(pair.other_boxes),
            describe=lambda s, hw: (
                "distractor energy: the map's energy on objects of other classes outside the "
                "class's own boxes, over the pairs whose image holds another class"
            ),
        ),
        Metric(
            "pointing_all",
            "Pointing game, TorchRay, all (%) ↑",
            True,
            lambda b: b.shared(_original_hits),
            aggregate=_pointing_accuracy,
            terms=percent_flags,
            by_class=True,
            describe=_describe_original,
        ),
        Metric(
            "pointing_difficult",
            "Pointing game, TorchRay, difficult (%) ↑",
            True,
            lambda b: b.shared(_original_hits),
            aggregate=_pointing_accuracy,
            terms=percent_flags,
            by_class=True,
            applies=lambda pair: pair.in_difficult_subset is True,
            describe=_describe_original,
        ),
        *FIELD_METRICS,
    )
}
if list(METRICS) != list(METRIC_NAMES):
    # metric_names lists them, with their defaults, for the command line without torch
    raise RuntimeError("sise.eval.benchmark.metric_names.METRIC_NAMES differs from METRICS")


def check_metrics(metrics: Sequence[str], score: str) -> list[str]:
    """The requested metrics in table order, or a :class:`SiseError` for an unknown one, none,
    or a metric the explained score cannot give."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SiseError(f"unknown metric {unknown[0]!r}: choose from {', '.join(METRICS)}")
    chosen = [m for m in METRICS if m in metrics]
    if not chosen:
        raise SiseError(f"no metric to compute: choose from {', '.join(METRICS)}")
    if score == "logit":
        relative = [m for m in chosen if METRICS[m].needs_positive_score]
        if relative:
            raise SiseError(
                f"{', '.join(relative)} need a positive score: use --score sigmoid or softmax"
            )
    return chosen


def required_metrics(pair: EvalPair, metrics: Sequence[str]) -> set[str]:
    """The metrics that have a value for ``pair`` (a pair is complete when all are stored)."""
    return {m for m in metrics if METRICS[m].applies(pair)}


def score_batch(batch: ScoringBatch, metrics: Sequence[str]) -> dict[str, Tensor]:
    """Each metric's (n,) values of the batch (float64, on the CPU); NaN where it does not
    apply."""
    values: dict[str, Tensor] = {}
    for name in metrics:
        metric = METRICS[name]
        applies = torch.tensor([metric.applies(pair) for pair in batch.pairs])
        if not bool(applies.any()):
            values[name] = torch.full((len(batch.pairs),), math.nan, dtype=torch.float64)
            continue
        computed = metric.compute(batch).detach().double().cpu()
        if bool((applies & ~torch.isfinite(computed)).any()):
            raise SiseError(f"metric {name!r} gave a non-finite value on a pair it applies to")
        values[name] = torch.where(applies, computed, torch.full_like(computed, math.nan))
    return values
