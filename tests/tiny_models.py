"""Small CNNs shared by the tests (importable: pytest puts tests/ on the path)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """A small random CNN with batch norm, dropout and in-place ReLUs (the awkward parts)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x).mean(dim=(2, 3))))


class TinySegNet(nn.Module):
    """A segmentation network small enough to reason about: (N, 2, H, W) in, (N, 2, H, W) out.

    Channel 0 of the input is "red", channel 1 "green". Two 3x3 averaging convolutions with
    2x max pooling find red (feature channels 0, 1) and green (channels 2, 3) blobs; the maps are
    up-sampled back to the input size and a 1x1 head gives class 1 ("object") as the sum of the
    features and class 0 ("background") as its negative. So the class-1 logit at a pixel is high
    near either blob, and a region around the red blob depends on the red features only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.up = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)
        self.head = nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            first = torch.zeros(4, 2, 3, 3)
            first[0:2, 0] = 1 / 9  # red detectors
            first[2:4, 1] = 1 / 9  # green detectors
            self.stage1[0].weight.copy_(first)
            self.stage1[0].bias.copy_(torch.tensor([0.0, -0.2, 0.0, -0.2]))
            second = torch.zeros(4, 4, 3, 3)
            for k in range(4):
                second[k, k] = 1 / 9
            self.stage2[0].weight.copy_(second)
            self.stage2[0].bias.zero_()
            self.head.weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]).view(2, 4, 1, 1))
            self.head.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.stage2(self.stage1(x))))
