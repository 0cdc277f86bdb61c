"""Ground-truth metrics checked against values worked out by hand on tiny maps and boxes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from sise.errors import SiseError
from sise.eval import (
    bbox_score,
    energy_pointing_game,
    miou,
    pointing_game_accuracy,
    pointing_game_hits,
    scaled_tolerance,
)
from sise.eval.metrics import distractor_energy

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


def test_distractor_energy_by_hand() -> None:
    # E on the diagonal (1, 2, 3, 4: total 10); G = rows 0-1 x cols 0-1; D = rows 1-2 x cols 1-2.
    # D \ G = {(1, 2), (2, 1), (2, 2)}: energy 0 + 0 + 3 = 3, so 100 * 3 / 10 = 30.
    # (1, 1) holds 2 but lies in G too: not counted against the map.
    energy = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    own = torch.zeros(4, 4, dtype=torch.bool)
    own[0:2, 0:2] = True
    others = torch.zeros(4, 4, dtype=torch.bool)
    others[1:3, 1:3] = True
    maps = torch.stack([energy, energy, torch.zeros(4, 4)])
    gts = torch.stack([own, own, own])
    distractors = torch.stack([others, torch.zeros_like(others), others])
    values = distractor_energy(maps, gts, distractors)
    assert values[0].item() == pytest.approx(30.0, abs=1e-5)
    assert math.isnan(values[1].item())  # no other object: nothing to be distracted by
    assert values[2].item() == 0.0  # a map without energy puts none on the others
    with pytest.raises(SiseError, match="distractor_mask must be a bool tensor"):
        distractor_energy(maps, gts, distractors.float())
    with pytest.raises(SiseError, match="non-negative"):
        distractor_energy(-maps, gts, distractors)
