"""The cascading model-parameter randomisation test on a small CNN."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.eval import (
    sanity_check,
)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def gradient_times_input(model: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return (grad * x).abs().sum(dim=1)


def gradient(model: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grad.abs().sum(dim=1)


INPUTS = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


TARGETS = torch.tensor([0, 1, 2, 0])


def test_sanity_check_layer_order_and_model_untouched() -> None:
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def model_blind(_model: nn.Module, x: Tensor, _targets: Tensor) -> Tensor:
        return x.mean(dim=1)

    result = sanity_check(model_blind, model, INPUTS, TARGETS)
    # top (output) layer first; a map that ignores the model never changes
    assert result == [("6", pytest.approx(1.0)), ("2", pytest.approx(1.0)), ("0", 1.0)]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_sanity_check_gradient_maps_decorrelate() -> None:
    model = small_cnn()
    grad_steps = sanity_check(gradient, model, INPUTS, TARGETS, seed=0)
    assert [name for name, _ in grad_steps] == ["6", "2", "0"]
    # the plain gradient loses almost all its rank agreement once everything is random
    assert all(rho < 0.5 for _, rho in grad_steps)
    assert grad_steps[-1][1] < 0.25
    gxi_steps = sanity_check(gradient_times_input, model, INPUTS, TARGETS, seed=0)
    # gradient x input keeps some correlation through the input factor (Adebayo et al.'s
    # observation), but still falls well below 1
    assert all(rho < 0.75 for _, rho in gxi_steps)
    # seeded: the same seed repeats exactly, another seed differs
    assert sanity_check(gradient, model, INPUTS, TARGETS, seed=0) == grad_steps
    assert sanity_check(gradient, model, INPUTS, TARGETS, seed=1) != grad_steps


def test_sanity_check_explicit_layers() -> None:
    model = small_cnn()
    only_fc = sanity_check(gradient, model, INPUTS, TARGETS, layers=["6"])
    assert [name for name, _ in only_fc] == ["6"]
    with pytest.raises(SiseError, match="unknown layer"):
        sanity_check(gradient, model, INPUTS, TARGETS, layers=["classifier"])
