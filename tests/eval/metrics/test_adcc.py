"""ADCC (Poppi et al. 2021): its parts and their harmonic mean on hand values."""

from __future__ import annotations

import pytest
import torch

from sise.errors import SiseError
from sise.eval.metrics import adcc, coherency, complexity, pearson


def test_harmonic_mean_of_the_three_parts_by_hand():
    # 3 / (1/0.8 + 1/(1 - 0.25) + 1/(1 - 0.4)) = 3 / (1.25 + 4/3 + 5/3) = 3 / 4.25
    value = adcc(torch.tensor([0.8]), torch.tensor([0.25]), torch.tensor([0.4]))
    assert float(value[0]) == pytest.approx(3 / 4.25, abs=1e-7)
    # all three perfect: 1; a part at its worst: 0 (the limit), not a division by zero
    perfect = adcc(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0]))
    assert perfect.tolist() == [1.0, 0.0]


def test_the_harmonic_mean_sits_below_the_arithmetic_mean():
    value = float(adcc(torch.tensor([0.9]), torch.tensor([0.7]), torch.tensor([0.1]))[0])
    # parts 0.9, 0.3, 0.9: harmonic 3 / (10/9 + 10/3 + 10/9) = 0.54
    assert value == pytest.approx(0.54, abs=1e-7)
    assert value < (0.9 + 0.3 + 0.9) / 3


def test_coherency_rescales_pearson_to_unit_range():
    a = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    assert float(coherency(a, 2 * a + 1)[0]) == pytest.approx(1.0)
    assert float(coherency(a, 3 - a)[0]) == pytest.approx(0.0)
    # a constant map: ρ undefined, counted 0, coherency 1/2
    assert float(coherency(a, torch.ones_like(a))[0]) == pytest.approx(0.5)
    # [0, 1, 2, 3] against [0, 1, 3, 2]: ρ = 0.8
    b = torch.tensor([[[0.0, 1.0], [3.0, 2.0]]])
    assert float(pearson(a, b)[0]) == pytest.approx(0.8)
    assert float(coherency(a, b)[0]) == pytest.approx(0.9)


def test_complexity_is_the_maps_mean():
    maps = torch.tensor([[[0.0, 1.0], [0.5, 0.5]], [[0.0, 0.0], [0.0, 0.2]]])
    assert complexity(maps).tolist() == pytest.approx([0.5, 0.05])


def test_parts_out_of_range_are_refused():
    with pytest.raises(SiseError, match="ADCC's parts"):
        adcc(torch.tensor([1.2]), torch.tensor([0.1]), torch.tensor([0.1]))
