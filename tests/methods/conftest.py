"""Tiny models with fixed weights for the comparison methods' tests, small enough to follow by
hand, and the model-state check every method must pass.

(The suite runs with ``--import-mode=importlib``: tests reach these through fixtures.)
"""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
from torch import nn


class HandNet(nn.Module):
    """The hand network: conv 1x1 (1 -> 2 channels) -> [BatchNorm] -> ReLU -> flatten -> linear.

    On the 3x3 input ``X`` the feature maps are ``A_0 = relu(x)`` and ``A_1 = relu(2 - x)``
    (weights ``CONV_W``, biases ``CONV_B``), flattened channel-major, row-major into the linear
    head ``HEAD_W`` (``HEAD_W[c][k]`` is the 3x3 block of class c on channel k), ``HEAD_B``. The
    maps have the input's size, so no method up-samples and every quantity is a few
    multiplications; :meth:`by_hand` is the same network in plain Python.
    """

    X: ClassVar[list[list[float]]] = [[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 0.0, 1.0]]
    CONV_W: ClassVar[list[float]] = [1.0, -1.0]
    CONV_B: ClassVar[list[float]] = [0.0, 2.0]
    HEAD_W: ClassVar[list[list[list[list[float]]]]] = [
        [
            [[0.25, -0.25, 0.0], [0.0, 0.5, 0.25], [-0.25, 0.0, 0.25]],
            [[0.0, 0.25, -0.25], [0.25, 0.0, 0.0], [0.5, -0.25, 0.0]],
        ],
        [
            [[0.0, 0.25, 0.0], [0.25, 0.0, -0.25], [0.0, 0.25, 0.0]],
            [[0.25, 0.0, 0.0], [0.0, -0.25, 0.0], [0.0, 0.0, 0.25]],
        ],
    ]
    HEAD_B: ClassVar[list[float]] = [0.1, -0.1]
    POSITIONS: ClassVar[list[tuple[int, int]]] = [(i, j) for i in range(3) for j in range(3)]

    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 2, 1)
        layers: list[nn.Module] = [conv]
        if batch_norm:
            bn = nn.BatchNorm2d(2)
            with torch.no_grad():
                bn.running_mean.copy_(torch.tensor([0.5, -0.25]))
                bn.running_var.copy_(torch.tensor([4.0, 0.25]))
                bn.weight.copy_(torch.tensor([2.0, 0.5]))
                bn.bias.copy_(torch.tensor([0.25, 1.0]))
            layers.append(bn)
        layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(18, 2))
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(self.CONV_W).view(2, 1, 1, 1))
            conv.bias.copy_(torch.tensor(self.CONV_B))
            self.head[1].weight.copy_(torch.tensor(self.HEAD_W).view(2, 18))
            self.head[1].bias.copy_(torch.tensor(self.HEAD_B))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @classmethod
    def by_hand(cls, x: list[list[float]]) -> tuple[list[list[list[float]]], list[float]]:
        """The network (without batch norm) in plain Python: maps A_k and the two logits."""
        maps = [
            [
                [max(0.0, cls.CONV_W[k] * x[i][j] + cls.CONV_B[k]) for j in range(3)]
                for i in range(3)
            ]
            for k in range(2)
        ]
        logits = [
            sum(cls.HEAD_W[c][k][i][j] * maps[k][i][j] for k in range(2) for i, j in cls.POSITIONS)
            + cls.HEAD_B[c]
            for c in range(2)
        ]
        return maps, logits

    @staticmethod
    def softmax(values: list[float]) -> list[float]:
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        return [e / sum(exps) for e in exps]

    @staticmethod
    def minmax(grid: list[list[float]]) -> list[list[float]]:
        flat = [v for row in grid for v in row]
        low, high = min(flat), max(flat)
        return [[(v - low) / (high - low) for v in row] for row in grid]

    @classmethod
    def cam_from_weights(cls, weights: list[float]) -> torch.Tensor:
        """minmax(relu(Σ_k w_k A_k)) on the hand input, in plain Python, as a (1, 3, 3) map."""
        maps, _ = cls.by_hand(cls.X)
        grid = [
            [max(0.0, sum(weights[k] * maps[k][i][j] for k in range(2))) for j in range(3)]
            for i in range(3)
        ]
        return torch.tensor(cls.minmax(grid)).view(1, 3, 3)


class GapNet(nn.Module):
    """The hand network's features with global average pooling: spatially constant gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.tensor(HandNet.CONV_W).view(2, 1, 1, 1))
            self.features[0].bias.copy_(torch.tensor(HandNet.CONV_B))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.5], [-0.5, 1.0]]))
            self.fc.bias.copy_(torch.tensor(HandNet.HEAD_B))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class BrightSquareNet(nn.Module):
    """Responds to bright pixels: class-0 logit = GAIN · mean(relu(x − 0.25)), class 1 its
    negative. A bright square on a dark background is the whole evidence for class 0, and
    blurring the square below 0.25 removes it."""

    GAIN = 120.0

    def __init__(self) -> None:
        super().__init__()
        self.detector = nn.Conv2d(1, 1, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.detector.weight.fill_(1.0)
            self.detector.bias.fill_(-0.25)
            self.fc.weight.copy_(torch.tensor([[self.GAIN], [-self.GAIN]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.detector(x)).mean(dim=(2, 3)))


class ModelState:
    """What a method must leave as it found it: modes, requires_grad, values, no .grad, no hooks."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.training = [m.training for m in model.modules()]
        self.requires_grad = [p.requires_grad for p in model.parameters()]
        self.params = [p.detach().clone() for p in model.parameters()]
        self.buffers = [b.detach().clone() for b in model.buffers()]

    def assert_unchanged(self) -> None:
        model = self.model
        assert [m.training for m in model.modules()] == self.training
        assert [p.requires_grad for p in model.parameters()] == self.requires_grad
        assert all(p.grad is None for p in model.parameters())
        for p, q in zip(model.parameters(), self.params, strict=True):
            assert torch.equal(p, q)
        for b, c in zip(model.buffers(), self.buffers, strict=True):
            assert torch.equal(b, c)
        for module in model.modules():
            assert not module._forward_hooks
            assert not module._forward_pre_hooks
            assert not module._backward_hooks
            assert not module._backward_pre_hooks


@pytest.fixture
def hand_x() -> torch.Tensor:
    return torch.tensor(HandNet.X).view(1, 1, 3, 3)


@pytest.fixture
def hand_net() -> HandNet:
    return HandNet().eval()


@pytest.fixture
def hand_bn_net() -> HandNet:
    return HandNet(batch_norm=True).eval()


@pytest.fixture
def gap_net() -> GapNet:
    return GapNet().eval()


@pytest.fixture
def bright_square() -> tuple[BrightSquareNet, torch.Tensor, torch.Tensor]:
    """The model, a (1, 1, 24, 24) dark image with a bright 5x5 square, and the square's mask."""
    image = torch.zeros(1, 1, 24, 24)
    image[..., 4:9, 14:19] = 1.0
    square = torch.zeros(24, 24, dtype=torch.bool)
    square[4:9, 14:19] = True
    return BrightSquareNet().eval(), image, square


@pytest.fixture
def model_state() -> type[ModelState]:
    """``state = model_state(model)`` before a method runs, ``state.assert_unchanged()`` after."""
    return ModelState
