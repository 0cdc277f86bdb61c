"""Reading pairs ahead of the model: the workers' preprocessing is the model's."""

from __future__ import annotations

from pathlib import Path

import torch

from sise.eval.benchmark.loader import model_ready
from sise.eval.benchmark.models import load_benchmark_model
from sise.eval.data import VOCDetection2007
from sise.eval.data.synthetic import SYNTHETIC_CLASSES


def test_workers_preprocess_like_the_model(tiny_data: Path) -> None:
    from sise.images import load_image

    loaded = load_benchmark_model(
        "synthetic-resnet", dataset="synthetic", class_names=SYNTHETIC_CLASSES, input_size=80
    )
    rgb = load_image(next(iter(VOCDetection2007(tiny_data, "test"))).image_path)
    assert torch.equal(model_ready(rgb, loaded), loaded.preprocess(rgb))
