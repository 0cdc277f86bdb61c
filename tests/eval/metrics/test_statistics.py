"""Rank correlation and standard errors, by hand and against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sise.errors import SiseError
from sise.eval import (
    rank_average,
    spearman,
)
from sise.eval.metrics import standard_error


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


def test_standard_error_by_hand_and_against_scipy() -> None:
    from scipy import stats

    terms = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # s = sqrt(((1.5² + 0.5²) * 2) / 3) = sqrt(5 / 3); s / sqrt(4)
    assert standard_error(terms) == pytest.approx(math.sqrt(5 / 3) / 2)
    values = torch.randn(37, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert standard_error(values) == pytest.approx(float(stats.sem(values.numpy())))
    # per class, then over classes: class 0 (0, 100): s² = 5000, n 2; class 1 (100, 100, 0):
    # s² = 10000 / 3, n 3; sqrt(5000 / 2 + 10000 / 9) / 2
    hits = torch.tensor([0.0, 100.0, 100.0, 100.0, 0.0])
    classes = torch.tensor([7, 7, 3, 3, 3])
    assert standard_error(hits, classes) == pytest.approx(math.sqrt(2500 + 10000 / 9) / 2)
    assert math.isnan(standard_error(torch.tensor([5.0])))
    assert math.isnan(standard_error(hits, torch.tensor([7, 7, 3, 3, 4])))  # class 4: one pair
    with pytest.raises(SiseError, match="1-D"):
        standard_error(hits, classes[:3])
