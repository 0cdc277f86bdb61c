"""Tiny models with fixed weights for the comparison methods, small enough to follow by hand,
and the model-state checks every method must pass."""

from __future__ import annotations

import torch
from torch import nn

# The hand network: input x (1, 1, 3, 3); conv 1x1 with 2 channels (weights CONV_W, biases
# CONV_B) -> ReLU gives the maps A_0 = relu(x), A_1 = relu(2 - x); flatten (channel-major,
# row-major) -> linear head W, B. Its feature maps have the input's 3x3 size, so no method
# up-samples and every quantity is a few multiplications.
HAND_X = [[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 0.0, 1.0]]
CONV_W = [1.0, -1.0]
CONV_B = [0.0, 2.0]
# W[c][k] is the 3x3 weight block of class c on channel k.
HEAD_W = [
    [
        [[0.25, -0.25, 0.0], [0.0, 0.5, 0.25], [-0.25, 0.0, 0.25]],
        [[0.0, 0.25, -0.25], [0.25, 0.0, 0.0], [0.5, -0.25, 0.0]],
    ],
    [
        [[0.0, 0.25, 0.0], [0.25, 0.0, -0.25], [0.0, 0.25, 0.0]],
        [[0.25, 0.0, 0.0], [0.0, -0.25, 0.0], [0.0, 0.0, 0.25]],
    ],
]
HEAD_B = [0.1, -0.1]


class HandNet(nn.Module):
    """conv 1x1 (1 -> 2) -> [BatchNorm] -> ReLU -> flatten -> linear (18 -> 2)."""

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
                bn.bias.copy_(torch.tensor([0.5, 1.0]))
            layers.append(bn)
        layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(18, 2))
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(CONV_W).view(2, 1, 1, 1))
            conv.bias.copy_(torch.tensor(CONV_B))
            self.head[1].weight.copy_(torch.tensor(HEAD_W).view(2, 18))
            self.head[1].bias.copy_(torch.tensor(HEAD_B))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class GapNet(nn.Module):
    """The hand network with global average pooling instead of flatten (spatially constant
    gradients at the feature maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.tensor(CONV_W).view(2, 1, 1, 1))
            self.features[0].bias.copy_(torch.tensor(CONV_B))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.5], [-0.5, 1.0]]))
            self.fc.bias.copy_(torch.tensor(HEAD_B))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class BrightSquareNet(nn.Module):
    """Responds to bright pixels: class-0 logit = GAIN · mean(relu(x − 0.5)), class 1 its
    negative. A bright square on a dark background is the whole evidence for class 0, and
    blurring the square below 0.5 removes it."""

    GAIN = 120.0

    def __init__(self) -> None:
        super().__init__()
        self.detector = nn.Conv2d(1, 1, 1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.detector.weight.fill_(1.0)
            self.detector.bias.fill_(-0.5)
            self.fc.weight.copy_(torch.tensor([[self.GAIN], [-self.GAIN]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu(self.detector(x)).mean(dim=(2, 3)))


def snapshot(model: nn.Module) -> dict[str, object]:
    """What a method must leave as it found it."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.detach().clone() for b in model.buffers()],
    }


def assert_untouched(model: nn.Module, before: dict[str, object]) -> None:
    assert [m.training for m in model.modules()] == before["training"]
    assert [p.requires_grad for p in model.parameters()] == before["requires_grad"]
    assert all(p.grad is None for p in model.parameters())
    for p, q in zip(model.parameters(), before["params"], strict=True):  # type: ignore[call-overload]
        assert torch.equal(p, q)
    for b, c in zip(model.buffers(), before["buffers"], strict=True):  # type: ignore[call-overload]
        assert torch.equal(b, c)
    for module in model.modules():
        assert not module._forward_hooks
        assert not module._forward_pre_hooks
        assert not module._backward_hooks
        assert not module._backward_pre_hooks
