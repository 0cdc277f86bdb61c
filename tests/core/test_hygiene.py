"""The user's model comes back exactly as it was given, whatever happens."""

from __future__ import annotations

import torch

from sise import SISE


def test_same_output_twice_and_eval_mode_inside(small_cnn):
    small_cnn.train()  # dropout would make a train-mode explanation random
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    first = SISE(small_cnn)(x)
    second = SISE(small_cnn)(x)
    assert torch.equal(first.maps, second.maps)
    assert small_cnn.training


def test_frozen_model_still_gets_gradients(small_cnn):
    for p in small_cnn.parameters():
        p.requires_grad_(False)
    explanation = SISE(small_cnn)(torch.randn(1, 3, 16, 16))
    assert int(explanation.kept_maps.sum()) > 0
    assert not any(p.requires_grad for p in small_cnn.parameters())


def test_batch_equals_single_explanations(small_cnn):
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    batch = SISE(small_cnn)(x, [0, 2, 4])
    for i, target in enumerate([0, 2, 4]):
        single = SISE(small_cnn)(x[i : i + 1], target)
        torch.testing.assert_close(batch.maps[i], single.maps[0], atol=1e-5, rtol=1e-5)
        assert batch.forward_passes[i] == single.forward_passes[0]
    assert (batch.maps.amax(dim=(1, 2)) == 1).all() and (batch.maps.amin(dim=(1, 2)) == 0).all()


def test_adaptive_selection_spends_fewer_forwards(small_cnn):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    fixed = SISE(small_cnn)(x, 1)
    adaptive = SISE(small_cnn, selection="adaptive")(x, 1)
    assert 1 < int(adaptive.forward_passes[0]) < int(fixed.forward_passes[0])


def test_blur_baseline_changes_the_scores(small_cnn):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    zero = SISE(small_cnn)(x, 1).maps
    blur = SISE(small_cnn, baseline="blur")(x, 1).maps
    assert not torch.allclose(zero, blur)
