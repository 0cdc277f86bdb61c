from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu

from sise.core.postprocess import is_constant, minmax_normalize, otsu_threshold


@pytest.mark.parametrize("seed", range(6))
def test_otsu_equals_scikit_image(seed):
    rng = np.random.default_rng(seed)
    maps = [
        rng.random((17, 23)),
        rng.normal(size=(32, 32)) ** 3,  # heavy tails
        np.concatenate([rng.normal(0, 1, 300), rng.normal(5, 0.5, 100)]).reshape(20, 20),  # bimodal
        rng.integers(0, 4, (9, 9)).astype(np.float64),  # many ties
    ]
    for image in maps:
        ours = otsu_threshold(torch.from_numpy(image)[None]).item()
        assert ours == pytest.approx(float(threshold_otsu(image)), abs=1e-9)


def test_otsu_is_batched_and_constant_maps_return_their_value():
    rng = np.random.default_rng(0)
    stack = rng.random((3, 8, 8))
    stack[1] = 0.25
    thresholds = otsu_threshold(torch.from_numpy(stack))
    assert thresholds[1].item() == 0.25
    for i in (0, 2):
        assert thresholds[i].item() == pytest.approx(float(threshold_otsu(stack[i])), abs=1e-9)


def test_minmax_and_constant_maps():
    maps = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]]])
    out = minmax_normalize(maps)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # constant: zeros, not NaN
    assert is_constant(maps).tolist() == [False, True]


@pytest.mark.parametrize(("sigma", "kernel_size"), [(5.0, 11), (10.0, None), (1.5, None)])
def test_gaussian_blur_equals_scipy(sigma, kernel_size):
    """The package's one blur against scipy's: the same sampled, normalised Gaussian on
    replicated borders (scipy's mode "nearest"), truncated at the same radius."""
    from scipy.ndimage import gaussian_filter

    from sise.core.postprocess import gaussian_blur

    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 19, 26))
    radius = (kernel_size or 2 * int(np.ceil(3 * sigma)) + 1) // 2
    ours = gaussian_blur(torch.from_numpy(images), sigma, kernel_size).numpy()
    theirs = gaussian_filter(
        images, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=radius / sigma
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_gaussian_blur_keeps_constants_and_sigma_zero_is_identity():
    from sise.core.postprocess import gaussian_blur

    flat = torch.full((1, 3, 5, 7), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 10.0), flat)  # kernel larger than the image
    x = torch.rand(1, 3, 6, 6)
    assert gaussian_blur(x, 0.0) is x
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        gaussian_blur(x, float("nan"))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        gaussian_blur(x, 1.0, 4)


def test_the_metric_blur_is_the_package_blur():
    from sise.core.postprocess import gaussian_blur
    from sise.eval.metrics import blur

    x = torch.rand(2, 3, 32, 40)
    assert torch.equal(blur(x), gaussian_blur(x, 5.0, 11))


def test_gaussian_blur_of_a_point_is_the_normalised_kernel_with_zero_padding():
    from sise.core.postprocess import gaussian_blur

    image = torch.zeros(1, 1, 7, 7)
    image[0, 0, 3, 3] = 1.0
    # σ = 0.5: taps -2..2 (⌈4σ⌉ = 2), weights ∝ exp(-2 i²)
    taps = torch.tensor([math.exp(-2 * i * i) for i in range(-2, 3)])
    taps = taps / taps.sum()
    blurred = gaussian_blur(image, 0.5, padding="zeros", truncate=4.0)[0, 0]
    torch.testing.assert_close(blurred[1:6, 1:6], taps[:, None] * taps[None, :])
    assert float(blurred.sum()) == pytest.approx(1.0)
    corner = torch.zeros(1, 1, 7, 7)
    corner[0, 0, 0, 0] = 1.0
    # zero padding: the mass that falls outside the image is lost
    kept = float(taps[2:].sum()) ** 2
    assert float(gaussian_blur(corner, 0.5, padding="zeros", truncate=4.0).sum()) == pytest.approx(
        kept
    )
    assert gaussian_blur(image, 0.0, padding="zeros", truncate=4.0) is image
