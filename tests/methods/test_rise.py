"""RISE: its random masks (the paper's recipe, batching, seeding, device) and its saliency as the
score-weighted mean of the masks."""

from __future__ import annotations

import pytest
import torch

from sise.errors import SiseError
from sise.methods import RISE
from sise.methods.rise import RandomGridMasks
from sise.runtime import Runtime


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
    first = RISE(small_cnn, n_masks=48, seed=5, runtime=Runtime(batch_size=20))(inputs)
    again = RISE(small_cnn, n_masks=48, seed=5, runtime=Runtime(batch_size=7))(inputs)
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


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ("noise", "unknown baseline 'noise'"),
        (0.0, "unknown baseline"),
        (torch.full((1, 3, 1, 1), float("nan")), "baseline tensor holds NaN"),
        (torch.zeros(3, dtype=torch.long), "floating point"),
    ],
)
def test_rise_checks_its_baseline_where_it_enters(small_cnn, baseline, message):
    with pytest.raises(SiseError, match=message):
        RISE(small_cnn, n_masks=8, baseline=baseline)
