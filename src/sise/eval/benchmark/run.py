"""Running the paper's benchmark: explaining and scoring the pairs, storing and resuming, the
table.

Every (image, ground-truth class) pair is explained by every method and scored with every metric
(:mod:`sise.eval.benchmark.scoring`); the results go to SQLite
(:mod:`sise.eval.benchmark.store`), the table to :mod:`sise.eval.benchmark.report`, and a run
may be spread over processes (:mod:`sise.eval.benchmark.distributed`). The run's configuration
and identity are :mod:`sise.eval.benchmark.config`; the pairs are read ahead of the model by
:mod:`sise.eval.benchmark.loader`.

Protocol (SPEC sections 2 and 3):

* every class present in an image is one pair (:class:`sise.eval.data.pairs.EvalPair`); the
  whole image is resized to the model's input size (no crop) and the pair's ground truth ``G``
  is the union of its boxes rasterised at that size (:func:`sise.eval.data.pairs.gt_mask`);
* every method explains the pair's class with the same explained score (``sigmoid`` for the
  multi-label VOC / COCO / synthetic models); maps are at the input resolution, in [0, 1];
* ``--limit N`` keeps the first N images of the split (all their classes).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from sise.errors import SiseError
from sise.eval.benchmark.aggregation import aggregate
from sise.eval.benchmark.config import BenchmarkConfig, configuration, method_options
from sise.eval.benchmark.distributed import Ranks, merge_shards, my_share, shard_path, spawn_local
from sise.eval.benchmark.distributed import distributed as spread_over_ranks
from sise.eval.benchmark.loader import model_ready, pair_loader, resolve_pack
from sise.eval.benchmark.models import load_benchmark_model
from sise.eval.benchmark.report import (
    RunDescription,
    default_name,
    format_table,
    header,
    save_examples,
)
from sise.eval.benchmark.scoring import ScoringBatch, check_metrics, required_metrics, score_batch
from sise.eval.benchmark.store import MapRow, ResultRow, ResultStore, config_id
from sise.eval.data.datasets import NEEDS_MODEL, Dataset, dataset_kind, load_dataset, select_pairs
from sise.eval.data.pairs import EvalPair, gt_mask
from sise.eval.digest import digest
from sise.images import load_image
from sise.methods.base import Explainer
from sise.methods.registry import make_explainer
from sise.models.loading import LoadedModel, load_model
from sise.options import OptionValue, result_options
from sise.runtime import retained_freed_memory

__all__ = [
    "BenchmarkResult",
    "PairResults",
    "evaluate_pack",
    "evaluate_pair",
    "run_benchmark",
    "run_benchmark_local",
]


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns on rank 0 (other ranks get ``None``)."""

    values: dict[str, dict[str, float | None]]  # metric (and "seconds") → method → value
    counts: dict[str, int]  # method → pairs with results
    pairs: int
    markdown: str
    csv: str
    files: list[Path]
    config_ids: dict[str, str]
    metric_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, dict[str, float | None]] = field(default_factory=dict)  # standard errors
    near_best: dict[str, set[str]] = field(default_factory=dict)  # see aggregation.Summary


def _build_explainer(
    method: str, loaded: LoadedModel, config: BenchmarkConfig, options: dict[str, OptionValue]
) -> Explainer:
    try:
        return make_explainer(
            method, loaded.model, runtime=config.runtime(), **{"score": config.score, **options}
        )
    except TypeError as error:
        raise SiseError(f"cannot build {method} with options {options}: {error}") from error


def _pair_seed(seed: int, pair: EvalPair, method: str) -> int:
    """The seed of ``method`` on ``pair``: the same in every run, whatever ran before it."""
    text = f"{seed}/{pair.image_id}/{pair.class_index}/{method}"
    return int(digest([text.encode()], "crc32"), 16)


# --------------------------------------------------------------------------------------------
# explaining and scoring


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
        inputs: (n, C, H, W) their model-ready images, on the model's device.
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
    height, width = loaded.input_size
    results = [PairResults() for _ in pairs]
    keep = list(keep_maps) if keep_maps is not None else [False] * len(pairs)
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
        batch = ScoringBatch(
            loaded.model,
            group,
            x,
            targets,
            maps,
            truth,
            config.metric_settings,
            config.score,  # type: ignore[arg-type]
            config.batch_size,
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
    height, width = loaded.input_size
    inputs = model_ready(load_image(pair.image_path), loaded).to(loaded.device)
    truth = gt_mask(pair, height, width)[None].to(loaded.device)
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


# --------------------------------------------------------------------------------------------
# the run


def _load(config: BenchmarkConfig, device: str) -> tuple[str, Dataset, dict[str, str], LoadedModel]:
    """The dataset and the model; a dataset made for the model (photos) comes second."""
    kind = dataset_kind(config.dataset)
    side = config.input_size
    if kind in NEEDS_MODEL:
        if config.model.startswith(("synthetic-", "torchray-")):
            raise SiseError(
                f"--dataset {kind} is labelled for an ImageNet model: use efficientnet_lite0, a "
                f"torchvision name or timm:NAME, not {config.model}"
            )
        loaded = load_model(
            config.model,
            config.checkpoint,
            device=device,
            # None: the model's own size (260 px for EfficientNet-Lite2)
            input_size=(side, side) if side else None,
        )
        kind, dataset, identity = load_dataset(config.dataset, config.split, loaded=loaded)
        return kind, dataset, identity, loaded
    kind, dataset, identity = load_dataset(config.dataset, config.split)
    loaded = load_benchmark_model(
        config.model,
        dataset=kind,
        class_names=dataset.class_names,
        checkpoint=config.checkpoint,
        device=device,
        input_size=side,
    )
    return kind, dataset, identity, loaded


def _prepare_out(out: str | Path | None) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SiseError(f"cannot create the --out folder {str(path)!r}: {error}") from None
    return path


def run_benchmark(config: BenchmarkConfig, *, distributed: bool = False) -> BenchmarkResult | None:
    """Run (or resume) a benchmark and return its table on rank 0 (see the module docstring).

    Args:
        config: the run.
        distributed: refuse to run outside torchrun (``--distributed``).
    """
    config.validate()
    methods = config.method_keys()
    metrics = check_metrics(config.metrics, config.score)
    db = Path(config.db)

    with spread_over_ranks(config.device, distributed) as ranks:
        out = _prepare_out(config.out) if ranks.rank == 0 else None
        kind, dataset, identity, loaded = _load(config, ranks.device(config.device))
        pairs = select_pairs(dataset, config.limit)
        options = {m: method_options(config, m, loaded.input_size) for m in methods}
        configs = {m: configuration(config, identity, loaded, m, options[m]) for m in methods}
        config_ids = {m: config_id(c) for m, c in configs.items()}
        required = {(p.image_id, p.class_index): required_metrics(p, metrics) for p in pairs}

        # Rank 0 folds in whatever a previous (possibly killed) distributed run left behind.
        if ranks.rank == 0:
            with ResultStore(db) as store:
                for c in configs.values():
                    store.register_config(c)
                merge_shards(store, db)
        ranks.barrier()
        with ResultStore(db) as store:
            done = store.completed(config_ids, required)

        if not config.report_only:
            todo = [
                (p, [m for m in methods if (p.image_id, p.class_index, m) not in done])
                for p in my_share(pairs, ranks)
            ]
            todo = [(p, pending) for p, pending in todo if pending]
            explainers = {m: _build_explainer(m, loaded, config, options[m]) for m in methods}
            _work(config, loaded, todo, explainers, config_ids, metrics, configs, pairs, db, ranks)
        ranks.barrier()
        if ranks.rank != 0:
            return None
        with ResultStore(db) as store:
            merge_shards(store, db)
            rows = store.rows(config_ids)
            stored_maps = store.maps(config_ids)
        summary = aggregate(rows, pairs, methods, metrics, common_only=config.common_only)
        name = config.name or default_name(config.model, kind)
        split = identity.get("split", "–")
        description = RunDescription(
            title=name,
            dataset=config.dataset,
            kind=kind,
            split=split,
            images=len({p.image_id for p in pairs}),
            pairs=len(pairs),
            limit=config.limit,
            model=config.model,
            model_name=loaded.name,
            input_hw=loaded.input_size,
            score=config.score,
            metrics=metrics,
            settings=config.metric_settings,
            aggregated=min(summary.counts.values()) if summary.counts else 0,
            common_only=config.common_only,
            options={m: result_options(o) for m, o in options.items()},
        )
        markdown, table_csv = format_table(
            summary.values,
            methods,
            metrics,
            summary.counts,
            header(description),
            summary.metric_counts,
            summary.errors,
            summary.near_best,
        )
        files: list[Path] = []
        if out is not None:
            (out / f"{name}.md").write_text(markdown)
            (out / f"{name}.csv").write_text(table_csv)
            files += [out / f"{name}.md", out / f"{name}.csv"]
            figure = save_examples(
                out / f"{name}_examples.png",
                pairs[: config.figure_pairs],
                methods,
                stored_maps,
                f"{loaded.name} on {kind} ({split})",
            )
            if figure is not None:
                files.append(figure)
        return BenchmarkResult(
            summary.values,
            summary.counts,
            len(pairs),
            markdown,
            table_csv,
            files,
            config_ids,
            summary.metric_counts,
            summary.errors,
            summary.near_best,
        )


def _work(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    todo: list[tuple[EvalPair, list[str]]],
    explainers: dict[str, Explainer],
    config_ids: dict[str, str],
    metrics: list[str],
    configs: dict[str, dict[str, object]],
    pairs: Sequence[EvalPair],
    db: Path,
    ranks: Ranks,
) -> None:
    from tqdm.auto import tqdm

    if not todo:
        return
    figure_keys = {(p.image_id, p.class_index) for p in pairs[: config.figure_pairs]}
    target = db if ranks.world == 1 else shard_path(db, ranks.rank)
    pack, workers = resolve_pack(config, loaded.device)
    label = "benchmark" if ranks.world == 1 else f"benchmark rank {ranks.rank}/{ranks.world}"
    bar = tqdm(
        total=len(todo),
        desc=label,
        unit="pair",
        disable=not config.progress or ranks.rank != 0,
        dynamic_ncols=True,
    )
    loader = pair_loader([p for p, _ in todo], loaded, pack, workers)
    # one block for the whole run: freed memory is reused from pair to pair, not handed back
    # after each explanation and faulted in again
    cpu = torch.device(loaded.device).type == "cpu"
    with (
        ResultStore(target) as store,
        bar,
        retained_freed_memory() if cpu else contextlib.nullcontext(),
    ):
        for batch in loader:
            group = [todo[i] for i in batch.indices]
            results = evaluate_pack(
                loaded,
                [p for p, _ in group],
                batch.inputs.to(loaded.device, non_blocking=True),
                batch.ground_truth.to(loaded.device, non_blocking=True),
                [pending for _, pending in group],
                explainers,
                config_ids,
                metrics,
                config,
                [(p.image_id, p.class_index) in figure_keys for p, _ in group],
            )
            # one transaction per pair: a kill loses at most the pairs of this pack
            for (_, pending), result in zip(group, results, strict=True):
                store.write_pair(result.rows, result.maps, [configs[m] for m in pending])
                bar.update(1)
                if config.throttle > 0:
                    time.sleep(config.throttle)


# --------------------------------------------------------------------------------------------
# launching local workers without torchrun


def _run_rank(config: BenchmarkConfig) -> None:
    result = run_benchmark(config, distributed=True)
    if result is not None:
        print(result.markdown)
        for path in result.files:
            print(f"wrote {path}")


def run_benchmark_local(config: BenchmarkConfig, nproc: int) -> None:
    """Run the benchmark in ``nproc`` local worker processes (like ``torchrun
    --nproc_per_node``); rank 0 prints the table. Settings are checked here first, so a mistake
    is reported once, not by every process."""
    config.validate()
    spawn_local(nproc, _run_rank, config)
