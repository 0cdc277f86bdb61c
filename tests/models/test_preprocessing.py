"""Each model's transform: the ImageNet stretch unchanged, Caffe's shorter-side resize and mean
subtraction checked by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sise.errors import SiseError
from sise.images import load_image, sample_image_path
from sise.models.loading import LoadedModel
from sise.models.preprocessing import (
    CAFFE_MEAN,
    CAFFE_MEAN_255,
    CAFFE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
)


def _as_before(rgb: np.ndarray, size: tuple[int, int], mean, std) -> torch.Tensor:
    """``LoadedModel.preprocess`` as it was written before models carried their transform."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
    mean_ = torch.tensor(mean).view(1, 3, 1, 1)
    std_ = torch.tensor(std).view(1, 3, 1, 1)
    return (x - mean_) / std_


@pytest.mark.parametrize("size", [(224, 224), (260, 260), (128, 160)])
@pytest.mark.parametrize(("mean", "std"), [(IMAGENET_MEAN, IMAGENET_STD), ((0.5,) * 3, (0.5,) * 3)])
def test_stretch_is_bit_identical_to_before(size, mean, std) -> None:
    rgb = load_image(sample_image_path("chelsea"))
    loaded = LoadedModel(nn.Conv2d(3, 1, 1), ["a"], size, mean, std, "m")
    assert loaded.resize == "stretch"
    assert torch.equal(loaded.preprocess(rgb), _as_before(rgb, size, mean, std))
    assert torch.equal(loaded.transform(rgb), loaded.preprocess(rgb))


def test_transform_follows_the_fields() -> None:
    rgb = load_image(sample_image_path("coffee"))
    loaded = LoadedModel(nn.Conv2d(3, 1, 1), ["a"], (224, 224), IMAGENET_MEAN, IMAGENET_STD, "m")
    assert replace(loaded, input_size=(96, 64)).preprocess(rgb).shape == (1, 3, 96, 64)
    loaded.input_size = (32, 48)
    assert loaded.preprocess(rgb).shape == (1, 3, 32, 48)


@pytest.mark.parametrize(
    ("photo", "size", "expected"),
    [
        ((300, 451), 224, (224, 336)),  # int(224 * 451 / 300) = int(336.7)
        ((451, 300), 224, (336, 224)),
        ((500, 500), 224, (224, 224)),
        ((100, 150), 224, (224, 336)),  # enlarged as well
        ((300, 451), 64, (64, 96)),  # int(96.2)
    ],
)
def test_shorter_side_shapes(photo, size, expected) -> None:
    transform = Preprocessing((size, size), CAFFE_MEAN, CAFFE_STD, "shorter-side")
    assert transform.input_shape(*photo) == expected
    rgb = np.zeros((*photo, 3), dtype=np.uint8)
    assert transform(rgb).shape == (1, 3, *expected)


def test_caffe_mean_subtraction_on_a_constant_photo() -> None:
    """RGB 0-255 minus (123.68, 116.779, 103.939), nothing divided: (200, 100, 50) becomes
    (76.32, -16.779, -53.939) everywhere."""
    rgb = np.empty((300, 451, 3), dtype=np.uint8)
    rgb[...] = (200, 100, 50)
    transform = Preprocessing((224, 224), CAFFE_MEAN, CAFFE_STD, "shorter-side")
    x = transform(rgb)
    assert x.shape == (1, 3, 224, 336)
    expected = torch.tensor([76.32, -16.779, -53.939]).view(1, 3, 1, 1)
    assert (x - expected).abs().max() < 1e-4
    assert CAFFE_MEAN_255 == (123.68, 116.779, 103.939)


def test_caffe_resize_has_no_antialiasing() -> None:
    """TorchRay resizes with plain bilinear interpolation. Every fourth column white, halved:
    output column i averages input columns 2i and 2i + 1 (half white, black, half white, ...);
    an antialiased resize would spread each output over four columns."""
    rgb = np.zeros((8, 16, 3), dtype=np.uint8)
    rgb[:, ::4] = 255
    transform = Preprocessing((4, 4), (0.0,) * 3, (1.0,) * 3, "shorter-side")
    x = transform(rgb)
    assert x.shape == (1, 3, 4, 8)
    plain = F.interpolate(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, size=(4, 8), mode="bilinear"
    )
    assert torch.equal(x, plain)
    smoothed = F.interpolate(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255,
        size=(4, 8),
        mode="bilinear",
        antialias=True,
    )
    assert not torch.allclose(x, smoothed)


def test_refusals() -> None:
    with pytest.raises(SiseError, match=r"not square.*\(size, size\)"):
        Preprocessing((224, 300), CAFFE_MEAN, CAFFE_STD, "shorter-side")
    with pytest.raises(SiseError, match="unknown resize 'crop'"):
        Preprocessing((224, 224), CAFFE_MEAN, CAFFE_STD, "crop")  # type: ignore[arg-type]
    transform = Preprocessing((224, 224), CAFFE_MEAN, CAFFE_STD, "shorter-side")
    with pytest.raises(SiseError, match=r"uint8 RGB array.*sise.images.load_image"):
        transform(np.zeros((10, 10, 3), dtype=np.float32))
