"""Fixtures for the comparison methods' tests (the models live in method_models.py)."""

from __future__ import annotations

import pytest
import torch
from method_models import BrightSquareNet, GapNet, HandNet, HAND_X


@pytest.fixture
def hand_x() -> torch.Tensor:
    return torch.tensor(HAND_X).view(1, 1, 3, 3)


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
    """The model, a (1, 1, 24, 24) image with a bright 5x5 square, and the square's mask."""
    image = torch.zeros(1, 1, 24, 24)
    image[..., 4:9, 14:19] = 1.0
    square = torch.zeros(24, 24, dtype=torch.bool)
    square[4:9, 14:19] = True
    return BrightSquareNet().eval(), image, square
