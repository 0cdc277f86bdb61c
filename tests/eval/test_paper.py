"""The paper's published numbers and their comparison with a run's."""

from __future__ import annotations

import math

from sise.eval.benchmark.paper import (
    PAPER_VALUES,
    PaperComparison,
    compare_with_paper,
    paper_setting,
)


def test_the_four_settings_are_told_apart_from_other_runs() -> None:
    assert paper_setting("voc", "torchray-vgg16-voc") == ("voc", "vgg16")
    assert paper_setting("coco", "torchray-resnet50-coco") == ("coco", "resnet50")
    assert paper_setting("voc", "vgg16") is None  # a torchvision VGG16 is not the paper's model
    assert paper_setting("photos", "torchray-vgg16-voc") is None


def test_values_are_the_specifications() -> None:
    assert PAPER_VALUES[("voc", "resnet50")]["sise"]["ebpg"] == 66.08
    assert PAPER_VALUES[("voc", "vgg16")]["rise"]["drop"] == 39.62
    assert PAPER_VALUES[("coco", "vgg16")]["sise"]["increase"] == 50.56


def test_comparison_by_hand() -> None:
    measured = {"sise": {"ebpg": 61.0, "drop": 45.0}, "gradcam": {"ebpg": 50.0}}
    errors = {"sise": {"ebpg": 0.5, "drop": 1.0}}
    got = compare_with_paper(("voc", "vgg16"), measured, errors)
    assert set(got) == {"sise", "gradcam"}  # only what both have
    ebpg = got["sise"]["ebpg"]
    assert math.isclose(ebpg.difference, 0.46) and ebpg.within  # |0.46| <= 2 * 0.5
    assert not got["sise"]["drop"].within  # 45 - 38.40 = 6.6 > 2
    assert not got["gradcam"]["ebpg"].within  # no standard error: never called within
    assert not PaperComparison(1.0, 1.0, float("nan")).within
