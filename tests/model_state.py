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
