"""What a test needs to prove that a user's model leaves a block exactly as it came in."""

from __future__ import annotations

import torch
from torch import nn

Snapshot = tuple[dict, dict]


def snapshot(model: nn.Module) -> Snapshot:
    """The model's state (copied) and the identity and storage of each of its parameters."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    identity = {k: (id(p), p.data_ptr()) for k, p in model.named_parameters()}
    return state, identity


def assert_unchanged(model: nn.Module, before: Snapshot) -> None:
    """Same state, same parameter objects on the same storage, no instance ``forward`` left."""
    state, identity = before
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert {k: (id(p), p.data_ptr()) for k, p in model.named_parameters()} == identity
    assert all("forward" not in vars(m) for m in model.modules())


def assert_masked_scores_as_plain(model: nn.Module, size: int = 32) -> None:
    """``score_masked`` on the model (enough masks for every rewrite to be tried) gives the plain
    model's scores and leaves the model as it was: what a refused rewrite must do."""
    from sise.core.masks import TensorMasks
    from sise.runtime.engine import FOLD_MIN_MASKS, score_masked

    inputs = torch.randn(1, 3, size, size)
    masks = TensorMasks(torch.rand(FOLD_MIN_MASKS, size, size))
    before = snapshot(model)
    got = score_masked(model, inputs, torch.tensor([3]), masks, score="logit")
    with torch.no_grad():
        expected = model(inputs * masks.masks(0, FOLD_MIN_MASKS)[:, None])[:, 3]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert_unchanged(model, before)


def randomise_batch_norms(model: nn.Module) -> nn.Module:
    """Random statistics and affine parameters for every batch norm: a fresh one holds mean 0,
    variance 1, weight 1 and bias 0, which a wrong fold (mean and variance swapped, the shift
    dropped) would pass."""
    from torch.nn.modules.batchnorm import _BatchNorm

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                if module.weight is not None:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
    return model
