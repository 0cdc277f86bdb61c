"""The benchmark's metric names, without importing torch: the command line lists them in
``sise benchmark --help``, which should not wait seconds for torch to load.

:data:`sise.eval.benchmark.scoring.METRICS` defines the metrics themselves, in this order, and
checks at import that its names are these; whether a metric is a default is written only here.
"""

from __future__ import annotations

__all__ = ["DEFAULT_METRICS", "METRIC_NAMES", "OPT_IN_METRICS"]

#: Every metric, in the table's row order (the paper's five first) → computed when no metrics
#: are named. Left out by default, and asked for by name: TorchRay's pointing-game protocol
#: (``pointing_all``, ``pointing_difficult``: it decodes each pair's region at the original size
#: and its difficult subset needs TorchRay's file), and ROAD, ADCC and the randomisation row,
#: which cost far more than the others (:mod:`~sise.eval.benchmark.field_metrics`). A new default
#: metric would also have every earlier run compute all its pairs again.
METRIC_NAMES: dict[str, bool] = {
    "ebpg": True,
    "miou": True,
    "bbox": True,
    "drop": True,
    "increase": True,
    "pointing": True,
    "insertion": True,
    "deletion": True,
    "distractor": True,
    "pointing_all": False,
    "pointing_difficult": False,
    "road_morf": False,
    "road_lerf": False,
    "road": False,
    "road_morf_kept": False,
    "road_lerf_kept": False,
    "road_kept": False,
    "adcc": False,
    "adcc_coherency": False,
    "adcc_complexity": False,
    "adcc_drop": False,
    "randomisation": False,
}
#: The metrics a run computes when none are named.
DEFAULT_METRICS: tuple[str, ...] = tuple(name for name, default in METRIC_NAMES.items() if default)
#: The metrics computed only when named.
OPT_IN_METRICS: tuple[str, ...] = tuple(
    name for name, default in METRIC_NAMES.items() if not default
)
