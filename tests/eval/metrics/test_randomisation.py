"""The model-parameter randomisation row: ρ ≈ 1 for maps that cannot depend on the weights, near
0 for maps that are the weights; the randomised copy is the cascading check's last step."""

from __future__ import annotations

import torch
from torch import nn

from sise.eval.metrics import model_randomisation, randomised_model, sanity_check


class _PixelWeights(nn.Module):
    """Logit = Σ W ⊙ x over a 16×16 one-channel image; its gradient map is |W|."""

    def __init__(self) -> None:
        super().__init__()
        ramp = torch.linspace(0, 1, 16)
        self.weight = nn.Parameter((ramp[:, None] + ramp[None, :])[None])  # a smooth ramp
        self.head = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.weight * x).flatten(1).sum(dim=1, keepdim=True))


def _input_only(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A 'method' that never looks at the model: the input's magnitude."""
    return x.abs().sum(dim=1)


def _gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.gather(1, targets[:, None]).sum().backward()
    assert x.grad is not None
    return x.grad.abs().sum(dim=1)


def _rows(explain, model, x, targets):
    work = randomised_model(model, x, seed=3)
    return model_randomisation(explain(model, x, targets), explain(work, x, targets))


def test_maps_that_ignore_the_weights_keep_rho_one():
    torch.manual_seed(0)
    model, x, targets = _PixelWeights(), torch.randn(3, 1, 16, 16), torch.tensor([0, 1, 0])
    rho = _rows(_input_only, model, x, targets)
    assert torch.allclose(rho, torch.ones(3, dtype=torch.float64))


def test_maps_that_are_the_weights_lose_their_rank_order():
    torch.manual_seed(0)
    model, x, targets = _PixelWeights(), torch.ones(3, 1, 16, 16), torch.tensor([0, 1, 0])
    trained = _gradient(model, x, targets)
    rho = _rows(_gradient, model, x, targets)
    # the trained map is the ramp (ρ = 1 between any two of its copies); the randomised one is
    # a fresh draw: no rank agreement left
    assert float(model_randomisation(trained, trained).min()) == 1.0
    assert float(rho.abs().max()) < 0.2


def test_the_users_model_is_untouched_and_the_copy_is_the_cascades_last_step():
    torch.manual_seed(0)
    model, x, targets = _PixelWeights(), torch.ones(2, 1, 16, 16), torch.tensor([0, 1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    work = randomised_model(model, x, seed=3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(work.weight, model.weight)
    cascade = sanity_check(_gradient, model, x, targets, seed=3)
    assert [name for name, _ in cascade] == ["head", ""]  # top layer first, the root's W last
    last = float(
        model_randomisation(_gradient(model, x, targets), _gradient(work, x, targets)).mean()
    )
    assert cascade[-1][1] == last
