"""Extremal Perturbation: its parts (kernel, smooth masks, blur pyramid, perturbation, area
constraint) against values worked out by hand, and the whole method on the bright-square model."""

from __future__ import annotations

import math

import pytest
import torch

from sise.core.postprocess import gaussian_blur
from sise.errors import SiseError
from sise.methods import ExtremalPerturbation
from sise.methods.extremal_perturbation import (
    SmoothMaskGenerator,
    area_reference,
    area_regularizer,
    blur_pyramid,
    flat_top_kernel,
    perturb,
)

#: The blur of the method's pyramid (TorchRay's ``imsmooth``): zero padding, taps to ±⌈4σ⌉.
TORCHRAY_BLUR: dict[str, object] = {"padding": "zeros", "truncate": 4.0}

# The components against values worked out by hand; the whole method matches TorchRay's
# published algorithm (checked to 1e-6 over 200 iterations outside the suite: TorchRay is not a
# dependency) and keeps the class on real weights (tests/methods/test_extremal_real.py).


def test_flat_top_kernel_is_flat_to_half_sigma_then_a_half_width_gaussian():
    sigma = 4.0
    distance = torch.tensor([0.0, 1.0, 2.0, 4.0, 6.0])
    expected = [1.0, 1.0, 1.0, math.exp(-0.5), math.exp(-2.0)]  # exp(-2 (d/σ - 1/2)²) past σ/2
    torch.testing.assert_close(flat_top_kernel(distance, sigma), torch.tensor(expected))


def soft_max_by_hand(values: list[float], temperature: float = 0.05) -> float:
    weights = [math.exp(v / temperature) for v in values]
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def test_mask_generator_geometry_margin_and_window():
    # 4x4 image, step 2, σ 2: a 2x2 lattice at pixels {0, 2}², a margin of 2 px around it
    # (pixels -2..4: 7x7), windows of (2r+1)² = 25 lattice points with r = 1 + ⌈σ/step⌉ = 2.
    generator = SmoothMaskGenerator((4, 4), step=2, sigma=2.0)
    assert generator.lattice_size == (2, 2)
    assert generator.margin == 2 and generator.radius == 2
    assert generator.full_size == (7, 7)
    lattice = torch.zeros(1, 1, 2, 2)
    lattice[0, 0, 0, 0] = 1.0
    full, masks = generator(lattice)
    assert full.shape == (1, 7, 7) and masks.shape == (1, 4, 4)
    torch.testing.assert_close(masks, full[:, 2:6, 2:6])

    # Each window holds the one lit lattice point (0, 0) and 24 zeros, so the soft max of pixel
    # u is z e^{20 z} / (e^{20 z} + 24) with z = k(‖u‖).
    def expected(distance: float) -> float:
        z = math.exp(-2 * max(distance / 2.0 - 0.5, 0.0) ** 2)
        return soft_max_by_hand([z] + [0.0] * 24)

    def at(row: int, col: int) -> float:  # pixel (row, col) of the image, margin included
        return float(full[0, row + 2, col + 2])

    assert at(0, 0) == pytest.approx(expected(0.0), rel=1e-6)  # on the lattice point
    assert at(0, 1) == pytest.approx(expected(1.0), rel=1e-6)  # d = σ/2: still the flat top
    assert at(0, 1) == pytest.approx(at(0, 0), rel=1e-6)
    assert at(2, 0) == pytest.approx(expected(2.0), rel=1e-6)  # d = σ: e^{-1/2}
    assert at(-2, -2) == pytest.approx(expected(math.sqrt(8)), rel=1e-6)  # in the margin
    assert at(4, 4) == pytest.approx(expected(math.sqrt(32)), rel=1e-5)
    assert at(2, 0) < math.exp(-0.5) - 1e-5  # the 24 zeros pull the soft max below the max


def test_mask_generator_soft_max_of_two_lit_points_and_the_hard_max():
    lattice = torch.zeros(1, 1, 2, 2)
    lattice[0, 0, 0, 0] = 1.0
    lattice[0, 0, 1, 1] = 0.5
    far = math.exp(-2 * (math.sqrt(8) / 2 - 0.5) ** 2)  # k at the diagonal step, 2√2 px
    # pixel (2, 2) sits on the 0.5 point: z = 0.5, far·1, and 23 zeros
    full, _ = SmoothMaskGenerator((4, 4), step=2, sigma=2.0)(lattice)
    assert float(full[0, 4, 4]) == pytest.approx(soft_max_by_hand([0.5, far] + [0.0] * 23))
    hard, _ = SmoothMaskGenerator((4, 4), step=2, sigma=2.0, temperature=0.0)(lattice)
    assert float(hard[0, 4, 4]) == pytest.approx(0.5)  # max(0.5, 0.19)
    assert float(hard[0, 2, 2]) == pytest.approx(1.0)  # max(1, 0.5·0.19)
    assert float(hard[0, 0, 0]) == pytest.approx(far)  # (-2, -2) is 2√2 from the lit point


def test_mask_generator_gradient_is_the_closed_form_soft_max_derivative():
    # The hand-written backward of the soft max against autograd's, in double precision.
    generator = SmoothMaskGenerator((9, 7), step=3, sigma=3.0)
    lattice = torch.rand(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: generator(p)[0], (lattice,))


def test_blur_pyramid_goes_from_most_blurred_to_sharp():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 12, 12)
    pyramid = blur_pyramid(image, max_sigma=2.0, levels=3)  # σ = 2, 1, 0
    assert pyramid.shape == (2, 3, 3, 12, 12)
    torch.testing.assert_close(pyramid[:, 0], gaussian_blur(image, 2.0, **TORCHRAY_BLUR))
    torch.testing.assert_close(pyramid[:, 1], gaussian_blur(image, 1.0, **TORCHRAY_BLUR))
    torch.testing.assert_close(pyramid[:, 2], image)


def test_perturbation_interpolates_the_pyramid_levels_linearly():
    # Level l of this pyramid is the constant l, so π(x; m) = m (L - 1) exactly.
    pyramid = torch.arange(5.0).view(1, 5, 1, 1, 1).expand(1, 5, 2, 3, 3)
    masks = torch.tensor([0.0, 0.3, 0.5, 0.99, 1.0]).view(1, 1, 5).expand(1, 3, 5).contiguous()
    masks = masks[:, :, :3].requires_grad_(True)  # 0, 0.3, 0.5 per row
    out = perturb(pyramid, masks)
    torch.testing.assert_close(out[0, 0], (masks[0] * 4).detach())
    (gradient,) = torch.autograd.grad(out.sum(), [masks])
    torch.testing.assert_close(gradient, torch.full_like(masks, 2 * 4.0))  # 2 channels · (L - 1)
    ones = torch.ones(1, 3, 3, requires_grad=True)
    at_one = perturb(pyramid, ones)
    assert float(at_one.detach().min()) == float(at_one.detach().max()) == 4.0  # the sharp level
    (gradient,) = torch.autograd.grad(at_one.sum(), [ones])
    assert float(gradient.abs().max()) == 0.0  # as TorchRay: both ends are the sharp image


def test_area_reference_vector_counts_zeros_as_torchray():
    # ⌊n (1 - a)⌋ zeros then ones: 10 values at a = 0.25 give 7 zeros and 3 ones
    # (rounding a·n = 2.5 would give 2 ones)
    torch.testing.assert_close(area_reference(10, 0.25), torch.tensor([0.0] * 7 + [1.0] * 3))
    torch.testing.assert_close(area_reference(4, 0.5), torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_area_regularizer_compares_the_sorted_mask_to_the_reference():
    mask = torch.tensor([[0.9, 0.0, 0.2, 0.6, 0.0, 1.0, 0.1, 0.0, 0.0, 0.4]])
    # sorted: 0 0 0 0 .1 .2 .4 | .6 .9 1 against 7 zeros and 3 ones
    expected = (0.1**2 + 0.2**2 + 0.4**2 + 0.4**2 + 0.1**2 + 0.0) / 10
    assert area_regularizer(mask, [0.25]).item() == pytest.approx(expected)
    binary = torch.zeros(2, 10, 10)
    binary[0, :2] = 1  # 20 % of the pixels, anywhere
    binary[1, :, 7:] = 1  # 30 %
    torch.testing.assert_close(area_regularizer(binary, [0.2, 0.3]), torch.zeros(2))
    assert area_regularizer(binary, [0.1, 0.3])[0].item() == pytest.approx(10 / 100)
    half = area_regularizer(torch.full((1, 10, 10), 0.5), torch.tensor([0.2]))
    assert half.item() == pytest.approx(0.25)


@pytest.fixture
def extremal_result(bright_square):
    model, image, square = bright_square
    explainer = ExtremalPerturbation(
        model, areas=(0.05, 0.15), iterations=100, step=2, sigma=2.0, blur_sigma=5.0
    )
    return explainer, explainer(image), model, image, square


def test_extremal_mask_area_matches_the_constraint(extremal_result):
    _, explanation, _, _, _ = extremal_result
    full = explanation.extras["full_masks"][0]
    assert full.shape == (2, 27, 27)  # the 24-px image with a 2-px margin (-2..24)
    torch.testing.assert_close(explanation.extras["masks"][0], full[:, 2:26, 2:26])
    for mask, area in zip(full, (0.05, 0.15), strict=True):
        # The rank constraint on the full mask makes it (nearly) binary with that area; the
        # smooth fringe adds a little mass below 0.5.
        assert (mask > 0.5).float().mean().item() == pytest.approx(area, abs=0.02)
        assert mask.mean().item() == pytest.approx(area, abs=0.03)


def test_extremal_preserved_region_keeps_the_score(extremal_result):
    _explainer, explanation, model, image, square = extremal_result
    full_score = explanation.scores.item()
    assert full_score > 0.99
    blurred = gaussian_blur(image, 5.0, **TORCHRAY_BLUR)
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
    # the map is the sum of the (smoothed) masks, min-max normalised; it peaks on the square
    assert explanation.maps[0][square].mean() > 0.8
    assert explanation.maps[0][~square].mean() < 0.3
    assert explanation.forward_passes.tolist() == [1 + 101 * 2]


def test_extremal_map_is_the_sum_of_the_smoothed_masks(extremal_result):
    _explainer, explanation, _, _, _ = extremal_result
    masks = explanation.extras["masks"][0]
    smoothed = gaussian_blur(masks[:, None], 0.09 * 24, **TORCHRAY_BLUR).sum(dim=0)[0]
    lo, hi = smoothed.min(), smoothed.max()
    torch.testing.assert_close(explanation.maps[0], (smoothed - lo) / (hi - lo))


def test_extremal_starts_from_the_whole_image(bright_square):
    # One iteration returns the masks it was evaluated on: those of the parameters' start, all
    # ones (the whole image kept), not 0.5.
    model, image, _ = bright_square
    options = {"areas": (0.1,), "iterations": 1, "step": 2, "sigma": 2.0, "blur_sigma": 5.0}
    explanation = ExtremalPerturbation(model, **options)(image)
    start, _ = SmoothMaskGenerator((24, 24), 2, 2.0)(torch.ones(1, 1, 12, 12))
    torch.testing.assert_close(explanation.extras["full_masks"][0], start)
    assert float(explanation.extras["masks"].min()) > 0.9  # the margin's corners fade out


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_extremal_runs_on_the_gpu(bright_square):
    model, image, _ = bright_square
    options = {"areas": (0.1,), "iterations": 20, "step": 2, "sigma": 2.0, "blur_sigma": 5.0}
    on_cpu = ExtremalPerturbation(model, **options)(image)
    on_gpu = ExtremalPerturbation(model.cuda(), **options)(image.cuda())
    assert on_gpu.maps.is_cuda and on_gpu.extras["masks"].is_cuda
    torch.testing.assert_close(
        on_gpu.extras["masks"].cpu(), on_cpu.extras["masks"], atol=1e-3, rtol=0
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("areas", (0.0, 0.5)),
        ("areas", (0.1, 1.0)),
        ("areas", ()),
        ("areas", 0.1),
        ("areas", "0.1"),
        ("areas", (float("nan"),)),
        ("iterations", 0),
        ("iterations", 2.5),
        ("iterations", True),
        ("step", 0),
        ("step", "7"),
        ("sigma", 0.0),
        ("sigma", float("nan")),
        ("sigma", float("inf")),
        ("temperature", -0.1),
        ("blur_sigma", 0),
        ("levels", 1),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("momentum", 1.0),
        ("momentum", -0.5),
        ("area_weight", -1.0),
        ("area_weight", (1.0, 1000.0)),
        ("area_weight_growth", 0.99),
        ("smooth", -0.1),
        ("jitter", 1),
        ("reward", "probability"),
    ],
)
def test_extremal_rejects_bad_options(bright_square, option, value):
    model, _, _ = bright_square
    with pytest.raises(SiseError, match=option):
        ExtremalPerturbation(model, **{option: value})


def test_extremal_accepts_json_style_options(bright_square):
    # the CLI passes --option extremal.areas=[0.1,0.2] as a tuple and numbers as int or float
    model, _, _ = bright_square
    explainer = ExtremalPerturbation(model, areas=(0.1, 0.2), iterations=200, sigma=21, smooth=0)
    assert explainer.areas == [0.1, 0.2] and explainer.iterations == 200
    assert explainer.sigma == 21.0
