"""RISE and Extremal Perturbation."""

from __future__ import annotations

import math

import pytest
import torch

from sise.engine import make_baseline
from sise.errors import SiseError
from sise.methods import RISE, ExtremalPerturbation
from sise.methods.perturbation import (
    RandomGridMasks,
    area_regularizer,
    blur_pyramid,
    perturb,
    smooth_max_convolution,
)
from sise.methods.registry import make_explainer

# ------------------------------------------------------------------------------------- RISE


def test_rise_masks_follow_the_paper_recipe():
    masks = RandomGridMasks(300, 4, 0.5, (16, 16), seed=3)
    assert masks.cell == (4, 4)  # ⌈16 / 4⌉
    assert masks.grids.shape == (300, 4, 4)
    assert set(masks.grids.unique().tolist()) <= {0.0, 1.0}
    assert int(masks.shifts.min()) >= 0 and int(masks.shifts.max()) < 4
    batch = masks.masks(0, 300)
    assert batch.shape == (300, 16, 16)
    assert batch.min() >= 0 and batch.max() <= 1
    # mask i is the (s+1)C up-sampled grid, cropped at the shift
    grown = torch.nn.functional.interpolate(
        masks.grids[7][None, None], size=(20, 20), mode="bilinear", align_corners=False
    )[0, 0]
    dy, dx = masks.shifts[7].tolist()
    torch.testing.assert_close(batch[7], grown[dy : dy + 16, dx : dx + 16])


@pytest.mark.parametrize("p", [0.5, 0.25])
def test_rise_mask_mean_is_p(p):
    masks = RandomGridMasks(2000, 7, p, (24, 24), seed=0).masks(0, 2000)
    assert masks.mean().item() == pytest.approx(p, abs=0.01)
    # every pixel is kept with probability p (bilinear interpolation preserves the mean)
    assert masks.mean(dim=0).sub(p).abs().max().item() < 0.06


def test_rise_masks_are_the_same_whatever_the_batching():
    source = RandomGridMasks(50, 5, 0.5, (12, 12), n_images=2, seed=1)
    whole = source.masks(0, 100)
    pieces = torch.cat([source.masks(0, 13), source.masks(13, 64), source.masks(64, 100)])
    torch.testing.assert_close(whole, pieces)
    torch.testing.assert_close(whole[:50], whole[50:])  # both images get the same masks
    assert source.owners.tolist() == [0] * 50 + [1] * 50


def test_rise_masks_on_the_model_device_and_global_rng_untouched(small_cnn):
    inputs = torch.randn(1, 3, 16, 16)
    explainer = RISE(small_cnn, n_masks=16, seed=0)
    source = explainer.mask_source(inputs)
    assert source.masks(0, 4).device == inputs.device == next(small_cnn.parameters()).device
    state = torch.get_rng_state()
    explainer(inputs)
    assert torch.equal(torch.get_rng_state(), state)  # a seeded generator of its own


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_rise_masks_are_made_on_the_gpu(small_cnn):
    model = small_cnn.cuda()
    inputs = torch.randn(1, 3, 16, 16, device="cuda")
    assert RISE(model, n_masks=8).mask_source(inputs).masks(0, 8).is_cuda
    assert RISE(model, n_masks=8)(inputs).maps.is_cuda


def test_rise_same_seed_same_map_different_seed_different_map(small_cnn):
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 16, 16)
    first = RISE(small_cnn, n_masks=48, seed=5, batch_size=20)(inputs)
    again = RISE(small_cnn, n_masks=48, seed=5, batch_size=7)(inputs)
    other = RISE(small_cnn, n_masks=48, seed=6)(inputs)
    torch.testing.assert_close(first.maps, again.maps)
    assert not torch.allclose(first.maps, other.maps, atol=1e-3)
    assert first.forward_passes.tolist() == [49, 49]
    assert first.maps.shape == (2, 16, 16)


def test_rise_saliency_is_the_weighted_mask_average(small_cnn):
    torch.manual_seed(0)
    inputs = torch.randn(1, 3, 16, 16)
    explainer = RISE(small_cnn, n_masks=20, p=0.5, seed=2)
    explanation = explainer(inputs, 3)
    masks = explainer.mask_source(inputs).masks(0, 20)
    with torch.no_grad():
        probs = torch.softmax(small_cnn(inputs * masks[:, None]), dim=1)[:, 3]
    expected = (probs[:, None, None] * masks).sum(0) / (20 * 0.5)
    torch.testing.assert_close(explanation.extras["saliency"][0], expected, rtol=1e-5, atol=1e-6)
    lo, hi = expected.min(), expected.max()
    torch.testing.assert_close(explanation.maps[0], (expected - lo) / (hi - lo), atol=1e-5, rtol=0)


def test_rise_batch_equals_one_by_one(small_cnn):
    torch.manual_seed(4)
    inputs = torch.randn(2, 3, 16, 16)
    together = RISE(small_cnn, n_masks=24, seed=9)(inputs, [0, 1])
    for i in range(2):
        alone = RISE(small_cnn, n_masks=24, seed=9)(inputs[i : i + 1], i)
        torch.testing.assert_close(together.maps[i], alone.maps[0], atol=1e-5, rtol=1e-4)


def test_rise_rejects_bad_parameters(small_cnn):
    with pytest.raises(SiseError):
        RISE(small_cnn, n_masks=0)
    with pytest.raises(SiseError):
        RISE(small_cnn, p=0.0)


# ---------------------------------------------------------------------- Extremal Perturbation


def test_area_regularizer_is_zero_for_a_binary_mask_of_that_area():
    mask = torch.zeros(2, 10, 10)
    mask[0, :2] = 1  # 20% of the pixels, anywhere
    mask[1, :, 7:] = 1  # 30%
    values = area_regularizer(mask, torch.tensor([0.2, 0.3]))
    torch.testing.assert_close(values, torch.zeros(2))
    wrong = area_regularizer(mask, torch.tensor([0.1, 0.3]))
    assert wrong[0] == pytest.approx(10 / 100)  # ten ones where the step vector has zeros
    half = area_regularizer(torch.full((1, 10, 10), 0.5), torch.tensor([0.2]))
    assert half.item() == pytest.approx(0.25)


def test_smooth_max_convolution_is_a_gaussian_max():
    lattice = torch.zeros(1, 1, 7, 7)
    lattice[0, 0, 3, 3] = 1.0
    lattice[0, 0, 0, 0] = 0.5
    smooth = smooth_max_convolution(lattice, sigma=1.0)[0, 0]
    assert smooth[3, 3] == pytest.approx(1.0)
    assert smooth[3, 4] == pytest.approx(math.exp(-0.5))
    assert smooth[5, 5] == pytest.approx(math.exp(-4.0))
    assert smooth[0, 0] == pytest.approx(0.5)  # its own value beats the far peak's e^{-9}
    assert smooth[0, 1] == pytest.approx(0.5 * math.exp(-0.5))
    soft = smooth_max_convolution(lattice, sigma=1.0, temperature=0.05)[0, 0]
    assert soft[3, 3] == pytest.approx(1.0, abs=0.02)
    assert (soft <= smooth + 1e-6).all()


def test_blur_perturbation_keeps_where_the_mask_is_one():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 16, 16)
    pyramid = blur_pyramid(image, max_sigma=4.0, levels=5).transpose(0, 1)
    assert pyramid.shape == (1, 5, 3, 16, 16)
    ones, zeros = torch.ones(1, 16, 16), torch.zeros(1, 16, 16)
    torch.testing.assert_close(perturb(pyramid, ones), image)
    torch.testing.assert_close(perturb(pyramid, zeros), make_baseline(image, "blur", 4.0))
    half = perturb(pyramid, torch.full((1, 16, 16), 0.5))  # σ = 2: level 2 of σ = 0, 1, 2, 3, 4
    torch.testing.assert_close(half, make_baseline(image, "blur", 2.0))


@pytest.fixture
def extremal_result(bright_square):
    model, image, square = bright_square
    explainer = ExtremalPerturbation(
        model, areas=(0.05, 0.15), iterations=30, step=2, sigma=2.0, blur_sigma=5.0
    )
    return explainer, explainer(image), model, image, square


def test_extremal_mask_area_matches_the_constraint(extremal_result):
    _, explanation, _, _, _ = extremal_result
    masks = explanation.extras["masks"][0]
    for mask, area in zip(masks, (0.05, 0.15), strict=True):
        # the rank constraint makes the mask (nearly) binary with the requested area; the
        # Gaussian fringe of smooth masks adds a little mass below 0.5
        assert (mask > 0.5).float().mean().item() == pytest.approx(area, abs=0.02)
        assert mask.mean().item() == pytest.approx(area, abs=0.04)


def test_extremal_preserved_region_keeps_the_score(extremal_result):
    explainer, explanation, model, image, square = extremal_result
    full_score = explanation.scores.item()
    assert full_score > 0.99
    blurred = make_baseline(image, "blur", 5.0)
    with torch.no_grad():
        gone = torch.softmax(model(blurred), dim=1)[0, 0].item()
    assert gone == pytest.approx(0.5, abs=0.01)  # blurring everything removes the evidence
    masks = explanation.extras["masks"][0]
    assert (explanation.extras["mask_scores"][0] > 0.9 * full_score).all()
    for mask in masks:
        assert (mask[square] > 0.5).float().mean().item() >= 0.8  # the square is kept
        hard = (mask > 0.5).float()
        kept = image * hard + blurred * (1 - hard)
        with torch.no_grad():
            assert torch.softmax(model(kept), dim=1)[0, 0].item() > 0.9 * full_score
    # the map is the sum of the masks, min-max normalised; it peaks on the square
    assert explanation.maps[0][square].mean() > 0.8
    assert explanation.maps[0][~square].mean() < 0.3
    assert explanation.forward_passes.tolist() == [1 + 31 * 2]


def test_extremal_batches_images_and_areas(bright_square):
    # Every (image, area) row is its own optimisation problem: batching changes nothing.
    model, image, _ = bright_square
    inputs = torch.cat([image, image.flip(-1)])
    options = {"iterations": 8, "step": 3, "sigma": 3.0, "blur_sigma": 4.0}
    together = ExtremalPerturbation(model, areas=(0.1, 0.2), **options)(inputs, [0, 0])
    assert together.extras["masks"].shape == (2, 2, 24, 24)
    assert together.maps.shape == (2, 24, 24)
    for i in range(2):
        for j, area in enumerate((0.1, 0.2)):
            alone = ExtremalPerturbation(model, areas=(area,), **options)(inputs[i : i + 1], 0)
            torch.testing.assert_close(
                together.extras["masks"][i, j], alone.extras["masks"][0, 0], atol=1e-5, rtol=0
            )


def test_extremal_rejects_bad_areas(bright_square):
    model, _, _ = bright_square
    with pytest.raises(SiseError, match="areas"):
        ExtremalPerturbation(model, areas=(0.0, 0.5))
    with pytest.raises(SiseError, match="areas"):
        ExtremalPerturbation(model, areas=())


# ------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize(
    ("name", "options"),
    [("rise", {"n_masks": 8}), ("extremal", {"iterations": 2, "areas": (0.1,), "step": 4})],
)
def test_perturbation_methods_leave_the_model_as_they_found_it(
    small_cnn, model_state, name, options
):
    small_cnn.train()
    small_cnn.head.weight.requires_grad_(False)
    state = model_state(small_cnn)
    inputs = torch.randn(2, 3, 16, 16)
    explanation = make_explainer(name, small_cnn, **options)(inputs)
    state.assert_unchanged()
    assert not inputs.requires_grad
    assert explanation.maps.shape == (2, 16, 16)
    assert torch.isfinite(explanation.maps).all()
    assert explanation.maps.min() >= 0 and explanation.maps.max() <= 1
