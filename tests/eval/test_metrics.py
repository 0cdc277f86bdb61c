"""Metrics checked against values worked out by hand on tiny maps, boxes and models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.eval import (
    average_drop,
    bbox_score,
    blur,
    causal_curve,
    drop_and_increase,
    energy_pointing_game,
    increase_in_confidence,
    insertion_deletion_auc,
    miou,
    pointing_game_accuracy,
    pointing_game_hits,
    rank_average,
    sanity_check,
    scaled_tolerance,
    spearman,
)

# A 4x4 map with a clear top 4: two 1s, two 0.5s.
MAP = torch.tensor(
    [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.5, 0.0],
        [0.0, 0.5, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def box(rows: slice, cols: slice, size: tuple[int, int] = (4, 4)) -> Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[rows, cols] = True
    return mask


CENTRE = box(slice(1, 3), slice(1, 3))  # 2x2 box in the middle
CORNER_PIXEL = box(slice(3, 4), slice(3, 4))  # 1-pixel box touching two borders


# --------------------------------------------------------------------------------------------
# EBPG


def test_ebpg_by_hand() -> None:
    maps = torch.stack([MAP, MAP, torch.zeros(4, 4)])
    gt = torch.stack([CENTRE, CORNER_PIXEL, CENTRE])
    # energy 3; inside the centre box 1 + 0.5 + 0.5 = 2; on the corner pixel 1; empty map 0
    expected = torch.tensor([200 / 3, 100 / 3, 0.0])
    assert torch.allclose(energy_pointing_game(maps, gt), expected, atol=1e-4)


def test_ebpg_rejects_negative_maps_and_empty_boxes() -> None:
    with pytest.raises(SiseError, match="non-negative"):
        energy_pointing_game(-MAP[None], CENTRE[None])
    with pytest.raises(SiseError, match=r"sample\(s\) \[1\]"):
        energy_pointing_game(
            torch.stack([MAP, MAP]), torch.stack([CENTRE, torch.zeros(4, 4, dtype=torch.bool)])
        )
    with pytest.raises(SiseError, match="shape"):
        energy_pointing_game(MAP[None], CENTRE[None, :3])
    with pytest.raises(SiseError, match="bool"):
        energy_pointing_game(MAP[None], CENTRE[None].float())


# --------------------------------------------------------------------------------------------
# Bbox score


def test_bbox_without_ties() -> None:
    # N = 4: top 4 = the two 1s and the two 0.5s; 3 of them are in the centre box
    assert bbox_score(MAP[None], CENTRE[None]).item() == pytest.approx(75.0)
    # N = 1: the single top pixel is ambiguous (two 1s) -> half credit for the corner
    assert bbox_score(MAP[None], CORNER_PIXEL[None]).item() == pytest.approx(50.0)


def test_bbox_ties_share_places_fractionally() -> None:
    tied = torch.zeros(4, 4)
    tied[0] = torch.tensor([0.9, 0.5, 0.5, 0.5])
    tied[1, 0] = 0.5
    top_left = box(slice(0, 2), slice(0, 2))  # N = 4, touches the top and left borders
    # 0.9 is in; four 0.5s share the 3 places left (3/4 each); two of them lie in the box
    assert bbox_score(tied[None], top_left[None]).item() == pytest.approx(100 * 2.5 / 4)


def test_bbox_of_constant_map_is_chance_level() -> None:
    maps = torch.zeros(2, 4, 4)
    gt = torch.stack([CENTRE, CORNER_PIXEL])
    assert torch.allclose(bbox_score(maps, gt), torch.tensor([25.0, 6.25]))


# --------------------------------------------------------------------------------------------
# mIoU


def test_miou_by_hand() -> None:
    # K = 4: the top 4 holds 3 of the 4 box pixels -> 3 / (4 + 4 - 3)
    assert miou(MAP[None], CENTRE[None], top_fraction=0.25).item() == pytest.approx(0.6)
    # K = round(3.2) = 3: one 1 in the box, the other out, the two 0.5s (both in the box)
    # share the last place -> I = 1 + 0.5 + 0.5 = 2, IoU = 2 / (3 + 4 - 2)
    assert miou(MAP[None], CENTRE[None]).item() == pytest.approx(0.4)
    # a constant map keeps 4 pixels' worth uniformly: I = 4 * 4/16 = 1 -> 1 / 7
    assert miou(torch.zeros(1, 4, 4), CENTRE[None], 0.25).item() == pytest.approx(1 / 7)


def test_miou_rejects_bad_fraction() -> None:
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(SiseError, match="top_fraction"):
            miou(MAP[None], CENTRE[None], top_fraction=bad)


# --------------------------------------------------------------------------------------------
# Pointing game


def test_pointing_game_distance_rule() -> None:
    peak = torch.zeros(6, 6)
    peak[0, 5] = 1.0
    target = box(slice(3, 4), slice(5, 6), (6, 6))  # 3 px below the peak
    maps, gt = peak[None].repeat(3, 1, 1), target[None].repeat(3, 1, 1)
    hits = pointing_game_hits(maps, gt, tolerance=torch.tensor([3.0, 3.01, 0.0]))
    # TorchRay accepts distance < tolerance: 3 is not < 3
    assert hits.tolist() == [False, True, False]
    inside = pointing_game_hits(peak[None], box(slice(0, 1), slice(4, 6), (6, 6))[None], 0.0)
    assert inside.tolist() == [True]


def test_pointing_game_ties_and_constant_maps() -> None:
    two_peaks = torch.zeros(6, 6)
    two_peaks[0, 0] = two_peaks[5, 5] = 1.0
    far_corner = box(slice(5, 6), slice(5, 6), (6, 6))
    near_corner = box(slice(0, 1), slice(0, 1), (6, 6))
    maps = torch.stack([two_peaks, two_peaks, torch.zeros(6, 6)])
    gt = torch.stack([far_corner, near_corner, torch.ones(6, 6, dtype=torch.bool)])
    # the first maximum in row-major order (0, 0) is the point; a constant map always misses
    assert pointing_game_hits(maps, gt, tolerance=1.0).tolist() == [False, True, False]


def test_scaled_tolerance_and_accuracy() -> None:
    # VOC-sized 500x375 image evaluated at 224x224
    expected = 15 * math.sqrt((224 / 500) * (224 / 375))
    assert scaled_tolerance((500, 375), (224, 224)) == pytest.approx(expected)
    assert scaled_tolerance((100, 100), (200, 200), tolerance=10) == pytest.approx(20.0)
    hits = torch.tensor([True, False, True, True, False])
    classes = torch.tensor([0, 0, 1, 2, 2])
    # per class 1/2, 1, 1/2 -> 2/3 (the per-pair mean would be 60 %)
    assert pointing_game_accuracy(hits, classes) == pytest.approx(200 / 3)


# --------------------------------------------------------------------------------------------
# model-truth metrics on a model whose score is a known linear function of the input


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


# --------------------------------------------------------------------------------------------
# rank correlation and the sanity check


def test_rank_average_and_spearman_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (5, 30), generator=generator).float()  # many ties
    b = torch.randint(0, 4, (5, 30), generator=generator).float()
    b[0] = a[0] * 2 + 1  # a monotone copy: rho exactly 1
    expected_ranks = np.stack([stats.rankdata(row) for row in a.numpy()])
    assert np.allclose(rank_average(a).numpy(), expected_ranks)
    expected = [stats.spearmanr(x, y).statistic for x, y in zip(a.numpy(), b.numpy(), strict=True)]
    got = spearman(a, b)
    assert got.tolist() == pytest.approx(expected, abs=1e-12)
    assert got[0].item() == pytest.approx(1.0)


def test_spearman_of_constant_row_is_zero() -> None:
    a = torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert spearman(a, b).tolist() == [0.0, -1.0]


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
