"""Running the paper's benchmark: explaining and scoring the pairs, storing and resuming, the
table.

Every (image, ground-truth class) pair is explained by every method and scored with every metric
(:mod:`sise.eval.benchmark.explaining`, :mod:`sise.eval.benchmark.scoring`); the results go to
SQLite (:mod:`sise.eval.benchmark.store`), the table to :mod:`sise.eval.benchmark.report`, and a
run may be spread over processes (:mod:`sise.eval.benchmark.distributed`). The run's configuration
and identity are :mod:`sise.eval.benchmark.config`; the pairs are read ahead of the model by
:mod:`sise.eval.benchmark.loader`.

Protocol (SPEC sections 2 and 3):

* every class present in an image is one pair (:class:`sise.eval.data.pairs.EvalPair`); the
  whole image goes through the model's own transform (no crop: stretched to the input size, or
  for TorchRay's models its shorter side to the input size, the aspect ratio kept) and the
  pair's ground truth ``G`` is the union of its boxes rasterised at that input's size
  (:func:`sise.eval.data.pairs.gt_mask`);
* every method explains the pair's class with the same explained score (``sigmoid`` for the
  multi-label VOC / COCO / synthetic models); maps are at the input resolution, in [0, 1];
* ``--limit N`` keeps the first N images of the split (all their classes);
* TorchRay's pointing game (``pointing_all``, ``pointing_difficult``) scores the maps on the
  original image; the pairs of its difficult subset are looked up once, before any work
  (:mod:`sise.eval.data.difficult_subset`);
* a run in one of the paper's four settings (VOC 2007 test / COCO 2014 val with TorchRay's
  VGG16 / ResNet-50) sets the paper's published values beside its own
  (:mod:`sise.eval.benchmark.paper`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from sise.errors import SiseError
from sise.eval.benchmark.aggregation import aggregate
from sise.eval.benchmark.config import BenchmarkConfig, configuration, method_options
from sise.eval.benchmark.distributed import (
    Ranks,
    glob_escape,
    merge_shards,
    my_share,
    shard_path,
    spawn_local,
)
from sise.eval.benchmark.distributed import distributed as spread_over_ranks
from sise.eval.benchmark.explaining import build_explainer, evaluate_pack
from sise.eval.benchmark.loader import pair_loader, resolve_pack
from sise.eval.benchmark.models import load_benchmark_model
from sise.eval.benchmark.paper import PaperComparison, compare_run
from sise.eval.benchmark.report import (
    RunDescription,
    default_name,
    format_table,
    header,
    save_examples,
    save_outputs,
)
from sise.eval.benchmark.scoring import check_metrics, required_metrics
from sise.eval.benchmark.store import ResultStore, check_writable, config_id
from sise.eval.data.datasets import NEEDS_MODEL, Dataset, dataset_kind, load_dataset, select_pairs
from sise.eval.data.difficult_subset import read_difficult_subset
from sise.eval.data.pairs import EvalPair
from sise.methods.base import Explainer
from sise.models.loading import LoadedModel, load_model
from sise.options import result_options
from sise.runtime import retained_freed_memory

__all__ = ["BenchmarkResult", "check_database", "run_benchmark", "run_benchmark_local"]


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
    # the paper's setting the run is in, and per method and metric the paper's value beside ours
    paper_setting: tuple[str, str] | None = None
    paper: dict[str, dict[str, PaperComparison]] = field(default_factory=dict)


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
    check_database(db, read_only=config.report_only)  # before any work

    with spread_over_ranks(config.device, distributed) as ranks:
        out = _prepare_out(config.out) if ranks.rank == 0 else None
        kind, dataset, identity, loaded = _load(config, ranks.device(config.device))
        pairs = _mark_difficult(select_pairs(dataset, config.limit), kind, metrics, config)
        # Extremal Perturbation's pixel sizes scale with the input's shorter side: the model's
        # input size for every photo, under both resizes (the shorter-side one keeps it)
        options = {m: method_options(config, m, loaded.input_size) for m in methods}
        configs = {m: configuration(config, identity, loaded, m, options[m]) for m in methods}
        config_ids = {m: config_id(c) for m, c in configs.items()}
        required = {(p.image_id, p.class_index): required_metrics(p, metrics) for p in pairs}

        # Rank 0 folds in whatever a previous (possibly killed) distributed run left behind;
        # --report-only writes nothing
        if ranks.rank == 0 and not config.report_only:
            with ResultStore(db) as store:
                for c in configs.values():
                    store.register_config(c)
                merge_shards(store, db)
        ranks.barrier()

        if not config.report_only:
            with ResultStore(db) as store:
                done = store.completed(config_ids, required)
            todo = [
                (p, [m for m in methods if (p.image_id, p.class_index, m) not in done])
                for p in pairs
            ]
            # a pair no metric applies to (outside pointing_difficult's subset) has nothing to do;
            # what is left is shared out, so a resumed run keeps every rank equally busy
            todo = [(p, m) for p, m in todo if m and required[(p.image_id, p.class_index)]]
            todo = my_share(todo, ranks)
            explainers = {m: build_explainer(m, loaded.model, config, options[m]) for m in methods}
            _work(config, loaded, todo, explainers, config_ids, metrics, configs, pairs, db, ranks)
        ranks.barrier()
        if ranks.rank != 0:
            return None
        with ResultStore(db, read_only=config.report_only) as store:
            if not config.report_only:
                merge_shards(store, db)
            rows = store.rows(config_ids)
            stored_maps = store.maps(config_ids)
        summary = aggregate(rows, pairs, methods, metrics, common_only=config.common_only)
        name = config.name or default_name(config.model, kind)
        split = identity.get("split", "–")
        setting, paper = compare_run(kind, split, loaded.name, summary.values, summary.errors)
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
            resize=loaded.resize,
            paper_setting=setting,
            paper_methods=tuple(paper),
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
            paper,
        )
        files = save_outputs(
            out,
            name,
            markdown,
            table_csv,
            lambda path: save_examples(
                path,
                pairs[: config.figure_pairs],
                methods,
                stored_maps,
                f"{loaded.name} on {kind} ({split})",
            ),
        )
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
            setting,
            paper,
        )


def check_database(db: Path, *, read_only: bool = False) -> None:
    """Refuse, before anything is loaded or computed, a results database the run could not use:
    damaged, read-only, in a read-only folder, or (``read_only``: ``--report-only``) missing.
    Nothing is created: a new database is made by the run itself."""
    if not read_only and not db.exists():
        check_writable(db)
        return
    with ResultStore(db, read_only=read_only) as store:
        store.check()
    if read_only:
        shards = sorted(db.parent.glob(f"{glob_escape(db.name)}.rank*"))
        if shards:
            print(
                f"sise: note: {len(shards)} file(s) {db.name}.rank* of an unfinished "
                "distributed run are not in the table: --report-only writes nothing; a run "
                "without it folds them into the database",
                file=sys.stderr,
            )


def _mark_difficult(
    pairs: list[EvalPair], kind: str, metrics: Sequence[str], config: BenchmarkConfig
) -> list[EvalPair]:
    """The pairs, each marked in or out of the pointing game's difficult subset when
    ``pointing_difficult`` is among the metrics (its file is read here, before any work)."""
    if "pointing_difficult" not in metrics:
        return pairs
    subset = read_difficult_subset(kind, config.metric_settings.pointing_difficult_flags)
    return [replace(pair, in_difficult_subset=subset.contains(pair)) for pair in pairs]


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
    # Only inputs of one shape share a method call: in the order of their input's shape (the
    # dataset's order within a shape; one shape under the stretch resize, so the order is kept)
    # the photos that TorchRay's shorter-side resize turns into inputs of one shape come together.
    shape = loaded.transform.input_shape
    todo = sorted(todo, key=lambda item: shape(item[0].height, item[0].width))
    loader = pair_loader([p for p, _ in todo], loaded, pack, workers)
    # one block for the whole run: freed memory is reused from pair to pair, not handed back
    # after each explanation and faulted in again
    cpu = torch.device(loaded.device).type == "cpu"
    with (
        ResultStore(target) as store,
        bar,
        retained_freed_memory() if cpu else contextlib.nullcontext(),
    ):
        for packs in loader:  # one pack per input shape
            for batch in packs:
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
    check_database(Path(config.db), read_only=config.report_only)
    spawn_local(nproc, _run_rank, config)
