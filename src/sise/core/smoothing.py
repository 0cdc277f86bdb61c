"""Smoothing of SISE's fused map: a Gaussian whose width is a fraction of the image size.

Why (measured on real photos, see ``benchmarks/fusion_sweep.py``): the paper's fusion multiplies
binary Otsu gates into the sum of the layer maps, so the fused map has sharp step edges and the
fine speckle of the shallow layers. A map like that, multiplied into the photo (Drop% and
Increase%, Chattopadhay et al. 2018), makes an input unlike any natural image, and the model's
score drops for that reason rather than for what the map leaves out. Smoothing the fused map
with a Gaussian of ``σ = smoothing × image size`` turns each step into a ramp and averages the
speckle away, while the map's energy stays where the gates put it, within a few σ.

The Gaussian is the heat kernel: ``G_σ ∗ F`` is the map after diffusing for time ``σ²/2``. With
the half-sample symmetric (Neumann, "no flux") boundary used here, no energy enters or leaves the
image: ``Σ_λ (G_σ ∗ F)(λ) = Σ_λ F(λ)`` exactly, and a constant map stays constant.
"""

from __future__ import annotations

from torch import Tensor

from sise.core.postprocess import gaussian_blur
from sise.errors import SiseError

#: The value chosen on real photos (docs/benchmark/faithfulness.md): on EfficientNet-Lite0 the
#: smallest σ that ties Score-CAM on Drop% and Increase% while staying first on EBPG and distractor
#: energy, confirmed on EfficientNet-Lite2 and on halves of the data. RISE stays far ahead on
#: Drop% / Increase% at every σ. On ROAD and ADCC against all eight methods
#: (docs/benchmark/road-adcc.md) no σ is near RISE on ROAD, and Grad-CAM's EBPG beats this σ on
#: Lite2 (of 0.03, 0.05 and 0.1, measured there, 0.05 is the largest that stays first).
RECOMMENDED_SMOOTHING = 0.1
#: Largest ``smoothing``: at ``σ = 0.25 × size`` the kernel's 4σ radius spans the whole image.
MAX_SMOOTHING = 0.25
#: The kernel is truncated at this many σ (the discarded tail holds 6e-5 of the mass).
TRUNCATE = 4.0


def check_smoothing(smoothing: float) -> float:
    """``smoothing`` as a float, or a :class:`SiseError` saying which values are allowed."""
    if isinstance(smoothing, bool) or not isinstance(smoothing, int | float):
        raise SiseError(
            f"smoothing must be a number (σ as a fraction of the image size), got "
            f"{type(smoothing).__name__}"
        )
    value = float(smoothing)
    if not (0.0 <= value <= MAX_SMOOTHING):
        raise SiseError(
            f"smoothing must be in [0, {MAX_SMOOTHING}] (σ as a fraction of the image size; "
            f"0 is the paper's fusion), got {smoothing}"
        )
    return value


def gaussian_smooth(maps: Tensor, smoothing: float) -> Tensor:
    """Separable Gaussian blur of a (N, H, W) stack with ``σ_y = smoothing·H``,
    ``σ_x = smoothing·W``, conserving each map's total (Neumann boundary).

    The widths are fractions of each side because the whole photo is resized to the model's
    input (no crop): a fraction of the input is the same fraction of the photo.

    A step edge becomes the ramp ``½(1 + erf(d / (σ√2)))`` at distance ``d`` from the edge,
    which rises from 10 % to 90 % over ``2·1.2816·σ ≈ 2.56 σ``.

    Args:
        maps: (N, H, W) floating-point maps.
        smoothing: ``σ`` as a fraction of the image size, in ``[0, 0.25]``; 0 returns ``maps``.

    Returns:
        (N, H, W) smoothed maps, same dtype and device.
    """
    smoothing = check_smoothing(smoothing)
    if maps.ndim != 3 or not maps.is_floating_point():
        raise SiseError(f"expected a floating (N, H, W) stack of maps, got {tuple(maps.shape)}")
    if smoothing == 0.0:
        return maps
    height, width = maps.shape[-2:]
    sigmas = (smoothing * height, smoothing * width)
    return gaussian_blur(maps[:, None], sigmas, padding="symmetric", truncate=TRUNCATE)[:, 0]
