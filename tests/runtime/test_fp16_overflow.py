"""float16 masked forwards: a score that overflows is scored again in float32, with a warning."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from sise.core.masks import MaskSums, TensorMasks
from sise.runtime.engine import score_masked


class Loud(nn.Module):
    """A conv whose output passes float16's 65,504 when the masked input is bright enough."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[4e4, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).amax(dim=(2, 3)) * 1e-4


def test_float16_overflow_is_scored_again_in_float32():
    model = Loud().eval()
    inputs = torch.ones(1, 3, 4, 4)
    masks = torch.stack([torch.full((4, 4), v) for v in (0.5, 1.0, 2.0, 3.0)])
    source = TensorMasks(masks)
    targets = torch.tensor([0])
    reference = score_masked(model, inputs, targets, source, score="logit")
    with pytest.warns(UserWarning, match="2 of 4 masked inputs overflowed float16"):
        got = score_masked(
            model, inputs, targets, source, score="logit", autocast_dtype=torch.float16
        )
    assert bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, reference, rtol=2e-3, atol=0)


def test_overflowed_masks_enter_the_sums_with_their_float32_scores():
    model = Loud().eval()
    inputs = torch.ones(1, 3, 4, 4)
    masks = torch.stack([torch.full((4, 4), v) for v in (0.5, 1.0, 2.0, 3.0)])
    masks[:, 0, 0] = 0.0  # masks that differ in shape, so a wrong weight shows
    targets = torch.tensor([0])
    reference = score_masked(model, inputs, targets, TensorMasks(masks), score="logit")
    sums = MaskSums([4], (4, 4), "cpu")
    with pytest.warns(UserWarning, match="overflowed float16"):
        score_masked(
            model,
            inputs,
            targets,
            TensorMasks(masks),
            score="logit",
            autocast_dtype=torch.float16,
            batch_size=3,
            sums=sums,
        )
    expected = (reference[:, None, None] * masks).sum(dim=0)
    assert bool(torch.isfinite(sums.result()).all())
    torch.testing.assert_close(sums.result()[0], expected, rtol=2e-3, atol=0)
