"""Explaining and scoring pairs: one call per method for a pack of pairs (:func:`evaluate_pack`),
every metric on its maps (:mod:`sise.eval.benchmark.scoring`), the rows to store
(:class:`PairResults`); nothing is written here (the run, :mod:`sise.eval.benchmark.run`, does)."""

from __future__ import annotations

import functools
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.eval.benchmark.config import BenchmarkConfig, method_options
from sise.eval.benchmark.scoring import ScoringBatch, score_batch
from sise.eval.benchmark.store import MapRow, ResultRow
from sise.eval.data.pairs import EvalPair, gt_mask
from sise.eval.digest import digest
from sise.eval.metrics import randomised_model
from sise.images import load_image
from sise.methods.base import Explainer
from sise.methods.registry import make_explainer
from sise.models.loading import LoadedModel
from sise.options import OptionValue

__all__ = ["PairResults", "evaluate_pack", "evaluate_pair"]


def _pair_seed(seed: int, pair: EvalPair, method: str) -> int:
    """The seed of ``method`` on ``pair``: the same in every run, whatever ran before it."""
    text = f"{seed}/{pair.image_id}/{pair.class_index}/{method}"
    return int(digest([text.encode()], "crc32"), 16)


#: model → seed → its randomised copy, and (seed, method) → the method's explainer on it: made
#: once per run for the randomisation row (a weak key: gone with the model).
_RANDOMISED: weakref.WeakKeyDictionary[nn.Module, dict[object, object]] = (
    weakref.WeakKeyDictionary()
)


def build_explainer(
    method: str, model: nn.Module, config: BenchmarkConfig, options: dict[str, OptionValue]
) -> Explainer:
    """``method`` on ``model`` as a run builds it: the run's runtime and score, then the
    method's options."""
    try:
        return make_explainer(
            method, model, runtime=config.runtime(), **{"score": config.score, **options}
        )
    except TypeError as error:
        raise SiseError(f"cannot build {method} with options {options}: {error}") from error


def _randomised_explainer(
    loaded: LoadedModel, method: str, config: BenchmarkConfig, example: Tensor
) -> Explainer:
    """``method`` built as the run builds it, on a copy of the model with every layer
    randomised (:func:`sise.eval.metrics.randomised_model`, seeded by the run's seed); the
    user's model is never touched."""
    cache = _RANDOMISED.setdefault(loaded.model, {})
    if config.seed not in cache:
        cache[config.seed] = randomised_model(loaded.model, example[:1], seed=config.seed)
    key = (config.seed, method)
    if key not in cache:
        options = method_options(config, method, loaded.input_size)
        model = cache[config.seed]
        assert isinstance(model, nn.Module)
        cache[key] = build_explainer(method, model, config, options)
    explainer = cache[key]
    assert isinstance(explainer, Explainer)
    return explainer


def _explain(
    explainer: Explainer | Callable[[], Explainer], seed: int
) -> Callable[[Tensor, Tensor], Tensor]:
    """The method on other inputs, as the benchmark scores maps: seeded, finite, in [0, 1]
    (NaN, e.g. from a randomised model, becomes 0)."""

    def explain(inputs: Tensor, targets: Tensor) -> Tensor:
        method = explainer if isinstance(explainer, Explainer) else explainer()
        torch.manual_seed(seed)
        maps = method(inputs, targets).maps.detach().float()
        return torch.nan_to_num(maps, nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)

    return explain


@dataclass
class PairResults:
    """One pair's rows and kept maps, written together in one transaction."""

    rows: list[ResultRow] = field(default_factory=list)
    maps: list[MapRow] = field(default_factory=list)


def evaluate_pack(
    loaded: LoadedModel,
    pairs: Sequence[EvalPair],
    inputs: Tensor,
    ground_truth: Tensor,
    pending: Sequence[Sequence[str]],
    explainers: Mapping[str, Explainer],
    config_ids: Mapping[str, str],
    metrics: Sequence[str],
    config: BenchmarkConfig,
    keep_maps: Sequence[bool] | None = None,
) -> list[PairResults]:
    """Explain ``pairs`` with each method they still need, one call per method for all of them,
    and score the maps; nothing is written.

    Args:
        loaded: the model.
        pairs: n pairs.
        inputs: (n, C, H, W) their model-ready images (of one shape), on the model's device.
        ground_truth: (n, H, W) bool regions of their classes, on the model's device.
        pending: per pair, the methods to run on it.
        explainers: method → explainer.
        config_ids: method → configuration id.
        metrics: the metrics to compute.
        config: the run's configuration.
        keep_maps: per pair, whether to keep its maps (for the example figure).

    Returns:
        Per pair, its rows and maps. A packed call's time is shared equally between its pairs.
    """
    height, width = inputs.shape[-2:]
    results = [PairResults() for _ in pairs]
    keep = list(keep_maps) if keep_maps is not None else [False] * len(pairs)
    # the steps' default, the input height, resolved on the model's input size as in the run's
    # identity: with the shorter-side resize a portrait photo's input is taller
    settings = config.metric_settings
    settings = replace(settings, steps=settings.resolved_steps(loaded.input_size))
    for method, explainer in explainers.items():
        members = [i for i, wanted in enumerate(pending) if method in wanted]
        if not members:
            continue
        group = [pairs[i] for i in members]
        index = torch.tensor(members, device=inputs.device)
        x = inputs.index_select(0, index) if len(members) < len(pairs) else inputs
        truth = ground_truth.index_select(0, index) if len(members) < len(pairs) else ground_truth
        targets = torch.tensor([p.class_index for p in group], device=inputs.device)
        # Methods draw no global random numbers today; seeding keeps any that would repeatable.
        torch.manual_seed(_pair_seed(config.seed, group[0], method))
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
        start = time.perf_counter()
        try:
            maps = explainer(x, targets).maps.detach().float()
            if inputs.device.type == "cuda":
                torch.cuda.synchronize(inputs.device)
        except Exception as error:
            where = ", ".join(f"{p.image_id}/{p.class_name}" for p in group)
            raise SiseError(f"{method} failed on (image/class) {where}: {error}") from error
        seconds = (time.perf_counter() - start) / len(group)
        if maps.shape != (len(group), height, width):
            raise SiseError(
                f"{method} returned maps of shape {tuple(maps.shape)} for {len(group)} inputs of "
                f"{height}x{width}"
            )
        if not bool(torch.isfinite(maps).all()):
            raise SiseError(f"{method} returned a map with NaN on image {group[0].image_id}")
        maps = maps.clamp(0, 1)
        seed = _pair_seed(config.seed, group[0], method)
        batch = ScoringBatch(
            loaded.model,
            group,
            x,
            targets,
            maps,
            truth,
            settings,
            config.score,  # type: ignore[arg-type]
            config.batch_size,
            # ADCC explains x ⊙ E again; the randomisation row explains on a randomised model
            explain=_explain(explainer, seed),
            explain_randomised=_explain(
                functools.partial(_randomised_explainer, loaded, method, config, x), seed
            ),
            seed=config.seed,
        )
        values = score_batch(batch, metrics)
        cid = config_ids[method]
        for j, (i, pair) in enumerate(zip(members, group, strict=True)):
            for metric in metrics:
                value = float(values[metric][j])
                if not math.isnan(value):  # NaN: the metric does not apply to this pair
                    results[i].rows.append(
                        ResultRow(
                            cid,
                            pair.image_id,
                            pair.class_index,
                            pair.class_name,
                            method,
                            metric,
                            value,
                            seconds,
                        )
                    )
            if keep[i]:
                results[i].maps.append(
                    MapRow(
                        cid, pair.image_id, pair.class_index, method, maps[j].cpu().numpy(), seconds
                    )
                )
    return results


def evaluate_pair(
    loaded: LoadedModel,
    pair: EvalPair,
    explainers: Mapping[str, Explainer],
    config_ids: Mapping[str, str],
    metrics: Sequence[str],
    config: BenchmarkConfig,
    keep_maps: bool = False,
) -> tuple[list[ResultRow], list[MapRow]]:
    """Explain one pair with each given method and score each map; nothing is written."""
    inputs = loaded.preprocess(load_image(pair.image_path))
    truth = gt_mask(pair, *inputs.shape[-2:])[None].to(loaded.device)
    (result,) = evaluate_pack(
        loaded,
        [pair],
        inputs,
        truth,
        [list(explainers)],
        explainers,
        config_ids,
        metrics,
        config,
        [keep_maps],
    )
    return result.rows, result.maps
