"""The benchmark: its configuration and identity (:mod:`~sise.eval.benchmark.config`), reading
the pairs (:mod:`~sise.eval.benchmark.loader`), explaining and scoring them
(:mod:`~sise.eval.benchmark.explaining`), the run (:mod:`~sise.eval.benchmark.run`), the
metric settings (:mod:`~sise.eval.benchmark.metric_settings`), the metrics' scoring and
aggregation (:mod:`~sise.eval.benchmark.scoring`,
:mod:`~sise.eval.benchmark.aggregation`), the results store, the report, and spreading a run over
processes (:mod:`~sise.eval.benchmark.distributed`).

The names are imported on first use (:mod:`sise.lazy_exports`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sise.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from sise.eval.benchmark.config import (
        BenchmarkConfig,
        configuration,
        method_defaults,
        method_options,
    )
    from sise.eval.benchmark.explaining import evaluate_pack, evaluate_pair
    from sise.eval.benchmark.run import BenchmarkResult, run_benchmark, run_benchmark_local

#: Public name -> the module it comes from.
_EXPORTS: dict[str, str] = {
    "BenchmarkConfig": "sise.eval.benchmark.config",
    "BenchmarkResult": "sise.eval.benchmark.run",
    "configuration": "sise.eval.benchmark.config",
    "evaluate_pack": "sise.eval.benchmark.explaining",
    "evaluate_pair": "sise.eval.benchmark.explaining",
    "method_defaults": "sise.eval.benchmark.config",
    "method_options": "sise.eval.benchmark.config",
    "run_benchmark": "sise.eval.benchmark.run",
    "run_benchmark_local": "sise.eval.benchmark.run",
}

__all__ = [
    "BenchmarkConfig",
    "BenchmarkResult",
    "configuration",
    "evaluate_pack",
    "evaluate_pair",
    "method_defaults",
    "method_options",
    "run_benchmark",
    "run_benchmark_local",
]  # the keys of _EXPORTS, written out for type checkers and linters

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
