"""The benchmark: its configuration and identity (:mod:`~sise.eval.benchmark.config`), reading
the pairs (:mod:`~sise.eval.benchmark.loader`), explaining and scoring them
(:mod:`~sise.eval.benchmark.explaining`), the run (:mod:`~sise.eval.benchmark.run`), the
metric settings (:mod:`~sise.eval.benchmark.metric_settings`), the metrics' scoring and
aggregation (:mod:`~sise.eval.benchmark.scoring`,
:mod:`~sise.eval.benchmark.aggregation`), the results store, the report, and spreading a run over
processes (:mod:`~sise.eval.benchmark.distributed`)."""

from sise.eval.benchmark.config import (
    BenchmarkConfig,
    configuration,
    method_defaults,
    method_options,
)
from sise.eval.benchmark.explaining import evaluate_pack, evaluate_pair
from sise.eval.benchmark.run import BenchmarkResult, run_benchmark, run_benchmark_local

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
]
