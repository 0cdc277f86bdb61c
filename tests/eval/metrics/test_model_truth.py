"""Model-truth metrics on a model whose score is a known linear function of the input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.eval import (
    average_drop,
    blur,
    causal_curve,
    drop_and_increase,
    increase_in_confidence,
    insertion_deletion_auc,
)


class LinearScore(nn.Module):
    """Logits ``[Σ w ⊙ x, 0]``: class 0's logit is linear in the input."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        s = (x * self.weight).flatten(1).sum(dim=1)
        return torch.stack([s, torch.zeros_like(s)], dim=1)


SIGNED = LinearScore(torch.tensor([[[1.0, 1.0], [1.0, -1.0]]]))


X_AB = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[2.0, 2.0], [2.0, 1.0]]]])


E_AB = torch.tensor([[[1.0, 0.0], [0.5, 0.0]], [[0.5, 0.5], [0.0, 1.0]]])


CLASS0 = torch.zeros(2, dtype=torch.long)


def test_drop_and_increase_by_hand() -> None:
    # A: Y = 1+2+3-4 = 2, O = 1 + 1.5 = 2.5 -> no drop, increase
    # B: Y = 2+2+2-1 = 5, O = 1 + 1 - 1 = 1 -> drop 80 %
    drop, increase = drop_and_increase(SIGNED, X_AB, CLASS0, E_AB, score="logit", batch_size=1)
    assert torch.allclose(drop, torch.tensor([0.0, 80.0]))
    assert increase.tolist() == [True, False]
    assert average_drop(drop) == pytest.approx(40.0)
    assert increase_in_confidence(increase) == pytest.approx(50.0)


def test_drop_and_increase_with_baseline() -> None:
    # b = 1: A -> [[1,1],[2,1]], O = 3 > 2; B -> [[1.5,1.5],[1,1]], O = 3, drop = 100 * 2/5
    baseline = torch.ones_like(X_AB)
    drop, increase = drop_and_increase(SIGNED, X_AB, CLASS0, E_AB, score="logit", baseline=baseline)
    assert torch.allclose(drop, torch.tensor([0.0, 40.0]))
    assert increase.tolist() == [True, False]


def test_drop_and_increase_softmax() -> None:
    # softmax of [s, 0] at class 0 is sigmoid(s)
    def sig(s: float) -> float:
        return 1 / (1 + math.exp(-s))

    drop, increase = drop_and_increase(SIGNED, X_AB, CLASS0, E_AB)
    expected_b = 100 * (sig(5) - sig(1)) / sig(5)
    assert drop.tolist() == pytest.approx([0.0, expected_b], rel=1e-5)
    assert increase.tolist() == [True, False]


def test_drop_and_increase_rejects_bad_input() -> None:
    negative = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])  # logit -1
    with pytest.raises(SiseError, match="negative"):
        drop_and_increase(SIGNED, negative, CLASS0[:1], E_AB[:1], score="logit")
    with pytest.raises(SiseError, match=r"\[0, 1\]"):
        drop_and_increase(SIGNED, X_AB, CLASS0, 2 * E_AB)
    with pytest.raises(SiseError, match="input size"):
        drop_and_increase(SIGNED, X_AB, CLASS0, E_AB[:, :1])
    with pytest.raises(SiseError, match="unknown score"):
        drop_and_increase(SIGNED, X_AB, CLASS0, E_AB, score="prob")  # type: ignore[arg-type]


SUM = LinearScore(torch.ones(1, 2, 2))


X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])


# saliency order: 0.9 at (0,1), then the 0.5 tie (1,0) before (1,1) by row-major order, then (0,0)
E_TIE = torch.tensor([[[0.1, 0.9], [0.5, 0.5]]])


def test_deletion_curve_and_tie_order() -> None:
    fractions, scores = causal_curve(
        SUM, X, CLASS0[:1], E_TIE, mode="deletion", steps=4, score="logit", substrate="zero"
    )
    assert fractions.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    # remove 2, then 3, then 4, then 1 (the other tie order would give 10, 8, 4, 1, 0)
    assert scores[0].tolist() == pytest.approx([10, 8, 5, 1, 0])


def test_insertion_deletion_auc_by_hand() -> None:
    # insertion onto a canvas of ones: 4, 5, 7, 10, 10 -> 0.25 * (2 + 5 + 7 + 10 + 5) = 7.25
    # deletion to zeros: 10, 8, 5, 1, 0 -> 0.25 * (5 + 8 + 5 + 1 + 0) = 4.75
    insertion, deletion = insertion_deletion_auc(
        SUM,
        X,
        CLASS0[:1],
        E_TIE,
        steps=4,
        score="logit",
        insertion_substrate=torch.ones_like(X),
        batch_size=3,
    )
    assert insertion.item() == pytest.approx(7.25)
    assert deletion.item() == pytest.approx(4.75)


def test_causal_curve_partial_last_step_and_batching() -> None:
    # 1x5 image: steps=2 -> 3 pixels per step -> points at 0, 3/5, 5/5 of the pixels
    row = LinearScore(torch.ones(1, 1, 5))
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0, 5.0]]]]).repeat(2, 1, 1, 1)
    maps = torch.tensor([[[1.0, 0.8, 0.6, 0.4, 0.2]], [[0.2, 0.4, 0.6, 0.8, 1.0]]])
    targets = torch.zeros(2, dtype=torch.long)
    fractions, scores = causal_curve(
        row, x, targets, maps, mode="deletion", steps=2, score="logit", batch_size=2
    )
    assert fractions.tolist() == pytest.approx([0.0, 0.6, 1.0])
    # sample 0 loses 1+2+3 first, sample 1 loses 5+4+3 first
    assert scores.tolist() == [pytest.approx([15, 9, 0]), pytest.approx([15, 3, 0])]
    _, deletion = insertion_deletion_auc(row, x, targets, maps, steps=2, score="logit")
    # 0.6 * (15 + 9) / 2 + 0.4 * 9 / 2 = 9.0 ; 0.6 * (15 + 3) / 2 + 0.4 * 3 / 2 = 6.0
    assert deletion.tolist() == pytest.approx([9.0, 6.0])


def test_blur_is_a_normalised_gaussian() -> None:
    constant = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(blur(constant), constant)
    delta = torch.zeros(1, 1, 7, 7)
    delta[0, 0, 3, 3] = 1.0
    out = blur(delta, kernel_size=3, sigma=1.0)[0, 0]
    total = 1 + 2 * math.exp(-0.5)
    assert out[3, 3].item() == pytest.approx(1 / total**2)
    assert out[3, 4].item() == pytest.approx(math.exp(-0.5) / total**2)
    assert out[0, 0].item() == 0.0
    with pytest.raises(SiseError, match="odd"):
        blur(delta, kernel_size=4)
