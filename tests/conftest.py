"""Fixtures shared by the whole suite: tiny models with fixed weights, and the demo model."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SmallCNN
from torch import nn

torch.set_num_threads(2)


class HandModel(nn.Module):
    """A CNN small enough to follow by hand.

    conv 1x1 (1 -> 4 channels: x, -x, x, and the constant 1) -> ReLU -> AvgPool 2x2 -> global
    mean -> Linear with class-0 weights (1, 0.5, -1, 1). The class-0 logit is
    ``z0 = mean relu(x) + 0.5 mean relu(-x) - mean relu(x) + 1``, so ``∂z0/∂A_k`` sums to the
    k-th weight at both SISE layers (the ReLU output and the pooled map).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0, 1.0, 0.0]).view(4, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.5, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).mean(dim=(2, 3)))


@pytest.fixture
def hand_model() -> HandModel:
    return HandModel().eval()


@pytest.fixture
def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture(scope="session")
def demo():
    """The real ImageNet-pretrained EfficientNet-Lite0 the package ships offline."""
    from sise.models.loading import load_model

    return load_model()
