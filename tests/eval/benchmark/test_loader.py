"""Reading pairs ahead of the model: the workers' preprocessing is the model's, the ground truth
is at each input's size, and only inputs of one shape are packed together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sise.eval.benchmark.loader import _PairReader, pair_loader
from sise.eval.benchmark.models import load_benchmark_model
from sise.eval.data import EvalPair, VOCDetection2007, gt_mask
from sise.eval.data.synthetic import SYNTHETIC_CLASSES
from sise.images import load_image
from sise.models.loading import LoadedModel
from sise.models.preprocessing import CAFFE_MEAN, CAFFE_STD


def test_workers_preprocess_like_the_model(tiny_data: Path) -> None:
    loaded = load_benchmark_model(
        "synthetic-resnet", dataset="synthetic", class_names=SYNTHETIC_CLASSES, input_size=80
    )
    pair = next(iter(VOCDetection2007(tiny_data, "test")))
    rgb = load_image(pair.image_path)
    index, inputs, truth = _PairReader([pair], loaded)[0]
    assert index == 0 and torch.equal(inputs[None], loaded.preprocess(rgb))
    assert torch.equal(truth, gt_mask(pair, 80, 80))
    # the ImageNet stretch as the benchmark computed it before each model carried its transform:
    # the same float operations, so results (and stored runs) stay bit for bit the same
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)
    x = F.interpolate(x, size=(80, 80), mode="bilinear", antialias=True)
    mean, std = (
        torch.tensor(loaded.mean).view(1, 3, 1, 1),
        torch.tensor(loaded.std).view(1, 3, 1, 1),
    )
    assert torch.equal(inputs[None], (x - mean) / std)


def _photo(path: Path, width: int, height: int) -> Path:
    generator = np.random.default_rng(width * height)
    pixels = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_packs_hold_one_input_shape_each(tmp_path: Path) -> None:
    """A shorter-side model (TorchRay's) makes landscape and portrait inputs of other shapes: a
    read of 4 pairs becomes one pack per shape, in reading order, each with its ground truth."""
    landscape = _photo(tmp_path / "wide.png", 60, 40)
    portrait = _photo(tmp_path / "tall.png", 40, 60)
    pairs = [
        EvalPair(path.stem + str(i), path, 0, "a", [(0, 0, 10, 10)], *Image.open(path).size)
        for i, path in enumerate([landscape, portrait, landscape, portrait])
    ]
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.AdaptiveAvgPool2d(1))
    loaded = LoadedModel(
        model.eval(), ["a", "b"], (20, 20), CAFFE_MEAN, CAFFE_STD, "tiny", "shorter-side"
    )
    (packs,) = list(pair_loader(pairs, loaded, pack=4, workers=0))
    assert [pack.indices for pack in packs] == [[0, 2], [1, 3]]
    assert [tuple(pack.inputs.shape) for pack in packs] == [(2, 3, 20, 30), (2, 3, 30, 20)]
    assert [tuple(pack.ground_truth.shape) for pack in packs] == [(2, 20, 30), (2, 30, 20)]
    assert torch.equal(packs[0].ground_truth[0], gt_mask(pairs[0], 20, 30))
    assert torch.equal(packs[1].inputs[1:], loaded.preprocess(load_image(portrait)))
    # the stretch resize gives one shape, so one full pack
    loaded.resize = "stretch"
    (packs,) = list(pair_loader(pairs, loaded, pack=4, workers=0))
    assert [pack.indices for pack in packs] == [[0, 1, 2, 3]]
