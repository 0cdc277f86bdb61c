"""The seed paper's published numbers, to set beside a benchmark run of one of its four settings.

Sattarzadeh et al., "Explaining Convolutional Neural Networks through Attribution-Based Input
Sampling and Block-Wise Feature Aggregation", AAAI 2021: Tables 1 (PASCAL VOC 2007 test) and 2 (MS
COCO 2014 validation), for TorchRay's fine-tuned VGG16 and ResNet-50. The values are the ones the
project's specification (``SPEC.md`` section 4, copied from the authors' blog) gives: SISE and the
best other method per metric on VOC, SISE alone on COCO. The paper's tables hold more (every
method on every metric); they are published as images, so only these values are on record here.
A run's table compares each value it has with its own measurement (:func:`compare_run`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: The paper's metrics in its column order, by the benchmark's metric keys.
PAPER_METRICS: tuple[str, ...] = ("ebpg", "miou", "bbox", "drop", "increase")

#: The split each dataset's tables are on.
PAPER_SPLITS: dict[str, str] = {"voc": "test", "coco": "val2014"}

#: The four settings: (dataset kind, TorchRay architecture).
PAPER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("voc", "vgg16"),
    ("voc", "resnet50"),
    ("coco", "vgg16"),
    ("coco", "resnet50"),
)


def _row(*values: float) -> dict[str, float]:
    return dict(zip(PAPER_METRICS, values, strict=True))


#: (dataset, architecture) -> method key -> metric key -> published value.
PAPER_VALUES: dict[tuple[str, str], dict[str, dict[str, float]]] = {
    ("voc", "vgg16"): {
        "sise": _row(60.54, 27.79, 55.68, 38.40, 37.96),
        "gradcam": _row(55.44, 26.52, 51.7, 49.47, 31.08),
        "extremal": _row(61.19, 25.44, 51.2, 43.90, 32.65),
        "rise": _row(33.44, 27.11, 54.59, 39.62, 37.76),
    },
    ("voc", "resnet50"): {
        "sise": _row(66.08, 31.37, 61.59, 30.92, 40.22),
        "gradcam": _row(60.08, 32.16, 60.25, 35.80, 36.58),
        "scorecam": _row(35.56, 31.0, 60.02, 35.36, 37.08),
    },
    ("coco", "vgg16"): {"sise": _row(28.16, 15.57, 29.63, 32.9, 50.56)},
    ("coco", "resnet50"): {"sise": _row(29.43, 17.03, 33.34, 31.41, 49.76)},
}


@dataclass(frozen=True)
class PaperComparison:
    """One measured value beside the paper's.

    Attributes:
        paper: the published value.
        measured: the run's value.
        standard_error: the measured value's standard error (NaN: too few pairs).
        difference: ``measured - paper``.
        within: whether ``|difference| <= 2 · standard_error`` (False where the standard error
            is unknown).
    """

    paper: float
    measured: float
    standard_error: float

    @property
    def difference(self) -> float:
        return self.measured - self.paper

    @property
    def within(self) -> bool:
        return abs(self.difference) <= 2 * self.standard_error  # NaN compares False


def paper_setting(dataset: str, model: str) -> tuple[str, str] | None:
    """The paper's setting a run is in, from its dataset kind (``voc``/``coco``) and model name
    (``torchray-vgg16...``/``torchray-resnet50...``), or ``None`` when it is none of the four.

    Only TorchRay's checkpoints are the paper's models: a torchvision VGG16 on VOC is not."""
    if not model.startswith("torchray-"):
        return None
    arch = "vgg16" if "vgg16" in model else "resnet50" if "resnet50" in model else None
    setting = (dataset, arch) if arch is not None else None
    return setting if setting in PAPER_VALUES else None


def compare_with_paper(
    setting: tuple[str, str],
    measured: dict[str, dict[str, float]],
    errors: dict[str, dict[str, float]],
) -> dict[str, dict[str, PaperComparison]]:
    """For every (method, metric) the paper reports and the run measured: the comparison.

    Args:
        setting: ``(dataset, architecture)``, one of :data:`PAPER_SETTINGS`.
        measured: method -> metric -> the run's table value.
        errors: method -> metric -> its standard error.
    """
    out: dict[str, dict[str, PaperComparison]] = {}
    for method, published in PAPER_VALUES[setting].items():
        for metric, value in published.items():
            if metric in measured.get(method, {}):
                out.setdefault(method, {})[metric] = PaperComparison(
                    value,
                    measured[method][metric],
                    errors.get(method, {}).get(metric, float("nan")),
                )
    return out


def compare_run(
    dataset: str,
    split: str,
    model: str,
    values: Mapping[str, Mapping[str, float | None]],
    errors: Mapping[str, Mapping[str, float | None]],
) -> tuple[tuple[str, str] | None, dict[str, dict[str, PaperComparison]]]:
    """A run's table beside the paper's: the setting it is in (:func:`paper_setting`, on the
    paper's split: VOC 2007 ``test``, COCO 2014 ``val2014``) and :func:`compare_with_paper` of
    its values, or ``(None, {})`` for a run in none of the four settings.

    Args:
        dataset, split, model: the run's dataset kind, split and loaded model's name.
        values, errors: metric -> method -> the table's value and its standard error (None: no
            pair), as :class:`sise.eval.benchmark.aggregation.Summary` holds them.
    """
    setting = paper_setting(dataset, model) if PAPER_SPLITS.get(dataset) == split else None
    if setting is None:
        return None, {}
    measured: dict[str, dict[str, float]] = {}
    spread: dict[str, dict[str, float]] = {}
    for metric, per_method in values.items():
        for method, value in per_method.items():
            if value is not None and not math.isnan(value):
                measured.setdefault(method, {})[metric] = value
                error = errors.get(metric, {}).get(method)
                spread.setdefault(method, {})[metric] = math.nan if error is None else error
    return setting, compare_with_paper(setting, measured, spread)
