"""The model-truth metrics the field reports now, as benchmark rows: ROAD (Rong et al., ICML 2022),
ADCC (Poppi et al., CVPR-W 2021) and the model-parameter randomisation check (Adebayo et al.,
NeurIPS 2018). The metrics themselves are :mod:`sise.eval.metrics.remove_and_debias`,
:mod:`sise.eval.metrics.coherency_complexity` and :mod:`sise.eval.metrics.sanity`; here they
become :class:`~sise.eval.benchmark.metric_base.Metric` entries (:data:`FIELD_METRICS`), which
:data:`sise.eval.benchmark.scoring.METRICS` lists after the others.

All are **opt-in** (``--metrics ...,road,adcc,randomisation``; not in
:data:`~sise.eval.benchmark.scoring.DEFAULT_METRICS`): ROAD solves 18 sparse systems (9 percentiles ×
2 orders) and runs 20 forward passes per pair and method; ADCC explains every pair a second time
(the explanation map ``x ⊙ E``), which doubles the cost of RISE or Extremal Perturbation; the
randomisation row explains its pairs once more on a randomised copy of the model; and a new
default metric would make every stored run explain all its pairs again.

* ``road_morf``, ``road_lerf``, ``road``: pytorch-grad-cam's ``ROADMostRelevantFirstAverage``,
  ``ROADLeastRelevantFirstAverage`` and ``ROADCombined`` on the explained score (× 100; MoRF
  lower is better, LeRF and combined higher); ``road_morf_kept``, ``road_lerf_kept``,
  ``road_kept``: the same on "prediction kept" (the model's top-1 class on the imputed image is
  its top-1 class on the photo), the ROAD paper's accuracy, in %. Percentiles 10 … 90; the noise
  of each pair is seeded from the run's seed and the pair (the same for every method).
* ``adcc`` and its parts ``adcc_coherency``, ``adcc_complexity``, ``adcc_drop`` (× 100).
  The Average Drop part is Drop% with the ``zero`` baseline whatever ``--drop-baseline`` says
  (ADCC multiplies the normalised input by the map).
* ``randomisation``: Spearman ρ between the trained model's map and the map the same method makes
  on a copy of the model with every layer randomised (:func:`sise.eval.metrics.randomised_model`,
  the last step of the cascading check, seeded by the run's seed); lower is better. Only on
  every :data:`RANDOMISATION_EVERY`-th pair, chosen by a hash of (image id, class index), so the
  choice is the same whatever ``--limit``, the order, or how the run is spread over processes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sise.errors import SiseError
from sise.eval.benchmark.metric_base import Metric, ScoringBatch
from sise.eval.benchmark.metric_settings import MetricSettings
from sise.eval.data.pairs import EvalPair
from sise.eval.digest import digest
from sise.eval.metrics import (
    RoadCurves,
    adcc,
    blur,
    coherency,
    complexity,
    drop_and_increase,
    model_randomisation,
    road,
    road_combined,
)

__all__ = ["FIELD_METRICS", "RANDOMISATION_EVERY", "drop_increase", "in_randomisation_subset"]

#: The randomisation row covers the pairs whose hash is 0 modulo this (about one in four).
RANDOMISATION_EVERY = 4


def _pair_hash(text: str) -> int:
    return int(digest([text.encode()], "crc32"), 16)


def in_randomisation_subset(pair: EvalPair) -> bool:
    """Whether the randomisation row covers ``pair`` (about one pair in
    :data:`RANDOMISATION_EVERY`, by a hash of its image id and class index)."""
    return (
        _pair_hash(f"randomisation/{pair.image_id}/{pair.class_index}") % RANDOMISATION_EVERY == 0
    )


def drop_increase(batch: ScoringBatch, baseline_kind: str | None = None) -> tuple[Tensor, Tensor]:
    """Drop% / Increase%'s per-pair drops and flags, with the settings' baseline (or
    ``baseline_kind``)."""
    kind = batch.settings.drop_baseline if baseline_kind is None else baseline_kind
    baseline = blur(batch.inputs) if kind == "blur" else None
    return drop_and_increase(
        batch.model,
        batch.inputs,
        batch.targets,
        batch.maps,
        score=batch.score,
        baseline=baseline,
        batch_size=batch.batch_size,
    )


def _road(batch: ScoringBatch) -> tuple[RoadCurves, RoadCurves]:
    generators = [
        torch.Generator().manual_seed(
            _pair_hash(f"road/{batch.seed}/{pair.image_id}/{pair.class_index}")
        )
        for pair in batch.pairs
    ]
    return road(
        batch.model,
        batch.inputs,
        batch.targets,
        batch.maps,
        noise=batch.settings.road_noise,
        generators=generators,
        score=batch.score,
        batch_size=batch.batch_size,
    )


def _adcc_drop(batch: ScoringBatch) -> Tensor:
    if batch.settings.drop_baseline == "zero":
        return batch.shared(drop_increase)[0]
    return drop_increase(batch, "zero")[0]


def _adcc_parts(batch: ScoringBatch) -> tuple[Tensor, Tensor, Tensor]:
    """(coherency, complexity, average drop) of each pair, as fractions."""
    if batch.explain is None:
        raise SiseError(
            "ADCC's coherency explains the explanation map x ⊙ E again: score the batch with "
            "the method's explain callable (ScoringBatch.explain)"
        )
    again = batch.explain(batch.inputs * batch.maps[:, None].to(batch.inputs), batch.targets)
    drop = batch.shared(_adcc_drop).double() / 100
    return coherency(batch.maps, again.to(batch.maps)), complexity(batch.maps), drop


def _adcc(batch: ScoringBatch) -> Tensor:
    return adcc(*batch.shared(_adcc_parts))


def _randomisation(batch: ScoringBatch) -> Tensor:
    if batch.explain_randomised is None:
        raise SiseError(
            "the randomisation row explains its pairs on a randomised copy of the model: score "
            "the batch with ScoringBatch.explain_randomised"
        )
    chosen = [i for i, pair in enumerate(batch.pairs) if in_randomisation_subset(pair)]
    rho = torch.zeros(len(batch.pairs), dtype=torch.float64)
    index = torch.tensor(chosen, device=batch.inputs.device)
    maps = batch.maps.index_select(0, index)
    randomised = batch.explain_randomised(
        batch.inputs.index_select(0, index), batch.targets.index_select(0, index)
    )
    rho[chosen] = model_randomisation(maps, randomised.to(maps)).cpu()
    return rho


def _describe_road(settings: MetricSettings, input_hw: tuple[int, int]) -> str:
    return (
        "ROAD (pytorch-grad-cam's): removed pixels filled by noisy linear imputation (noise σ "
        f"{settings.road_noise:g}), percentiles 10–90 averaged; Δ score × 100 (combined: "
        "(LeRF − MoRF) / 2), and prediction kept (top-1 class unchanged) in %"
    )


def _describe_adcc(settings: MetricSettings, input_hw: tuple[int, int]) -> str:
    return (
        "ADCC: harmonic mean of coherency, 1 − complexity and 1 − average drop per pair (× 100); "
        "the explanation map multiplies the input (baseline `zero`)"
    )


def _describe_randomisation(settings: MetricSettings, input_hw: tuple[int, int]) -> str:
    return (
        "randomisation: Spearman ρ between the map and the map on the model with every layer "
        f"randomised, on about one pair in {RANDOMISATION_EVERY} (by a hash of the pair)"
    )


def _road_metric(
    name: str, label: str, higher: bool, value: Callable[[RoadCurves, RoadCurves], Tensor]
) -> Metric:
    return Metric(
        name,
        label,
        higher,
        lambda b: value(*b.shared(_road)).double(),
        describe=_describe_road,
    )


def _adcc_metric(name: str, label: str, higher: bool, part: int) -> Metric:
    return Metric(
        name,
        label,
        higher,
        lambda b: 100.0 * b.shared(_adcc_parts)[part].double(),
        needs_positive_score=True,
        describe=_describe_adcc,
    )


#: The rows, in the table's order (after the other metrics).
FIELD_METRICS: tuple[Metric, ...] = (
    _road_metric(
        "road_morf", "ROAD MoRF (Δ score %) ↓", False, lambda morf, lerf: 100 * morf.mean_difference
    ),
    _road_metric(
        "road_lerf", "ROAD LeRF (Δ score %) ↑", True, lambda morf, lerf: 100 * lerf.mean_difference
    ),
    _road_metric(
        "road", "ROAD combined (%) ↑", True, lambda morf, lerf: 100 * road_combined(morf, lerf)
    ),
    _road_metric(
        "road_morf_kept",
        "ROAD MoRF, prediction kept (%) ↓",
        False,
        lambda morf, lerf: morf.accuracy,
    ),
    _road_metric(
        "road_lerf_kept", "ROAD LeRF, prediction kept (%) ↑", True, lambda morf, lerf: lerf.accuracy
    ),
    _road_metric(
        "road_kept",
        "ROAD combined, prediction kept (%) ↑",
        True,
        lambda morf, lerf: (lerf.accuracy - morf.accuracy) / 2,
    ),
    Metric(
        "adcc",
        "ADCC (%) ↑",
        True,
        lambda b: 100.0 * _adcc(b).double(),
        needs_positive_score=True,
        describe=_describe_adcc,
    ),
    _adcc_metric("adcc_coherency", "ADCC coherency (%) ↑", True, 0),
    _adcc_metric("adcc_complexity", "ADCC complexity (%) ↓", False, 1),
    _adcc_metric("adcc_drop", "ADCC average drop (%) ↓", False, 2),
    Metric(
        "randomisation",
        "Randomisation ρ ↓",
        False,
        _randomisation,
        applies=in_randomisation_subset,
        describe=_describe_randomisation,
    ),
)
