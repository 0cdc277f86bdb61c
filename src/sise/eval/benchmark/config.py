"""The benchmark's configuration (:class:`BenchmarkConfig`) and the run's identity.

Identity and resuming: settings that change results form each method's configuration
(:func:`configuration`: the data, the model, the explained score,
:class:`~sise.eval.benchmark.scoring.MetricSettings`, the seed, the method and its options); its
hash keys the stored rows (:func:`sise.eval.benchmark.store.config_id`). Settings that change
only speed (batch sizes, ``pack``, ``workers``, devices, and the method options in
:data:`sise.options.RUNTIME_OPTIONS`) are not part of it, so a rerun with other values of those
continues the run. Each pair's rows are written in one transaction, so an interrupted run loses
at most the pairs in flight, and a rerun skips every (pair, method) whose metrics are all stored.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sise.errors import SiseError
from sise.eval.benchmark.scoring import DEFAULT_METRICS, MetricSettings, check_metrics
from sise.eval.digest import digest, tensor_bytes
from sise.methods.registry import DISPLAY_NAMES, METHODS
from sise.models.loading import LoadedModel
from sise.options import (
    RUNTIME_OPTIONS,
    OptionValue,
    check_method_options,
    method_key,
    result_options,
)
from sise.runtime import BatchSize, Runtime

__all__ = ["BenchmarkConfig", "configuration", "method_defaults", "method_options"]

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
        input_size: input side (TorchRay's models: the shorter side, the aspect ratio kept;
            default: the model's own).
        device: ``cpu``, ``cuda``, ``cuda:1`` ... (distributed CUDA runs use ``cuda:LOCAL_RANK``).
        score: the explained score (``sigmoid`` for multi-label models).
        metric_settings: the metrics' settings (mIoU binarisation, masking baseline, ...).
        method_options: per-method constructor options (those in
            :data:`sise.options.RUNTIME_OPTIONS` are passed on but not part of the configuration).
        scale_pixel_options: scale pixel-sized defaults meant for 224-px inputs (Extremal
            Perturbation's ``step``, ``sigma``, ``blur_sigma``) to the input size.
        batch_size: masked inputs per forward pass for the methods and metrics that batch, or
            ``"auto"`` (sized from the free GPU memory; 32 on a CPU).
        pack: pairs explained by one method call (None: :data:`~sise.eval.benchmark.loader.CUDA_PACK` on a GPU, 1 on a
            CPU).
        workers: DataLoader processes reading the next pairs (None:
            :data:`~sise.eval.benchmark.loader.CUDA_WORKERS` on a GPU, 0 on a CPU, where the pairs are read in the main process).
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
    metrics: Sequence[str] = DEFAULT_METRICS
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

    def runtime(self) -> Runtime:
        """The run's :class:`~sise.runtime.Runtime`: its batch size and device, no progress bar
        inside a method (the run draws its own); ``--option METHOD.batch_size=...`` and the
        like change it for one method."""
        return Runtime(batch_size=self.batch_size, device=self.device)

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
        values = (tensor_bytes(state[key]) for key in sorted(state))
        identity["weights_crc32"] = digest(values, "crc32")
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


#: The speed settings that were constructor options of these methods before the Runtime held
#: them, with their defaults as the configuration recorded them: kept in the identity so that
#: results made before still resume (the values are the Runtime's defaults).
_FORMER_SPEED_DEFAULTS: dict[str, dict[str, str]] = {
    "sise": {"autocast_dtype": "None", "compile": "False", "precision": "None"},
    "scorecam": {"autocast_dtype": "None"},
    "rise": {"autocast_dtype": "None"},
}


def method_defaults(method: str) -> dict[str, str]:
    """The defaults of ``method``'s constructor that change its maps, as text."""
    parameters = inspect.signature(METHODS[method]).parameters.values()
    return {
        **_FORMER_SPEED_DEFAULTS.get(method, {}),
        **{
            p.name: repr(p.default)
            for p in parameters
            if p.default is not inspect.Parameter.empty
            and p.name not in RUNTIME_OPTIONS
            and p.name not in ("score", "progress", "runtime")
        },
    }
