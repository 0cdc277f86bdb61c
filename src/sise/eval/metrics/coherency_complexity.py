"""ADCC: Average Drop, Coherency, Complexity (Poppi et al., "Revisiting the Evaluation of Class
Activation Mapping for Explainability: A Novel Metric and Experimental Analysis", CVPR
Workshops 2021; reference code https://github.com/aimagelab/ADCC).

For an image ``x``, its explained class ``c`` and the map ``E = L^c(x)`` in [0, 1] at the input
size (the explanation map ``x ⊙ E`` multiplies the model-ready input, as the reference code
multiplies the normalised tensor: a removed pixel takes the normalisation mean, the ``zero``
baseline of Drop%):

* **Average Drop** ``AD = max(0, Y − O) / Y`` with ``Y = Ψ_c(x)`` and ``O = Ψ_c(x ⊙ E)``
  (:func:`sise.eval.metrics.drop_and_increase`'s drop, here as a fraction);
* **Coherency** ``= (1 + ρ(E, E')) / 2``, ``ρ`` the Pearson correlation of the map ``E`` and the
  map ``E' = L^c(x ⊙ E)`` that the same method makes of the explanation map (a coherent map
  explains its own cut-out the same way); the reference code rescales ρ from [−1, 1] to [0, 1]
  this way. Where either map is constant ρ is undefined (scipy returns NaN): 0 here, i.e.
  coherency 1/2, as :func:`sise.eval.metrics.spearman` does;
* **Complexity** ``= ‖E‖₁ / (H·W)``, the mean of the map (a sparse map is simple);
* **ADCC** ``= 3 · (1/Coherency + 1/(1 − Complexity) + 1/(1 − AD))⁻¹``, their harmonic mean
  (0 where any of the three is 0: the limit). Higher is better; the reference code's
  ``adcc.py`` writes ``3 * (...)`` for ``3 / (...)``, a slip the paper's equation does not have.

ADCC is computed per image and averaged (the paper's Eq. 7 is per image); OpenVINO XAI's
``ADCC.evaluate`` instead takes the harmonic mean of the three dataset means, which differs a
little (a mean of harmonic means is at most the harmonic mean of means).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sise.errors import SiseError
from sise.eval.metrics.checks import check_maps

__all__ = ["adcc", "coherency", "complexity", "pearson"]


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """(N,) Pearson correlation of matching rows of two (N, ...) tensors; 0 where either row is
    constant (undefined there)."""
    if a.shape != b.shape or a.ndim < 2:
        raise SiseError(
            f"pearson needs two (N, ...) tensors of one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    da = a.flatten(1).double()
    db = b.flatten(1).double()
    da = da - da.mean(dim=1, keepdim=True)
    db = db - db.mean(dim=1, keepdim=True)
    norm = (da.square().sum(dim=1) * db.square().sum(dim=1)).sqrt()
    dot = (da * db).sum(dim=1)
    return torch.where(norm > 0, dot / norm.clamp_min(1e-300), torch.zeros_like(dot))


def coherency(maps: Tensor, maps_again: Tensor) -> Tensor:
    """(N,) ``(1 + ρ(E, E')) / 2`` (see the module docstring).

    Args:
        maps: (N, H, W) maps ``E`` of the images.
        maps_again: (N, H, W) maps ``E'`` of the explanation maps ``x ⊙ E``, by the same method
            for the same classes.
    """
    check_maps(maps)
    check_maps(maps_again, "maps_again")
    return (1 + pearson(maps, maps_again)) / 2


def complexity(maps: Tensor) -> Tensor:
    """(N,) ``‖E‖₁ / (H·W)`` of maps in [0, 1] (the reference code's ``abs(E).sum() / (H·W)``)."""
    check_maps(maps)
    return maps.double().abs().flatten(1).mean(dim=1)


def adcc(coherency: Tensor, complexity: Tensor, average_drop: Tensor) -> Tensor:
    """(N,) ``3 / (1/coherency + 1/(1 − complexity) + 1/(1 − average_drop))``, all in [0, 1].

    Args:
        coherency: (N,) from :func:`coherency`.
        complexity: (N,) from :func:`complexity`.
        average_drop: (N,) drops as fractions in [0, 1] (Drop%'s per-sample drops / 100).

    Returns:
        (N,) float64 ADCC in [0, 1]; 0 where a part is at its worst (coherency 0, complexity 1
        or a drop of 1), the limit of the harmonic mean.
    """
    parts = torch.stack(
        [coherency.double(), 1 - complexity.double(), 1 - average_drop.double()], dim=0
    )
    if bool(((parts < -1e-9) | (parts > 1 + 1e-9)).any()):
        raise SiseError("ADCC's parts must lie in [0, 1]: coherency, complexity and the drop")
    worst = (parts <= 0).any(dim=0)
    harmonic = 3 / (1 / parts.clamp_min(1e-300)).sum(dim=0)
    return torch.where(worst, torch.zeros_like(harmonic), harmonic)
