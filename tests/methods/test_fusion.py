"""SISE's fusion (:mod:`sise.methods.fusion`): the cascade on hand-made maps, and the ``smoothing=``
option: off it is the paper's fusion bit for bit; on it does what its docstring says on hand-made
maps; on the real demo photo it trades a little EBPG for Drop%."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import SmallCNN

from sise import SISE, SiseError
from sise.core.postprocess import minmax_normalize, otsu_threshold
from sise.core.smoothing import RECOMMENDED_SMOOTHING, gaussian_smooth
from sise.eval.data import boxes_mask
from sise.eval.metrics import drop_and_increase, energy_pointing_game
from sise.images import load_image, sample_image_path
from sise.methods.fusion import fuse
from sise.runtime import Runtime

#: The value the benchmark chose (benchmarks/fusion_confirm.py, README); the tests use it.
CHOSEN = RECOMMENDED_SMOOTHING


def paper_fusion(layer_maps: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The paper's cascade written out one sample at a time: ``F ← V_1``, then
    ``F ← (F + V_l) ⊙ [V_l > Otsu(V_l)]`` over the present layers, then min-max."""
    out = []
    for maps, here in zip(layer_maps, present, strict=True):
        fused = None
        for v, use in zip(maps, here, strict=True):
            if not use:
                continue
            if fused is None:
                fused = v.clone()
                continue
            gate = (v > otsu_threshold(v[None]).to(v.dtype)[0]).to(v.dtype)
            fused = (fused + v) * gate
        out.append(torch.zeros_like(maps[0]) if fused is None else fused)
    return minmax_normalize(torch.stack(out))


def random_layer_maps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(3, 4, 5, 6, generator=generator)
    layer_maps = minmax_normalize(
        torch.nn.functional.interpolate(coarse, size=(30, 36), mode="bilinear")
    )
    present = torch.tensor([[True] * 4, [True, False, True, True], [False, True, True, False]])
    return layer_maps, present


# --------------------------------------------------------------------------------------------
# off: the paper, bit for bit


def test_smoothing_off_is_the_paper_fusion_bit_for_bit():
    layer_maps, present = random_layer_maps()
    reference = paper_fusion(layer_maps, present)
    assert torch.equal(fuse(layer_maps, present), reference)
    assert torch.equal(fuse(layer_maps, present, smoothing=0.0), reference)
    assert torch.equal(fuse(layer_maps, present, smoothing=0), reference)
    # ... and the option is not a no-op when on.
    assert not torch.equal(fuse(layer_maps, present, smoothing=0.02), reference)


def test_sise_default_is_unsmoothed_and_equal_to_smoothing_zero():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 32, 32)
    default = SISE(model, runtime=Runtime(batch_size=16))(x)
    assert SISE(model).smoothing == 0.0
    off = SISE(model, smoothing=0.0, runtime=Runtime(batch_size=16))(x)
    on = SISE(model, smoothing=0.05, runtime=Runtime(batch_size=16))(x)
    assert torch.equal(default.maps, off.maps)
    layer_maps, kept = default.layer_maps, default.kept_maps
    assert torch.equal(default.maps, paper_fusion(layer_maps, kept > 0))
    # The option changes the fusion only: same layer maps, same forward passes.
    assert torch.equal(on.layer_maps, layer_maps)
    assert torch.equal(on.forward_passes, default.forward_passes)
    assert torch.equal(on.maps, minmax_normalize(gaussian_smooth(default.maps, 0.05)))


@pytest.mark.parametrize("bad", [-0.01, 0.3, float("nan"), "0.05", True])
def test_bad_smoothing_is_refused_with_the_range(bad):
    with pytest.raises(SiseError, match="smoothing"):
        SISE(SmallCNN(), smoothing=bad)
    layer_maps, present = random_layer_maps()
    with pytest.raises(SiseError, match="smoothing"):
        fuse(layer_maps, present, smoothing=bad)


# --------------------------------------------------------------------------------------------
# the cascade on hand-made maps


def test_fusion_order_and_gating_on_hand_made_maps():
    # Three layers, 1x4 maps. Otsu splits each map into {low} and {high} values. (Its threshold
    # is a histogram bin centre, as in scikit-image, so low values sit below their bin centre.)
    v1 = torch.tensor([[0.2, 1.0, 0.6, 0.0]])
    v2 = torch.tensor([[0.0, 1.0, 0.9, 0.09]])  # gate keeps pixels 1, 2
    v3 = torch.tensor([[0.0, 0.0, 1.0, 0.09]])  # gate keeps pixel 2
    maps = torch.stack([v1, v2, v3])[None]  # (1, 3, 1, 4)
    present = torch.ones(1, 3, dtype=torch.bool)
    # F = v1; F = (F + v2) * [0,1,1,0] = [0, 2, 1.5, 0]; F = (F + v3) * [0,0,1,0] = [0,0,2.5,0]
    fused = fuse(maps, present)
    torch.testing.assert_close(fused, torch.tensor([[[0.0, 0.0, 1.0, 0.0]]]))
    # Shallow to deep matters: reversing the order gates by v1 last and gives another map.
    # F = v3; F = (v3 + v2) * [0,1,1,0] = [0,1,1.9,0]; F = (F + v1) * (v1 > t1) with t1 Otsu
    # of v1 = {0.0,0.2,0.6,1.0} (between 0.2 and 0.6): [0, 2, 2.5, 0] -> [0, 0.8, 1, 0]
    reversed_fused = fuse(maps.flip(1), present)
    torch.testing.assert_close(reversed_fused, torch.tensor([[[0.0, 0.8, 1.0, 0.0]]]))


def test_fusion_skips_a_layer_that_kept_nothing():
    v1 = torch.tensor([[0.2, 1.0, 0.6, 0.0]])
    empty = torch.zeros(1, 4)
    v3 = torch.tensor([[0.0, 0.0, 1.0, 0.09]])
    maps = torch.stack([v1, empty, v3])[None]
    present = torch.tensor([[True, False, True]])
    # Without the empty layer: F = (v1 + v3) * [0, 0, 1, 0] = [0, 0, 1.6, 0]
    torch.testing.assert_close(fuse(maps, present), torch.tensor([[[0.0, 0.0, 1.0, 0.0]]]))
    # A first layer with nothing starts the cascade at the next one, and nothing is NaN.
    present = torch.tensor([[False, True, True]])
    out = fuse(torch.stack([empty, v1, v3])[None], present)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.0, 1.0, 0.0]]]))


# --------------------------------------------------------------------------------------------
# on: what the docstring says


def step_maps(height: int, width: int, edge: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One present layer whose map is 0 left of column ``edge`` and 1 from it on: the paper's
    fusion returns it unchanged (the first layer is not gated)."""
    step = torch.zeros(1, 1, height, width, dtype=torch.float64)
    step[..., edge:] = 1.0
    return step, torch.ones(1, 1, dtype=torch.bool)


def rise_width(profile: torch.Tensor) -> float:
    """Distance in pixels between the 10 % and 90 % crossings of a rising profile."""

    def crossing(level: float) -> float:
        i = int((profile >= level).nonzero()[0])
        a, b = float(profile[i - 1]), float(profile[i])
        return i - 1 + (level - a) / (b - a)

    return crossing(0.9) - crossing(0.1)


def test_step_edge_becomes_an_erf_ramp_of_the_stated_width():
    height, width, edge, s = 40, 200, 100, 0.04
    step, present = step_maps(height, width, edge)
    assert torch.equal(fuse(step, present), step[:, 0])  # the paper keeps the step
    smoothed = fuse(step, present, smoothing=s)[0]
    sigma = s * width  # σ_x is a fraction of the width: 8 px
    # Every row is the same ramp ½(1 + erf(d / σ√2)), d measured from the edge to pixel centres.
    assert torch.allclose(smoothed, smoothed[:1].expand_as(smoothed))
    d = torch.arange(width, dtype=torch.float64) + 0.5 - edge
    ramp = 0.5 * (1 + torch.erf(d / (sigma * math.sqrt(2))))
    torch.testing.assert_close(smoothed[0], ramp, atol=2e-3, rtol=0)
    # 10 % to 90 % over 2 · 1.2816 · σ = 20.5 px (the binary gate: one pixel).
    assert rise_width(smoothed[0]) == pytest.approx(2 * 1.2815516 * sigma, abs=0.3)
    # Far from the edge the map is untouched: still exactly 0 and 1 after the min-max.
    assert float(smoothed[0, :50].max()) < 1e-6 and float(smoothed[0, -50:].min()) > 1 - 1e-6


def test_sigma_is_a_fraction_of_each_side():
    # The same step, turned: σ_y follows the height, so the ramp is the same in pixels of the
    # side it crosses, and a step across the short side of the same image is 5 times steeper.
    step, present = step_maps(40, 200, 100)
    turned = fuse(step.transpose(2, 3).contiguous(), present, smoothing=0.04)[0]
    torch.testing.assert_close(turned.T, fuse(step, present, smoothing=0.04)[0])
    across_height = torch.zeros(1, 1, 40, 200, dtype=torch.float64)
    across_height[..., 20:, :] = 1.0
    short = fuse(across_height, present, smoothing=0.04)[0][:, 0]
    assert rise_width(short) == pytest.approx(2 * 1.2815516 * 0.04 * 40, abs=0.3)


def test_documented_normalisation():
    layer_maps, present = random_layer_maps(2)
    smoothed = fuse(layer_maps, present, smoothing=CHOSEN)
    expected = minmax_normalize(gaussian_smooth(fuse(layer_maps, present), CHOSEN))
    assert torch.equal(smoothed, expected)
    for m, paper in zip(smoothed, fuse(layer_maps, present), strict=True):
        if float(paper.max()) > 0:
            assert float(m.min()) == 0.0 and float(m.max()) == 1.0
        else:  # nothing survived the gates: still all zeros, not NaN
            assert torch.equal(m, torch.zeros_like(m))


# --------------------------------------------------------------------------------------------
# the real demo photo

# The cup and its contents in the 600x400 coffee photo (as in test_real_weights.py).
CUP_BOX = (170.0, 15.0, 420.0, 300.0)


@pytest.fixture(scope="module")
def coffee(demo):
    rgb = load_image(sample_image_path("coffee"))
    x = demo.preprocess(rgb)
    explanation = SISE(demo.model, runtime=Runtime(batch_size=32))(x)
    cup = boxes_mask([CUP_BOX], rgb.shape[:2], *x.shape[-2:])[None]
    return x, explanation, cup


@pytest.mark.slow
def test_smoothing_lowers_drop_and_keeps_energy_on_the_cup(coffee, demo):
    x, explanation, cup = coffee
    present = explanation.kept_maps > 0
    paper = explanation.maps
    smoothed = fuse(explanation.layer_maps, present, smoothing=CHOSEN)
    black = torch.full_like(x, -1.0)  # the demo model normalises with mean = std = 0.5
    for baseline in (None, black):
        paper_drop, _ = drop_and_increase(
            demo.model, x, explanation.targets, paper, baseline=baseline
        )
        smooth_drop, _ = drop_and_increase(
            demo.model, x, explanation.targets, smoothed, baseline=baseline
        )
        assert float(smooth_drop[0]) < float(paper_drop[0]) - 10, (smooth_drop, paper_drop)
    # A centred Gaussian (σ = a quarter of the image) knows only that photos are centred.
    height, width = x.shape[-2:]
    y = (torch.arange(height) + 0.5) / height - 0.5
    xx = (torch.arange(width) + 0.5) / width - 0.5
    centre = torch.exp(-(y[:, None] ** 2 + xx[None, :] ** 2) / (2 * 0.25**2))[None]
    smooth_energy = float(energy_pointing_game(smoothed, cup)[0])
    assert smooth_energy > float(energy_pointing_game(centre, cup)[0]) + 20
    # The price in EBPG against the paper's binary gate: 7-12 points on average over the
    # photo set (README), 95.3 -> 77.7 on this photo; more would mean the blur spreads energy
    # off the object rather than softening its edges.
    paper_energy = float(energy_pointing_game(paper, cup)[0])
    assert paper_energy - 25 < smooth_energy <= paper_energy
