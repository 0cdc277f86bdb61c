"""The paper's benchmark: every (image, ground-truth class) pair explained by every method and
scored with every metric, stored in SQLite, resumable, optionally spread over processes.

Protocol (SPEC sections 2 and 3):

* every class present in an image is one pair (:class:`sise.eval.datasets.EvalPair`); the whole
  image is resized to the model's input size (no crop) and the pair's ground truth ``G`` is the
  union of its boxes rasterised at that size (:func:`sise.eval.datasets.gt_mask`);
* every method explains the pair's class with the same explained score (``sigmoid`` for the
  multi-label VOC / COCO / synthetic models); maps are at the input resolution, in [0, 1];
* the metrics are :mod:`sise.eval.metrics`' functions: EBPG, Bbox, mIoU (top ``miou_fraction``
  of pixels), pointing game (TorchRay's 15 px on the original image, scaled to the input grid),
  Drop% / Increase% (the map multiplies the model-ready input; the masking baseline is a
  setting, printed with the table), insertion / deletion AUC (RISE; blurred / zero canvas);
* ``--limit N`` keeps the first N images of the split (all their classes).

Storage and restarts (:mod:`sise.eval.store`): each pair's rows are written in one transaction,
so an interrupted run loses at most the pair in flight; a restart with the same settings skips
every (pair, method) whose metrics are all stored. Settings that change results (dataset, model,
score, metric settings, the method's options) form the configuration; timings, batch sizes and
devices do not.

Scale-out: under ``torchrun --nproc_per_node=K -m sise.cli benchmark ...`` (or ``sise benchmark
--nproc K``) rank ``r`` takes pairs ``i % K == r``, writes its own SQLite file ``<db>.rank<r>``,
and rank 0 merges them into ``<db>`` and writes the table. Nothing is lost if a rank dies: its
file is merged by the next run's rank 0 before work is shared out.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import inspect
import io
import math
import os
import re
import socket
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sise.errors import SiseError
from sise.eval.datasets import COCODetection2014, EvalPair, VOCDetection2007, gt_mask
from sise.eval.metrics import (
    average_drop,
    blur,
    drop_and_increase,
    energy_pointing_game,
    increase_in_confidence,
    insertion_deletion_auc,
    miou,
    pointing_game_accuracy,
    pointing_game_hits,
    scaled_tolerance,
)
from sise.eval.store import MapRow, ResultRow, ResultStore, config_id
from sise.eval.zoo import load_benchmark_model, synthetic_dataset
from sise.images import load_image
from sise.methods.registry import DISPLAY_NAMES, METHODS, make_explainer
from sise.models import LoadedModel

__all__ = [
    "ALL_METRICS",
    "METRICS",
    "BenchmarkConfig",
    "BenchmarkResult",
    "format_table",
    "load_dataset",
    "parse_method_options",
    "run_benchmark",
    "summarise",
]


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool


#: The metrics, in the paper's row order (EBPG, mIoU, Bbox, Drop%, Increase%), then the rest.
METRICS: dict[str, MetricInfo] = {
    "ebpg": MetricInfo("EBPG (%) ↑", True),
    "miou": MetricInfo("mIoU (%) ↑", True),
    "bbox": MetricInfo("Bbox (%) ↑", True),
    "drop": MetricInfo("Drop% ↓", False),
    "increase": MetricInfo("Increase% ↑", True),
    "pointing": MetricInfo("Pointing game (%) ↑", True),
    "insertion": MetricInfo("Insertion AUC (%) ↑", True),
    "deletion": MetricInfo("Deletion AUC (%) ↓", False),
}
ALL_METRICS: tuple[str, ...] = tuple(METRICS)
_SECONDS = MetricInfo("Seconds / pair ↓", False)

#: Pixel-sized options of methods whose defaults are meant for 224-px inputs (scaled to others).
_PIXEL_OPTIONS: dict[str, dict[str, float]] = {
    "extremal": {"step": 7, "sigma": 21.0, "blur_sigma": 20.0},
}
#: Method defaults of the benchmark (recorded in the configuration, overridable with --option).
#: Extremal Perturbation maximises the raw class score, as TorchRay's reward does: a saturated
#: sigmoid (multi-label models score their classes at ~0.99) leaves its optimiser almost no
#: gradient, and the area penalty alone then places the mask.
_BENCHMARK_DEFAULTS: dict[str, dict[str, Any]] = {"extremal": {"score": "logit"}}
#: Options that change speed, never results: not part of the configuration.
_RUNTIME_OPTIONS = ("batch_size", "progress", "autocast_dtype", "precision", "channels_last")


@dataclass
class BenchmarkConfig:
    """Everything a benchmark run needs (the command line maps onto it one to one).

    Attributes:
        dataset: ``voc2007:PATH``, ``coco2014:PATH`` or ``synthetic[:PATH]``.
        model: ``synthetic-vgg``, ``synthetic-resnet``, ``torchray-vgg16:CKPT``,
            ``torchray-resnet50:CKPT``, a torchvision name or ``timm:NAME``.
        methods: method names (see :data:`sise.methods.registry.METHODS`).
        metrics: metric names (see :data:`METRICS`).
        db: the SQLite results file.
        out: folder for the tables and the figure (None: print only).
        limit: first N images of the split (None: all).
        split: dataset split (default ``test``; ``val2014`` for COCO).
        checkpoint: weights for a torchvision / timm model.
        input_size: square input side (default: the model's own).
        device: ``cpu``, ``cuda``, ``cuda:1`` ... (distributed CUDA runs use ``cuda:LOCAL_RANK``).
        score: the explained score (``sigmoid`` for multi-label models).
        miou_fraction: mIoU binarisation: the top share of pixels kept.
        drop_baseline: what masked-out pixels become in Drop% / Increase%: ``zero`` (the
            input-space zero, the normalisation mean) or ``blur``.
        steps: insertion / deletion steps (default: the input height, as RISE's 224 at 224 px).
        insertion_substrate, deletion_substrate: the games' canvases (RISE: blur, zero).
        pointing_tolerance: pointing-game tolerance in original-image pixels.
        method_options: per-method constructor options that change results.
        scale_pixel_options: scale pixel-sized defaults meant for 224-px inputs (Extremal
            Perturbation's ``step``, ``sigma``, ``blur_sigma``) to the input size.
        batch_size: masked inputs per forward pass for the methods and metrics that batch.
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
    miou_fraction: float = 0.2
    drop_baseline: str = "zero"
    steps: int | None = None
    insertion_substrate: str = "blur"
    deletion_substrate: str = "zero"
    pointing_tolerance: float = 15.0
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale_pixel_options: bool = True
    batch_size: int = 64
    seed: int = 0
    figure_pairs: int = 4
    name: str | None = None
    progress: bool = True
    throttle: float = 0.0
    report_only: bool = False
    common_only: bool = True


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


# --------------------------------------------------------------------------------------------
# datasets


def load_dataset(spec: str, split: str | None = None) -> tuple[str, Any, dict[str, str]]:
    """A ``--dataset`` argument as ``(kind, dataset, identity)``.

    ``kind`` is ``voc``, ``coco`` or ``synthetic``; ``identity`` describes it in the run
    configuration. ``synthetic`` without a path (or with a path that holds no dataset yet) is
    generated: the held-out split of the data the shipped synthetic models were trained on.
    """
    kind, _, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind in ("voc", "voc2007"):
        if not path:
            raise SiseError("--dataset voc2007 needs the folder: voc2007:PATH/TO/VOCdevkit")
        dataset: Any = VOCDetection2007(path, split or "test")
        return (
            "voc",
            dataset,
            {"kind": "voc2007", "root": str(dataset.root.resolve()), "split": dataset.split},
        )
    if kind in ("coco", "coco2014"):
        if not path:
            raise SiseError("--dataset coco2014 needs the folder: coco2014:PATH/TO/COCO")
        if not Path(path).is_dir():
            raise SiseError(f"no COCO dataset folder at {path}: check the path")
        split = split or "val2014"
        dataset = COCODetection2014(path, split, with_masks=False)
        return (
            "coco",
            dataset,
            {"kind": "coco2014", "root": str(Path(path).resolve()), "split": split},
        )
    if kind == "synthetic":
        root = Path(path) if path else None
        has_data = root is not None and (
            (root / "Annotations").is_dir() or (root / "VOC2007" / "Annotations").is_dir()
        )
        if not has_data:
            root = synthetic_dataset(root)
        assert root is not None
        dataset = VOCDetection2007(root, split or "test")
        # The synthetic data are generated deterministically: identify them by content, not path.
        split_file = dataset.root / "ImageSets" / "Main" / f"{dataset.split}.txt"
        digest = f"{zlib.crc32((dataset.root / 'classes.txt').read_bytes() if (dataset.root / 'classes.txt').is_file() else b''):08x}"
        digest += f"{zlib.crc32(split_file.read_bytes()):08x}"
        first = dataset[0]
        digest += f"{zlib.crc32(first.image_path.read_bytes()):08x}"
        return (
            "synthetic",
            dataset,
            {"kind": "synthetic", "content": digest, "split": dataset.split},
        )
    raise SiseError(
        f"unknown dataset {spec!r}: use voc2007:PATH, coco2014:PATH or synthetic[:PATH]"
    )


def select_pairs(dataset: Any, limit: int | None) -> list[EvalPair]:
    """The pairs of the first ``limit`` images of the split, in split order."""
    if limit is not None and limit < 1:
        raise SiseError(f"--limit must be >= 1, got {limit}")
    images = dataset.images()
    keep = {image.image_id for image in (images if limit is None else images[:limit])}
    pairs = [pair for pair in dataset if pair.image_id in keep]
    if not pairs:
        raise SiseError("the selected images have no ground-truth class to explain")
    return pairs


# --------------------------------------------------------------------------------------------
# configuration


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
) -> dict[str, Any]:
    """The result-affecting options of ``method`` for this run (recorded in the configuration)."""
    options: dict[str, Any] = dict(_BENCHMARK_DEFAULTS.get(method, {}))
    if config.scale_pixel_options and method in _PIXEL_OPTIONS:
        scale = min(input_hw) / 224.0
        for key, value in _PIXEL_OPTIONS[method].items():
            scaled = value * scale
            options[key] = max(1, round(scaled)) if isinstance(value, int) else round(scaled, 4)
    options.update(config.method_options.get(method, {}))
    return options


def _build_explainer(
    method: str, loaded: LoadedModel, config: BenchmarkConfig, options: dict[str, Any]
):  # noqa: ANN202
    accepted = inspect.signature(METHODS[method]).parameters
    runtime: dict[str, Any] = {}
    if "batch_size" in accepted:
        runtime["batch_size"] = config.batch_size
    if "progress" in accepted:
        runtime["progress"] = False
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise SiseError(
            f"method {method!r} has no option {unknown[0]!r}; its options: "
            f"{', '.join(k for k in accepted if k != 'model')}"
        )
    return make_explainer(method, loaded.model, **{"score": config.score, **runtime, **options})


def parse_method_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["extremal.iterations=300", ...]`` as ``{"extremal": {"iterations": 300}}`` (values are
    JSON when they parse as JSON, else strings)."""
    import json

    parsed: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, option = key.strip().partition(".")
        if not sep or not dot or not method or not option:
            raise SiseError(
                f"--option {item!r}: write METHOD.KEY=VALUE, e.g. extremal.iterations=300"
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, list):
            value = tuple(value)
        parsed.setdefault(method.lower(), {})[option] = value
    return parsed


def _pair_seed(seed: int, pair: EvalPair, method: str) -> int:
    return zlib.crc32(f"{seed}/{pair.image_id}/{pair.class_index}/{method}".encode())


# --------------------------------------------------------------------------------------------
# evaluation of one pair


def evaluate_pair(
    loaded: LoadedModel,
    pair: EvalPair,
    explainers: dict[str, Any],
    config_ids: dict[str, str],
    metrics: Sequence[str],
    config: BenchmarkConfig,
    keep_maps: bool = False,
) -> tuple[list[ResultRow], list[MapRow]]:
    """Explain one pair with each given method and score each map; nothing is written."""
    rgb = load_image(pair.image_path)
    inputs = loaded.preprocess(rgb)
    height, width = loaded.input_size
    target = torch.tensor([pair.class_index], device=inputs.device)
    ground_truth = gt_mask(pair, height, width)[None].to(inputs.device)
    tolerance = scaled_tolerance(
        (pair.height, pair.width), (height, width), config.pointing_tolerance
    )
    steps = config.steps or height
    drop_baseline: Tensor | None = None
    if config.drop_baseline == "blur":
        drop_baseline = blur(inputs)
    elif config.drop_baseline != "zero":
        raise SiseError(f"unknown masking baseline {config.drop_baseline!r}: use 'zero' or 'blur'")

    rows: list[ResultRow] = []
    maps_out: list[MapRow] = []
    for method, explainer in explainers.items():
        torch.manual_seed(_pair_seed(config.seed, pair, method))
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
        start = time.perf_counter()
        try:
            explanation = explainer(inputs, target)
            maps = explanation.maps.detach().float()
            if inputs.device.type == "cuda":
                torch.cuda.synchronize(inputs.device)
        except Exception as error:
            raise SiseError(
                f"{method} failed on image {pair.image_id} class {pair.class_name}: {error}"
            ) from error
        seconds = time.perf_counter() - start
        if maps.shape != (1, height, width):
            raise SiseError(
                f"{method} returned maps of shape {tuple(maps.shape)} for a {height}x{width} input"
            )
        if not bool(torch.isfinite(maps).all()):
            raise SiseError(f"{method} returned a map with NaN on image {pair.image_id}")
        maps = maps.clamp(0, 1)
        values: dict[str, float] = {}
        if "ebpg" in metrics:
            values["ebpg"] = float(energy_pointing_game(maps, ground_truth)[0])
        if "bbox" in metrics:
            from sise.eval.metrics import bbox_score

            values["bbox"] = float(bbox_score(maps, ground_truth)[0])
        if "miou" in metrics:
            values["miou"] = 100.0 * float(miou(maps, ground_truth, config.miou_fraction)[0])
        if "pointing" in metrics:
            values["pointing"] = float(pointing_game_hits(maps, ground_truth, tolerance)[0])
        if "drop" in metrics or "increase" in metrics:
            drop, increase = drop_and_increase(
                loaded.model,
                inputs,
                target,
                maps,
                score=config.score,  # type: ignore[arg-type]
                baseline=drop_baseline,
                batch_size=config.batch_size,
            )
            if "drop" in metrics:
                values["drop"] = float(drop[0])
            if "increase" in metrics:
                values["increase"] = float(increase[0])
        if "insertion" in metrics or "deletion" in metrics:
            insertion, deletion = insertion_deletion_auc(
                loaded.model,
                inputs,
                target,
                maps,
                steps=steps,
                score=config.score,  # type: ignore[arg-type]
                insertion_substrate=config.insertion_substrate,  # type: ignore[arg-type]
                deletion_substrate=config.deletion_substrate,  # type: ignore[arg-type]
                batch_size=config.batch_size,
            )
            if "insertion" in metrics:
                values["insertion"] = 100.0 * float(insertion[0])
            if "deletion" in metrics:
                values["deletion"] = 100.0 * float(deletion[0])
        for metric in metrics:
            rows.append(
                ResultRow(
                    config_ids[method],
                    pair.image_id,
                    pair.class_index,
                    pair.class_name,
                    method,
                    metric,
                    values[metric],
                    seconds,
                )
            )
        if keep_maps:
            maps_out.append(
                MapRow(
                    config_ids[method],
                    pair.image_id,
                    pair.class_index,
                    method,
                    maps[0].cpu().numpy(),
                    seconds,
                )
            )
    return rows, maps_out


# --------------------------------------------------------------------------------------------
# tables


def summarise(
    rows: Sequence[ResultRow],
    pairs: Sequence[EvalPair],
    methods: Sequence[str],
    metrics: Sequence[str],
    *,
    common_only: bool = True,
) -> tuple[dict[str, dict[str, float | None]], dict[str, int]]:
    """Aggregate per-pair rows into the table's values, over the given pairs only.

    EBPG, Bbox, mIoU, insertion, deletion: means. Drop%: :func:`average_drop`. Increase%:
    :func:`increase_in_confidence`. Pointing game: :func:`pointing_game_accuracy` (per class,
    then over classes). ``"seconds"``: the mean time per pair.

    With ``common_only`` (the default) only the pairs that every method has completed (every
    metric stored) count, so that the columns of a partial run are still comparable; the
    returned counts (method → pairs aggregated) say how many that is.
    """
    wanted = {(p.image_id, p.class_index) for p in pairs}
    have: dict[tuple[str, int, str], set[str]] = {}
    for row in rows:
        if (row.image_id, row.class_index) in wanted:
            have.setdefault((row.image_id, row.class_index, row.method), set()).add(row.metric)
    complete = {key for key, found in have.items() if set(metrics) <= found}
    if common_only:
        wanted = {pair for pair in wanted if all((*pair, m) in complete for m in methods)}
    per: dict[tuple[str, str], list[tuple[float, int]]] = {}
    seconds: dict[str, dict[tuple[str, int], float]] = {}
    for row in rows:
        pair = (row.image_id, row.class_index)
        if pair in wanted and (*pair, row.method) in complete:
            per.setdefault((row.method, row.metric), []).append((row.value, row.class_index))
            seconds.setdefault(row.method, {})[pair] = row.seconds
    values: dict[str, dict[str, float | None]] = {m: {} for m in [*metrics, "seconds"]}
    counts: dict[str, int] = {}
    for method in methods:
        for metric in metrics:
            entries = per.get((method, metric), [])
            if not entries:
                values[metric][method] = None
                continue
            data = torch.tensor([v for v, _ in entries], dtype=torch.float64)
            if metric == "drop":
                values[metric][method] = average_drop(data)
            elif metric == "increase":
                values[metric][method] = increase_in_confidence(data > 0.5)
            elif metric == "pointing":
                classes = torch.tensor([c for _, c in entries])
                values[metric][method] = pointing_game_accuracy(data > 0.5, classes)
            else:
                values[metric][method] = float(data.mean())
        times = seconds.get(method, {})
        values["seconds"][method] = float(np.mean(list(times.values()))) if times else None
        counts[method] = len(times)
    return values, counts


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_table(
    values: dict[str, dict[str, float | None]],
    methods: Sequence[str],
    metrics: Sequence[str],
    counts: dict[str, int] | None = None,
    header: str = "",
) -> tuple[str, str]:
    """The paper's layout: methods as columns (paper order), metrics as rows, the best value of
    each row in bold (lowest for Drop%, deletion AUC and time; ties at the printed precision all
    bold). Returns ``(markdown, csv)``."""
    methods = sorted(
        methods, key=lambda m: list(DISPLAY_NAMES).index(m) if m in DISPLAY_NAMES else 99
    )
    names = [DISPLAY_NAMES.get(m, m) for m in methods]
    ordered = [m for m in METRICS if m in metrics] + [m for m in metrics if m not in METRICS]
    lines = ["| Metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(methods)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["metric", *names])
    row_keys: list[tuple[str, MetricInfo]] = [
        (m, METRICS.get(m, MetricInfo(m, True))) for m in ordered
    ]
    if "seconds" in values:
        row_keys.append(("seconds", _SECONDS))
    for key, info in row_keys:
        digits = 3 if key == "seconds" else 2
        cells = [values.get(key, {}).get(m) for m in methods]
        shown = [_fmt(v, digits) for v in cells]
        present = [float(s) for s in shown if s != "–"]
        best = None
        if len(present) > 1:
            best = max(present) if info.higher_is_better else min(present)
        row = [
            f"**{s}**" if best is not None and s != "–" and float(s) == best else s for s in shown
        ]
        lines.append(f"| {info.label} | " + " | ".join(row) + " |")
        writer.writerow([info.label, *[("" if v is None else repr(float(v))) for v in cells]])
    if counts is not None:
        lines.append("| Pairs | " + " | ".join(str(counts.get(m, 0)) for m in methods) + " |")
        writer.writerow(["pairs", *[counts.get(m, 0) for m in methods]])
    markdown = (header + "\n\n" if header else "") + "\n".join(lines) + "\n"
    return markdown, buffer.getvalue()


def _header(
    config: BenchmarkConfig,
    kind: str,
    identity: dict[str, str],
    loaded: LoadedModel,
    pairs: Sequence[EvalPair],
    options: dict[str, dict[str, Any]],
    counts: dict[str, int],
) -> str:
    n_images = len({p.image_id for p in pairs})
    h, w = loaded.input_size
    aggregated = min(counts.values()) if counts else 0
    settings = [
        f"- dataset: `{config.dataset}` ({kind}, split `{identity['split']}`), "
        f"{n_images} images, {len(pairs)} (image, class) pairs"
        + (f" (`--limit {config.limit}`)" if config.limit else ""),
        f"- model: `{config.model}` ({loaded.name}), input {h}×{w}, explained score "
        f"`{config.score}`",
        f"- mIoU: map binarised to its top {100 * config.miou_fraction:g}% of pixels",
        f"- Drop% / Increase%: masking baseline `{config.drop_baseline}` "
        + (
            "(a masked-out pixel takes the input-space zero, i.e. the normalisation mean)"
            if config.drop_baseline == "zero"
            else "(a masked-out pixel takes the Gaussian-blurred image)"
        ),
        f"- insertion / deletion: {config.steps or h} steps, canvases "
        f"`{config.insertion_substrate}` / `{config.deletion_substrate}`; reported as AUC × 100",
        f"- pointing game: {config.pointing_tolerance:g} px tolerance on the original image, "
        "accuracy per class then averaged",
        (
            f"- aggregated over the {aggregated} of {len(pairs)} pairs that every method has "
            "completed"
            if config.common_only
            else "- each method aggregated over the pairs it has completed (row Pairs)"
        ),
    ]
    for method, opts in options.items():
        if opts:
            settings.append(
                f"- {DISPLAY_NAMES.get(method, method)} options: "
                + ", ".join(f"{k}={v}" for k, v in opts.items())
            )
    return (
        f"### {config.name or _default_name(config, kind)}\n\n"
        + "\n".join(settings)
        + "\n\nBest per row in **bold** (↑ higher is better, ↓ lower is better)."
    )


def _default_name(config: BenchmarkConfig, kind: str) -> str:
    model = config.model.partition(":")[0]
    if kind == "synthetic":
        model = model.removeprefix("synthetic-")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{kind}_{model}")


def save_examples(
    path: Path,
    pairs: Sequence[EvalPair],
    methods: Sequence[str],
    stored: dict[tuple[str, int, str], tuple[np.ndarray, float]],
    title: str,
) -> Path | None:
    """A grid: one row per example pair (the photo, then each method's map over it)."""
    import matplotlib.pyplot as plt

    from sise.viz import overlay

    rows = [p for p in pairs if any((p.image_id, p.class_index, m) in stored for m in methods)]
    if not rows:
        return None
    methods = sorted(
        methods, key=lambda m: list(DISPLAY_NAMES).index(m) if m in DISPLAY_NAMES else 99
    )
    cols = len(methods) + 1
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.9 * cols, 2.0 * len(rows) + 0.4), squeeze=False
    )
    for r, pair in enumerate(rows):
        rgb = load_image(pair.image_path)
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_ylabel(f"{pair.image_id}\n{pair.class_name}", fontsize=8)
        for x0, y0, x1, y1 in pair.boxes:
            axes[r, 0].add_patch(
                plt.Rectangle(
                    (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1
                )
            )
        for c, method in enumerate(methods, start=1):
            entry = stored.get((pair.image_id, pair.class_index, method))
            if entry is not None:
                axes[r, c].imshow(overlay(rgb, torch.from_numpy(entry[0])))
                axes[r, c].set_xlabel(f"{entry[1]:.2f} s", fontsize=7)
            if r == 0:
                axes[r, c].set_title(DISPLAY_NAMES.get(method, method), fontsize=8)
        if r == 0:
            axes[r, 0].set_title("input + GT boxes", fontsize=8)
        for axis in axes[r]:
            axis.set_xticks([])
            axis.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    # A 256-colour palette keeps the file small enough to commit (noisy photos compress badly).
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    plt.close(fig)
    buffer.seek(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


# --------------------------------------------------------------------------------------------
# distributed plumbing


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False

    def barrier(self) -> None:
        if self.initialised:
            import torch.distributed as dist

            dist.barrier()


@contextlib.contextmanager
def _distributed(device: str, required: bool) -> Iterator[_Dist]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        if required:
            raise SiseError(
                "--distributed needs the torch.distributed environment: launch with "
                "torchrun --nproc_per_node=K -m sise.cli benchmark ..., or pass --nproc K"
            )
        yield _Dist()
        return
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    # Ranks wait for each other only at the start and the end; the slowest shard may take hours.
    dist.init_process_group(backend, timeout=datetime.timedelta(days=7))
    try:
        yield _Dist(rank, world, local_rank, True)
    finally:
        dist.destroy_process_group()


def _shard_path(db: Path, rank: int) -> Path:
    return db.with_name(f"{db.name}.rank{rank}")


def _merge_shards(store: ResultStore, db: Path) -> int:
    merged = 0
    for shard in sorted(db.parent.glob(f"{glob_escape(db.name)}.rank*")):
        if shard.suffix.startswith(".rank") and shard.suffix[5:].isdigit():
            merged += store.merge_from(shard)
            shard.unlink()
            for extra in (Path(f"{shard}-journal"), Path(f"{shard}-wal"), Path(f"{shard}-shm")):
                extra.unlink(missing_ok=True)
    return merged


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


# --------------------------------------------------------------------------------------------
# the run


def run_benchmark(config: BenchmarkConfig, *, distributed: bool = False) -> BenchmarkResult | None:
    """Run (or resume) a benchmark and return its table on rank 0 (see the module docstring)."""
    unknown_metrics = [m for m in config.metrics if m not in METRICS]
    if unknown_metrics:
        raise SiseError(f"unknown metric {unknown_metrics[0]!r}: choose from {', '.join(METRICS)}")
    methods = [m.lower() for m in config.methods]
    for method in methods:
        if method not in METHODS:
            raise SiseError(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    if not methods:
        raise SiseError("no method to benchmark")
    if config.score not in ("softmax", "sigmoid", "logit"):
        raise SiseError(f"unknown score {config.score!r}")
    metrics = [m for m in METRICS if m in config.metrics]
    if ("drop" in metrics or "increase" in metrics) and config.score == "logit":
        raise SiseError("Drop% / Increase% need a positive score: use --score sigmoid or softmax")
    db = Path(config.db)

    with _distributed(config.device, distributed) as dist_info:
        device = config.device
        if dist_info.initialised and device.startswith("cuda"):
            device = f"cuda:{dist_info.local_rank}"
        kind, dataset, identity = load_dataset(config.dataset, config.split)
        pairs = select_pairs(dataset, config.limit)
        loaded = load_benchmark_model(
            config.model,
            dataset=kind,
            class_names=dataset.class_names,
            checkpoint=config.checkpoint,
            device=device,
            input_size=config.input_size,
        )
        common: dict[str, object] = {
            "dataset": identity,
            "model": _model_identity(config, loaded),
            "score": config.score,
            "metrics": {
                "miou_fraction": config.miou_fraction,
                "drop_baseline": config.drop_baseline,
                "steps": config.steps or loaded.input_size[0],
                "insertion_substrate": config.insertion_substrate,
                "deletion_substrate": config.deletion_substrate,
                "pointing_tolerance": config.pointing_tolerance,
            },
            "seed": config.seed,
        }
        options = {m: method_options(config, m, loaded.input_size) for m in methods}
        configs = {m: {**common, "method": m, "options": options[m]} for m in methods}
        config_ids = {m: config_id(c) for m, c in configs.items()}

        # Rank 0 folds in whatever a previous (possibly killed) distributed run left behind.
        if dist_info.rank == 0:
            with ResultStore(db) as store:
                for c in configs.values():
                    store.register_config(c)
                _merge_shards(store, db)
        dist_info.barrier()
        with ResultStore(db) as store:
            done = store.completed(config_ids, metrics)

        if not config.report_only:
            figure_keys = {(p.image_id, p.class_index) for p in pairs[: config.figure_pairs]}
            mine = [p for i, p in enumerate(pairs) if i % dist_info.world == dist_info.rank]
            todo = [
                (p, [m for m in methods if (p.image_id, p.class_index, m) not in done])
                for p in mine
            ]
            todo = [(p, ms) for p, ms in todo if ms]
            target = db if dist_info.world == 1 else _shard_path(db, dist_info.rank)
            explainers = {m: _build_explainer(m, loaded, config, options[m]) for m in methods}
            _work(
                config,
                loaded,
                todo,
                explainers,
                config_ids,
                metrics,
                configs,
                figure_keys,
                target,
                dist_info,
            )
        dist_info.barrier()
        if dist_info.rank != 0:
            return None
        with ResultStore(db) as store:
            _merge_shards(store, db)
            rows = store.rows(config_ids)
            stored_maps = store.maps(config_ids)
        values, counts = summarise(rows, pairs, methods, metrics, common_only=config.common_only)
        header = _header(config, kind, identity, loaded, pairs, options, counts)
        markdown, table_csv = format_table(values, methods, metrics, counts, header)
        files: list[Path] = []
        if config.out is not None:
            out = Path(config.out)
            out.mkdir(parents=True, exist_ok=True)
            name = config.name or _default_name(config, kind)
            (out / f"{name}.md").write_text(markdown)
            (out / f"{name}.csv").write_text(table_csv)
            files += [out / f"{name}.md", out / f"{name}.csv"]
            figure = save_examples(
                out / f"{name}_examples.png",
                pairs[: config.figure_pairs],
                methods,
                stored_maps,
                f"{loaded.name} on {kind} ({identity['split']})",
            )
            if figure is not None:
                files.append(figure)
        return BenchmarkResult(values, counts, len(pairs), markdown, table_csv, files, config_ids)


def _work(
    config: BenchmarkConfig,
    loaded: LoadedModel,
    todo: list[tuple[EvalPair, list[str]]],
    explainers: dict[str, Any],
    config_ids: dict[str, str],
    metrics: list[str],
    configs: dict[str, dict[str, object]],
    figure_keys: set[tuple[str, int]],
    target: Path,
    dist_info: _Dist,
) -> None:
    from tqdm.auto import tqdm

    label = (
        "benchmark"
        if dist_info.world == 1
        else f"benchmark rank {dist_info.rank}/{dist_info.world}"
    )
    bar = tqdm(
        total=len(todo),
        desc=label,
        unit="pair",
        disable=not config.progress or dist_info.rank != 0,
        dynamic_ncols=True,
    )
    with ResultStore(target) as store, bar:
        for pair, pending in todo:
            rows, maps = evaluate_pair(
                loaded,
                pair,
                {m: explainers[m] for m in pending},
                config_ids,
                metrics,
                config,
                keep_maps=(pair.image_id, pair.class_index) in figure_keys,
            )
            store.write_pair(rows, maps, [configs[m] for m in pending])
            bar.update(1)
            if config.throttle > 0:
                time.sleep(config.throttle)


# --------------------------------------------------------------------------------------------
# launching local workers without torchrun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawned_worker(rank: int, world: int, port: int, config_dict: dict[str, Any]) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    config = BenchmarkConfig(**config_dict)
    result = run_benchmark(config, distributed=True)
    if result is not None:
        print(result.markdown)
        for path in result.files:
            print(f"wrote {path}")


def run_benchmark_local(config: BenchmarkConfig, nproc: int) -> None:
    """Run the benchmark in ``nproc`` local worker processes (like ``torchrun --nproc_per_node``);
    rank 0 prints the table."""
    import torch.multiprocessing as mp

    if nproc < 2:
        raise SiseError("--nproc must be at least 2 (use no --nproc for one process)")
    mp.start_processes(
        _spawned_worker,
        args=(nproc, _free_port(), asdict(config)),
        nprocs=nproc,
        start_method="spawn",
    )
