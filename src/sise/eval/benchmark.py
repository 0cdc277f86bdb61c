"""The benchmark's former home, kept so that old imports work (deprecated).

The benchmark now lives in four modules, one job each:

* :mod:`sise.eval.running`: the configuration, the pair loop, the run's identity and resuming
  (:class:`~sise.eval.running.BenchmarkConfig`, :func:`~sise.eval.running.run_benchmark`);
* :mod:`sise.eval.scoring`: the metrics, each defined once, and their settings
  (:data:`~sise.eval.scoring.METRICS`, :class:`~sise.eval.scoring.MetricSettings`);
* :mod:`sise.eval.reporting`: the table, the CSV and the example figure;
* :mod:`sise.eval.distribution`: torchrun plumbing, shards and their merge.

Dataset specifications are read by :func:`sise.eval.datasets.load_dataset` and method options
by :mod:`sise.options`. Every name this module used to define is still importable from here,
with a :class:`DeprecationWarning` naming its new home. ``BenchmarkConfig`` from here also takes
the metric settings as keywords, as it used to (``steps=8``, ``miou_fraction=0.3`` ...).
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below resolve to, for type checkers and linters
    from sise.eval.datasets import load_dataset, select_pairs
    from sise.eval.distribution import glob_escape
    from sise.eval.reporting import format_table, save_examples
    from sise.eval.running import (
        BenchmarkResult,
        evaluate_pair,
        method_options,
        run_benchmark,
        run_benchmark_local,
    )
    from sise.eval.scoring import ALL_METRICS, METRICS
    from sise.eval.scoring import Metric as MetricInfo
    from sise.options import parse_method_options

__all__ = [
    "ALL_METRICS",
    "METRICS",
    "BenchmarkConfig",
    "BenchmarkResult",
    "MetricInfo",
    "evaluate_pair",
    "format_table",
    "glob_escape",
    "load_dataset",
    "method_options",
    "parse_method_options",
    "run_benchmark",
    "run_benchmark_local",
    "save_examples",
    "select_pairs",
    "summarise",
]

#: old name → (new module, new name)
_MOVED: dict[str, tuple[str, str]] = {
    "ALL_METRICS": ("sise.eval.scoring", "ALL_METRICS"),
    "METRICS": ("sise.eval.scoring", "METRICS"),
    "MetricInfo": ("sise.eval.scoring", "Metric"),
    "BenchmarkResult": ("sise.eval.running", "BenchmarkResult"),
    "run_benchmark": ("sise.eval.running", "run_benchmark"),
    "run_benchmark_local": ("sise.eval.running", "run_benchmark_local"),
    "evaluate_pair": ("sise.eval.running", "evaluate_pair"),
    "method_options": ("sise.eval.running", "method_options"),
    "format_table": ("sise.eval.reporting", "format_table"),
    "save_examples": ("sise.eval.reporting", "save_examples"),
    "glob_escape": ("sise.eval.distribution", "glob_escape"),
    "load_dataset": ("sise.eval.datasets", "load_dataset"),
    "select_pairs": ("sise.eval.datasets", "select_pairs"),
    "parse_method_options": ("sise.options", "parse_method_options"),
}

#: The metric settings that used to be fields of BenchmarkConfig.
_SETTINGS = (
    "miou_fraction",
    "drop_baseline",
    "steps",
    "insertion_substrate",
    "deletion_substrate",
    "pointing_tolerance",
)


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"sise.eval.benchmark.{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3
    )


def BenchmarkConfig(**kwargs: Any) -> Any:
    """Deprecated: :class:`sise.eval.running.BenchmarkConfig`, whose metric settings are now one
    :class:`sise.eval.scoring.MetricSettings` (the old keywords are moved into it here)."""
    from sise.eval.running import BenchmarkConfig as Config
    from sise.eval.scoring import MetricSettings

    _warn("BenchmarkConfig", "sise.eval.running.BenchmarkConfig")
    settings = {key: kwargs.pop(key) for key in _SETTINGS if key in kwargs}
    if settings:
        kwargs["metric_settings"] = MetricSettings(**settings)
    return Config(**kwargs)


def summarise(
    *args: Any, **kwargs: Any
) -> tuple[dict[str, dict[str, float | None]], dict[str, int]]:
    """Deprecated: :func:`sise.eval.scoring.aggregate` (this returns its ``values, counts``)."""
    from sise.eval.scoring import aggregate

    _warn("summarise", "sise.eval.scoring.aggregate")
    summary = aggregate(*args, **kwargs)
    return summary.values, summary.counts


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, new = _MOVED[name]
    _warn(name, f"{module}.{new}")
    return getattr(importlib.import_module(module), new)
