"""The smoothing of SISE's fused map (:mod:`sise.core.smoothing`): a Gaussian of the stated σ
that conserves each map's total."""

from __future__ import annotations

import math

import pytest
import torch

from sise.core.smoothing import gaussian_smooth


def test_impulse_spreads_to_a_gaussian_of_the_stated_sigma_and_energy_is_conserved():
    size, s = 201, 0.05
    impulse = torch.zeros(1, size, size, dtype=torch.float64)
    impulse[0, 100, 100] = 1.0
    blurred = gaussian_smooth(impulse, s)[0]
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-12)
    offsets = torch.arange(size, dtype=torch.float64) - 100
    variance_x = float((blurred.sum(0) * offsets**2).sum())
    variance_y = float((blurred.sum(1) * offsets**2).sum())
    assert math.sqrt(variance_x) == pytest.approx(s * size, rel=2e-3)
    assert math.sqrt(variance_y) == pytest.approx(s * size, rel=2e-3)
    # Total conserved at the borders too (Neumann boundary), and a constant stays constant.
    generator = torch.Generator().manual_seed(1)
    maps = torch.rand(3, 37, 53, generator=generator, dtype=torch.float64)
    for smoothing in (0.01, 0.1, 0.25):
        out = gaussian_smooth(maps, smoothing)
        torch.testing.assert_close(out.sum(dim=(1, 2)), maps.sum(dim=(1, 2)), atol=1e-9, rtol=0)
    flat = torch.full((1, 20, 30), 0.7, dtype=torch.float64)
    torch.testing.assert_close(gaussian_smooth(flat, 0.2), flat)
