"""Ada-SISE's feature-map selection, batched on the device: equal to one sample at a time, no sync.

The reference is the per-sample loop the package used before (one Otsu threshold per sample,
computed on that sample's positive values alone), kept here verbatim in spirit.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from tiny_models import SmallCNN
from torch import Tensor

from sise import SISE
from sise.core.postprocess import otsu_threshold
from sise.methods.feature_selection import select_feature_maps
from sise.runtime import Runtime


def per_sample_adaptive(gradients: Tensor) -> Tensor:
    """Ada-SISE selection one sample at a time (the package's former implementation)."""
    alpha = gradients.sum(dim=(2, 3))
    beta = alpha.amax(dim=1, keepdim=True)
    positive = alpha > 0
    normalised = alpha / beta.clamp_min(torch.finfo(alpha.dtype).tiny)
    keep = torch.zeros_like(positive)
    for i in range(alpha.shape[0]):
        values = normalised[i][positive[i]]
        if values.numel() == 0:
            continue
        threshold = otsu_threshold(values.view(1, 1, -1))[0]
        chosen = values > threshold
        if not bool(chosen.any()):  # all equal: nothing to split, keep them all
            chosen = torch.ones_like(chosen)
        keep[i, positive[i].nonzero().squeeze(1)[chosen]] = True
    return keep


def _alpha_as_gradients(alpha: Tensor) -> Tensor:
    """(N, K) → (N, K, 1, 1) gradients whose spatial sums are exactly ``alpha``."""
    return alpha[:, :, None, None]


def test_batched_adaptive_equals_per_sample_on_random_gradients():
    generator = torch.Generator().manual_seed(0)
    for k in (1, 2, 7, 64, 513):
        gradients = torch.randn(6, k, 3, 3, generator=generator)
        torch.testing.assert_close(
            select_feature_maps(gradients, selection="adaptive"), per_sample_adaptive(gradients)
        )


def test_batched_adaptive_equals_per_sample_with_ties_and_degenerate_rows():
    alpha = torch.tensor(
        [
            [3.0, 3.0, 1.0, 1.0, 2.0, -1.0, 0.0, 3.0],  # ties at the top and at a bin
            [-1.0, -2.0, -0.5, -3.0, -1.0, -1.0, -2.0, -9.0],  # all negative: keeps nothing
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # all zero: keeps nothing
            [2.0, 2.0, 2.0, 2.0, -1.0, -1.0, 0.0, 0.0],  # equal positives: keeps them all
            [0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # a single positive map
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],  # evenly spread
            [1e-30, 1e-30, 2e-30, -1.0, 1e-30, 0.0, 0.0, 0.0],  # tiny β
        ]
    )
    gradients = _alpha_as_gradients(alpha)
    got = select_feature_maps(gradients, selection="adaptive")
    torch.testing.assert_close(got, per_sample_adaptive(gradients))
    assert not got[1].any() and not got[2].any()
    assert got[3].tolist() == [True] * 4 + [False] * 4
    assert got[4].tolist() == [False, False, True] + [False] * 5


def test_batched_adaptive_equals_per_sample_on_integer_ties():
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        alpha = torch.randint(-4, 5, (9, 33), generator=generator).float()
        gradients = _alpha_as_gradients(alpha)
        torch.testing.assert_close(
            select_feature_maps(gradients, selection="adaptive"), per_sample_adaptive(gradients)
        )


def test_masked_otsu_equals_otsu_of_each_subset():
    generator = torch.Generator().manual_seed(1)
    values = torch.rand(5, 40, generator=generator)
    valid = torch.rand(5, 40, generator=generator) > 0.4
    valid[3] = False  # an empty row
    valid[4] = False
    valid[4, 7] = True  # a single value: a constant set
    got = otsu_threshold(values, valid=valid)
    for i in range(3):
        expected = otsu_threshold(values[i][valid[i]].view(1, 1, -1))[0]
        assert got[i].item() == expected.item()
    assert torch.isnan(got[3])
    assert got[4].item() == values[4, 7].double().item()


@pytest.mark.parametrize("selection", ["fixed", "adaptive"])
def test_selection_never_waits_on_the_host(selection):
    """On the meta device any ``.item()``, ``bool()`` or data-dependent shape raises."""
    gradients = torch.empty(4, 32, 5, 5, device="meta")
    keep = select_feature_maps(gradients, 0.0, selection)
    assert keep.shape == (4, 32) and keep.device.type == "meta" and keep.dtype == torch.bool


def test_sise_adaptive_several_images_keep_what_single_calls_keep():
    torch.manual_seed(0)
    model = SmallCNN(classes=6).eval()
    inputs = torch.randn(4, 3, 32, 32)
    targets = [1, 4, 2, 0]
    explainer = SISE(model, ["features.2", "features.5", "features.8"], selection="adaptive")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        together = explainer(inputs, targets)
        for i in range(4):
            alone = explainer(inputs[i : i + 1], targets[i])
            assert together.kept_maps[i].tolist() == alone.kept_maps[0].tolist()
            assert int(together.forward_passes[i]) == int(alone.forward_passes[0])
            torch.testing.assert_close(together.maps[i], alone.maps[0], rtol=0, atol=1e-5)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_selection_never_synchronises():
    gradients = torch.randn(8, 256, 7, 7, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for selection in ("fixed", "adaptive"):
            select_feature_maps(gradients, 0.0, selection)  # type: ignore[arg-type]
    finally:
        torch.cuda.set_sync_debug_mode(0)


@cuda
def test_cuda_sise_syncs_do_not_grow_with_images_or_layers():
    """Host syncs of one explanation (counted by CUDA's sync debug mode): a fixed few, not one per
    image or per layer as a per-sample loop or a per-layer ``nonzero`` would make them."""
    torch.manual_seed(0)
    model = SmallCNN(classes=6).cuda().eval()
    counts = {}
    for layers in (["features.2", "features.8"], ["features.2", "features.5", "features.8"]):
        explainer = SISE(model, layers, selection="adaptive", runtime=Runtime(batch_size=16))
        for n in (1, 4):
            inputs = torch.randn(n, 3, 32, 32, device="cuda")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                explainer(inputs)  # warm-up: layer shapes, cuDNN, allocator
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    explainer(inputs)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            counts[(len(layers), n)] = sum("synchroniz" in str(w.message) for w in caught)
    assert len(set(counts.values())) == 1, counts
    # inputs finite, scores finite, SISE's kept and scored counts, and whether a map is blank
    # (one wait each per call, whatever the number of images and layers)
    assert next(iter(counts.values())) <= 4, counts


@pytest.mark.parametrize(("selection", "mu"), [("adaptive", 0.0), ("fixed", 0.0), ("fixed", 0.4)])
def test_all_layers_in_one_call_equal_one_call_per_layer(selection, mu):
    from sise.methods.feature_selection import select_layers_maps

    generator = torch.Generator().manual_seed(3)
    layers = [
        torch.randn(4, k, size, size, generator=generator) for k, size in ((3, 5), (40, 2), (9, 1))
    ]
    # a row of each awkward kind in the widest layer: ties, all negative, all zero
    layers[1][0] = 1.0
    layers[1][1] = -torch.rand(40, 2, 2, generator=generator)
    layers[1][2] = 0.0
    layers[2][3] = torch.rand(9, 1, 1, generator=generator) * 0.1  # small: any padding > 0 shows
    combined = select_layers_maps(layers, mu, selection)
    for got, gradients in zip(combined, layers, strict=True):
        assert got.shape == gradients.shape[:2]
        assert torch.equal(got, select_feature_maps(gradients, mu, selection))
    assert combined[1][1].sum() == 0 and combined[1][0].all()
    assert select_layers_maps([], mu, selection) == []
