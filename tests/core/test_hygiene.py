"""The user's model comes back exactly as it was given, whatever happens."""

from __future__ import annotations

import pytest
import torch

from sise import SISE, SiseError


def all_hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_no_hook_left_and_state_unchanged(small_cnn):
    small_cnn.train()
    small_cnn.features[1].eval()  # a mixed mode that must survive as it is
    small_cnn.features[0].weight.requires_grad_(False)
    modes = [m.training for m in small_cnn.modules()]
    flags = [p.requires_grad for p in small_cnn.parameters()]
    before = {k: v.clone() for k, v in small_cnn.state_dict().items()}

    explanation = SISE(small_cnn)(torch.randn(2, 3, 16, 16), [1, 3])

    assert all_hooks(small_cnn) == 0
    assert [m.training for m in small_cnn.modules()] == modes
    assert [p.requires_grad for p in small_cnn.parameters()] == flags
    assert all(p.grad is None for p in small_cnn.parameters())
    # eval mode inside: BatchNorm running statistics were not updated by the forwards
    for key, value in small_cnn.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert explanation.targets.tolist() == [1, 3]


def test_hooks_removed_when_the_model_fails(small_cnn):
    with pytest.raises(SiseError):
        SISE(small_cnn, layers=["features.2"])(torch.randn(1, 3, 16, 16), 99)
    assert all_hooks(small_cnn) == 0
    assert not small_cnn.training


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
