"""Running the paper's benchmark: the configuration, the pair loop, the run's identity, resuming.

Every (image, ground-truth class) pair is explained by every method and scored with every metric
(:mod:`sise.eval.benchmark.scoring`); the results go to SQLite (:mod:`sise.eval.benchmark.store`), the table to
:mod:`sise.eval.benchmark.report`, and a run may be spread over processes
(:mod:`sise.eval.benchmark.distributed`).

Protocol (SPEC sections 2 and 3):

* every class present in an image is one pair (:class:`sise.eval.data.datasets.EvalPair`); the whole
  image is resized to the model's input size (no crop) and the pair's ground truth ``G`` is the
  union of its boxes rasterised at that size (:func:`sise.eval.data.datasets.gt_mask`);
* every method explains the pair's class with the same explained score (``sigmoid`` for the
  multi-label VOC / COCO / synthetic models); maps are at the input resolution, in [0, 1];
* ``--limit N`` keeps the first N images of the split (all their classes).

Throughput: a :class:`torch.utils.data.DataLoader` reads and preprocesses the next pairs while
the model runs (``workers`` processes; 0 reads in the main process), and up to ``pack`` pairs are
explained by one method call (every method takes a batch of images with one target each; SISE
then shares its masked-forward batches between the images) and scored together. The time of a
packed call is shared equally between its pairs. On a CPU the values equal one-pair-at-a-time
runs to float rounding (batched matrix products round differently; metrics that rank pixels
can turn that into a few thousandths of a point). On a GPU they do not, yet: another batch
composition changes TF32 rounding enough to flip some of SISE's feature-map and gate decisions
(measured on an H100, ResNet-50: up to 2.6 points on one pair's mIoU; see
``benchmarks/results/20261126_benchmark_throughput_h100.txt``), so compare runs made with the
same ``pack``.

Identity and resuming: settings that change results form each method's configuration (the data,
the model, the explained score, :class:`~sise.eval.benchmark.scoring.MetricSettings`, the seed, the method
and its options); its hash keys the stored rows. Settings that change only speed (batch sizes,
``pack``, ``workers``, devices, and the method options in :data:`sise.options.RUNTIME_OPTIONS`)
are not part of it, so a rerun with other values of those continues the run. Each pair's rows
are written in one transaction, so an interrupted run loses at most the pairs in flight, and a
rerun skips every (pair, method) whose metrics are all stored.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from sise.errors import SiseError
from sise.eval.benchmark.distributed import Ranks, merge_shards, my_share, shard_path, spawn_local
from sise.eval.benchmark.distributed import distributed as spread_over_ranks
from sise.eval.benchmark.models import load_benchmark_model
from sise.eval.benchmark.report import (
    RunDescription,
    default_name,
    format_table,
    header,
    save_examples,
)
from sise.eval.benchmark.scoring import (
    ALL_METRICS,
    MetricSettings,
    ScoringBatch,
    aggregate,
    check_metrics,
    required_metrics,
    score_batch,
)
from sise.eval.benchmark.store import MapRow, ResultRow, ResultStore, config_id
from sise.eval.data.datasets import (
    NEEDS_MODEL,
    Dataset,
    EvalPair,
    dataset_kind,
    gt_mask,
    load_dataset,
    select_pairs,
)
from sise.images import load_image
from sise.methods.base import Explainer
from sise.methods.registry import DISPLAY_NAMES, METHODS, make_explainer
from sise.models.loading import LoadedModel, load_model
from sise.options import (
    RUNTIME_OPTIONS,
    OptionValue,
    check_method_options,
    method_key,
    result_options,
)
from sise.runtime.allocator import retained_freed_memory
from sise.runtime.device import BatchSize

__all__ = [
    "BenchmarkConfig",
    "BenchmarkResult",
    "evaluate_pack",
    "evaluate_pair",
    "method_options",
    "run_benchmark",
    "run_benchmark_local",
]

#: Pairs per method call on a GPU when ``pack`` is not given (on a CPU: 1, packing does not pay).
CUDA_PACK = 8
#: DataLoader workers on a GPU when ``workers`` is not given (on a CPU: 0, they compete with the
#: model for the cores).
CUDA_WORKERS = 4

#: Pixel-sized options of methods whose defaults are meant for 224-px inputs (scaled to others).
_PIXEL_OPTIONS: dict[str, dict[str, float]] = {
    "extremal": {"step": 7, "sigma": 21.0, "blur_sigma": 20.0},
}
#: Method defaults of the benchmark (recorded in the configuration, overridable with --option).
#: Extremal Perturbation maximises the raw class score, as TorchRay's reward does: a saturated
#: sigmoid (multi-label models score their classes at ~0.99) leaves its optimiser almost no
#: gradient, and the area penalty alone then places the mask.
_BENCHMARK_DEFAULTS: dict[str, dict[str, OptionValue]] = {"extremal": {"score": "logit"}}


@dataclass
class BenchmarkConfig:
    """Everything a benchmark run needs (the command line maps onto it one to one).

    Attributes:
        dataset: ``voc2007:PATH``, ``coco2014:PATH``, ``synthetic[:PATH]`` or ``photos[:PATH]``.
        model: ``synthetic-vgg``, ``synthetic-resnet``, ``torchray-vgg16:CKPT``,
            ``torchray-resnet50:CKPT``, a torchvision name or ``timm:NAME``.
        methods: method names (see :data:`sise.methods.registry.METHODS`).
        metrics: metric names (see :data:`sise.eval.benchmark.scoring.METRICS`).
        db: the SQLite results file.
        out: folder for the tables and the figure (None: print only).
        limit: first N images of the split (None: all).
        split: dataset split (default ``test``; ``val2014`` for COCO).
        checkpoint: weights for a torchvision / timm model.
        input_size: square input side (default: the model's own).
        device: ``cpu``, ``cuda``, ``cuda:1`` ... (distributed CUDA runs use ``cuda:LOCAL_RANK``).
        score: the explained score (``sigmoid`` for multi-label models).
        metric_settings: the metrics' settings (mIoU binarisation, masking baseline, ...).
        method_options: per-method constructor options (those in
            :data:`sise.options.RUNTIME_OPTIONS` are passed on but not part of the configuration).
        scale_pixel_options: scale pixel-sized defaults meant for 224-px inputs (Extremal
            Perturbation's ``step``, ``sigma``, ``blur_sigma``) to the input size.
        batch_size: masked inputs per forward pass for the methods and metrics that batch, or
            ``"auto"`` (sized from the free GPU memory; 32 on a CPU).
        pack: pairs explained by one method call (None: :data:`CUDA_PACK` on a GPU, 1 on a CPU).
        workers: DataLoader processes reading the next pairs (None: :data:`CUDA_WORKERS` on a
            GPU, 0 on a CPU, where the pairs are read in the main process).
        seed: base of the per-(pair, method) random seeds.
        figure_pairs: how many pairs the example figure shows (their maps are stored).
        name: file-name stem of the outputs (default: ``<dataset kind>_<model>``).
        progress: draw a progress bar.
        throttle: sleep this long after each pair (for interruption tests).
        report_only: do not compute, only build the table from the database.
        common_only: aggregate only the pairs every method has completed (else each method
            over its own completed pairs).
    """

    dataset: str
    model: str
    methods: Sequence[str] = tuple(DISPLAY_NAMES)
    metrics: Sequence[str] = ALL_METRICS
    db: str | Path = "results.sqlite"
    out: str | Path | None = None
    limit: int | None = None
    split: str | None = None
    checkpoint: str | None = None
    input_size: int | None = None
    device: str = "cpu"
    score: str = "sigmoid"
    metric_settings: MetricSettings = field(default_factory=MetricSettings)
    method_options: dict[str, dict[str, OptionValue]] = field(default_factory=dict)
    scale_pixel_options: bool = True
    batch_size: BatchSize = "auto"
    pack: int | None = None
    workers: int | None = None
    seed: int = 0
    figure_pairs: int = 4
    name: str | None = None
    progress: bool = True
    throttle: float = 0.0
    report_only: bool = False
    common_only: bool = True

    def method_keys(self) -> list[str]:
        """The methods as the registry names them, without repeats."""
        return list(dict.fromkeys(method_key(m) for m in self.methods))

    def validate(self) -> None:
        """Check every setting before anything is loaded or computed, so a mistake is one
        :class:`SiseError` at once, not a traceback after hours of work."""
        if not self.methods:
            raise SiseError(f"no method to benchmark: choose from {', '.join(METHODS)}")
        self.method_keys()
        if self.score not in ("softmax", "sigmoid", "logit"):
            raise SiseError(f"unknown score {self.score!r}: use softmax, sigmoid or logit")
        check_metrics(self.metrics, self.score)
        self.metric_settings.validate()
        check_method_options(self.method_options)
        for flag, value, least in (
            ("--limit", self.limit, 1),
            ("--size", self.input_size, 1),
            ("--batch-size", None if self.batch_size == "auto" else self.batch_size, 1),
            ("--pack", self.pack, 1),
            ("--workers", self.workers, 0),
            ("--figure-pairs", self.figure_pairs, 0),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < least
            ):
                raise SiseError(f"{flag} must be an integer >= {least}, got {value!r}")
        if not (math.isfinite(self.throttle) and self.throttle >= 0):
            raise SiseError(f"throttle must be a finite number >= 0, got {self.throttle!r}")
        if Path(self.db).is_dir():
            raise SiseError(f"--db {str(self.db)!r} is a folder: give a file name")
        if self.out is not None and Path(self.out).exists() and not Path(self.out).is_dir():
            raise SiseError(
                f"--out {str(self.out)!r} is a file: give a folder for the tables and the figure"
            )


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
    near_best: dict[str, set[str]] = field(default_factory=dict)  # see scoring.Summary


# --------------------------------------------------------------------------------------------
# the run's identity


def _model_identity(config: BenchmarkConfig, loaded: LoadedModel) -> dict[str, object]:
    identity: dict[str, object] = {"spec": config.model, "input_size": list(loaded.input_size)}
    checkpoint = config.checkpoint
    if config.model.startswith("torchray-"):
        checkpoint = config.model.partition(":")[2] or checkpoint
        identity["spec"] = config.model.partition(":")[0]
    if checkpoint:
        path = Path(checkpoint)
        identity["checkpoint"] = str(path.resolve())
        identity["checkpoint_bytes"] = path.stat().st_size if path.is_file() else None
    if config.model.startswith("synthetic-") and not checkpoint:
        # identify the shipped weights by content so a retrained model is a new configuration
        state = loaded.model.state_dict()
        digest = 0
        for key in sorted(state):
            digest = zlib.crc32(state[key].detach().cpu().numpy().tobytes(), digest)
        identity["weights_crc32"] = f"{digest:08x}"
    return identity


def method_options(
    config: BenchmarkConfig, method: str, input_hw: tuple[int, int]
) -> dict[str, OptionValue]:
    """Every option ``method`` is built with in this run: the benchmark's defaults, pixel sizes
    scaled to the input, then the user's (runtime ones included; see :func:`configuration`)."""
    options: dict[str, OptionValue] = dict(_BENCHMARK_DEFAULTS.get(method, {}))
    if config.scale_pixel_options and method in _PIXEL_OPTIONS:
        scale = min(input_hw) / 224.0
        for key, value in _PIXEL_OPTIONS[method].items():
            scaled = value * scale
            options[key] = max(1, round(scaled)) if isinstance(value, int) else round(scaled, 4)
    options.update(check_method_options(config.method_options).get(method, {}))
    return options


def configuration(
    config: BenchmarkConfig,
    dataset_identity: Mapping[str, str],
    loaded: LoadedModel,
    method: str,
    options: Mapping[str, OptionValue],
) -> dict[str, object]:
    """What identifies ``method``'s results: everything that changes them, nothing that only
    changes speed (its hash is the results' ``config_id``)."""
    identity: dict[str, object] = {
        "dataset": dict(dataset_identity),
        "model": _model_identity(config, loaded),
        "score": config.score,
        "metrics": config.metric_settings.identity(loaded.input_size),
        "seed": config.seed,
        "method": method,
        "options": result_options(options),
        # A changed default (e.g. Score-CAM's weights) must not resume onto old results.
        "defaults": method_defaults(method),
    }
    # Nor a fixed method (Explainer.revision); left out at 1 so that older runs still resume.
    revision = getattr(METHODS[method], "revision", 1)
    if revision != 1:
        identity["revision"] = revision
    return identity


def method_defaults(method: str) -> dict[str, str]:
    """The defaults of ``method``'s constructor that change its maps, as text."""
    parameters = inspect.signature(METHODS[method]).parameters.values()
    return {
        p.name: repr(p.default)
        for p in parameters
        if p.default is not inspect.Parameter.empty
        and p.name not in RUNTIME_OPTIONS
        and p.name not in ("score", "progress")
    }


def _build_explainer(
    method: str, loaded: LoadedModel, config: BenchmarkConfig, options: dict[str, OptionValue]
) -> Explainer:
    accepted = inspect.signature(METHODS[method]).parameters
    runtime: dict[str, object] = {}
    if "batch_size" in accepted:
        runtime["batch_size"] = config.batch_size
    if "progress" in accepted:
        runtime["progress"] = False
    try:
        return make_explainer(method, loaded.model, **{"score": config.score, **runtime, **options})
    except TypeError as error:
        raise SiseError(f"cannot build {method} with options {options}: {error}") from error


def _pair_seed(seed: int, pair: EvalPair, method: str) -> int:
    return zlib.crc32(f"{seed}/{pair.image_id}/{pair.class_index}/{method}".encode())


# --------------------------------------------------------------------------------------------
# reading pairs ahead of the model


@dataclass(frozen=True)
class _Preprocessing:
    """What :meth:`LoadedModel.preprocess` does to a photo, without the model."""

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def model_ready(rgb: np.ndarray, loaded: LoadedModel | _Preprocessing) -> Tensor:
    """``loaded.preprocess(rgb)`` kept on the CPU (DataLoader workers must not touch the model's
    GPU): the whole photo resized (no crop) and normalised, (1, 3, h, w). A test holds it equal
    to :meth:`LoadedModel.preprocess`."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)
    x = F.interpolate(x, size=loaded.input_size, mode="bilinear", antialias=True)
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class _Pack:
    """Pairs read and made model-ready, on the CPU: what the DataLoader hands over."""

    indices: list[int]
    inputs: Tensor  # (n, C, H, W)
    ground_truth: Tensor  # (n, H, W) bool

    def pin_memory(self) -> _Pack:
        return _Pack(self.indices, self.inputs.pin_memory(), self.ground_truth.pin_memory())


class _PairReader(TorchDataset):
    """The pairs still to compute, each read from disk and made model-ready on the CPU."""

    def __init__(self, pairs: Sequence[EvalPair], loaded: LoadedModel) -> None:
        self.pairs = list(pairs)
        # not the model: workers get a copy of this object
        self.preprocessing = _Preprocessing(loaded.input_size, loaded.mean, loaded.std)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, Tensor, Tensor]:
        pair = self.pairs[index]
        inputs = model_ready(load_image(pair.image_path), self.preprocessing)[0]
        height, width = self.preprocessing.input_size
        return index, inputs, gt_mask(pair, height, width)


def _collate(items: list[tuple[int, Tensor, Tensor]]) -> _Pack:
    return _Pack(
        [index for index, _, _ in items],
        torch.stack([inputs for _, inputs, _ in items]),
        torch.stack([truth for _, _, truth in items]),
    )


def _pair_loader(
    pairs: Sequence[EvalPair], loaded: LoadedModel, pack: int, workers: int
) -> DataLoader:
    return DataLoader(
        _PairReader(pairs, loaded),
        batch_size=pack,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=loaded.device.type == "cuda",
        prefetch_factor=2 if workers > 0 else None,
    )


def _resolve_pack(config: BenchmarkConfig, device: torch.device) -> tuple[int, int]:
    on_gpu = device.type == "cuda"
    pack = config.pack if config.pack is not None else (CUDA_PACK if on_gpu else 1)
    if config.workers is not None:
        workers = config.workers
    else:
        workers = min(CUDA_WORKERS, max(0, (os.cpu_count() or 1) // 2)) if on_gpu else 0
    return pack, workers


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
    pack, workers = _resolve_pack(config, loaded.device)
    label = "benchmark" if ranks.world == 1 else f"benchmark rank {ranks.rank}/{ranks.world}"
    bar = tqdm(
        total=len(todo),
        desc=label,
        unit="pair",
        disable=not config.progress or ranks.rank != 0,
        dynamic_ncols=True,
    )
    loader = _pair_loader([p for p, _ in todo], loaded, pack, workers)
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
