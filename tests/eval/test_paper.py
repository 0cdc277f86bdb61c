"""The paper's published numbers and their comparison with a run's."""

from __future__ import annotations

import math

from sise.eval.benchmark.paper import (
    PAPER_VALUES,
    PaperComparison,
    compare_run,
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


def test_a_runs_table_beside_the_papers() -> None:
    values = {"ebpg": {"sise": 60.0, "fullgrad": 10.0}, "drop": {"sise": None}, "seconds": {}}
    errors = {"ebpg": {"sise": 0.4, "fullgrad": 1.0}, "drop": {"sise": None}}
    setting, paper = compare_run("voc", "test", "torchray-vgg16-voc", values, errors)
    assert setting == ("voc", "vgg16")
    assert set(paper) == {"sise"} and set(paper["sise"]) == {"ebpg"}  # FullGrad: not published
    ebpg = paper["sise"]["ebpg"]
    assert (ebpg.paper, ebpg.measured, ebpg.standard_error) == (60.54, 60.0, 0.4)
    assert ebpg.within  # |-0.54| <= 0.8
    # another split, or not TorchRay's model: not the paper's setting
    assert compare_run("voc", "trainval", "torchray-vgg16-voc", values, errors) == (None, {})
    assert compare_run("coco", "val2014", "resnet50", values, errors) == (None, {})
    setting, paper = compare_run("coco", "val2014", "torchray-resnet50-coco", values, errors)
    assert setting == ("coco", "resnet50") and paper["sise"]["ebpg"].paper == 29.43
