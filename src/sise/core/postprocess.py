"""Map post-processing shared by every method: resizing, min-max normalisation, Otsu's threshold,
and the package's one Gaussian blur."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sise.errors import SiseError


def minmax_normalize(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each map of a (..., H, W) stack to [0, 1]: ``(m - min m) / (max m - min m)``.

    A constant map (max - min <= eps) becomes all zeros: it carries no location information,
    and dividing by ~0 would turn it into noise or NaN.
    """
    flat = maps.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - low
    scaled = torch.where(span > eps, (flat - low) / span.clamp_min(eps), torch.zeros_like(flat))
    return scaled.view_as(maps)


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (``align_corners=False``) of a (N, h, w) or (N, C, h, w) stack to ``size``."""
    if maps.ndim == 3:
        return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def gaussian_blur(images: Tensor, sigma: float, kernel_size: int | None = None) -> Tensor:
    """Gaussian blur of each channel of (N, C, H, W) images: the package's one blur.

    The kernel is the sampled, normalised Gaussian ``g(t) ∝ exp(−t² / 2σ²)`` for integer offsets
    ``|t| <= kernel_size // 2``, applied separably (rows, then columns: 2k instead of k² products
    per pixel). Borders are padded by replicating the edge pixels, which keeps a constant image
    constant and works for a kernel larger than the image.

    Every blur of the package is this one: the insertion metric's canvas (RISE's 11×11 kernel,
    σ = 5), the ``"blur"`` masking baseline (σ = 10) and the levels of Extremal Perturbation's
    blur pyramid (σ from 0 to σ_max).

    Args:
        images: (N, C, H, W) images.
        sigma: standard deviation in pixels, >= 0; 0 returns the images unchanged.
        kernel_size: odd kernel width in pixels; default ``2·ceil(3σ) + 1`` (±3σ, which holds
            99.7% of the Gaussian's mass).

    Returns:
        (N, C, H, W) blurred images, in the images' dtype.
    """
    if not math.isfinite(sigma) or sigma < 0:
        raise SiseError(f"the blur's sigma must be a finite number >= 0, got {sigma}")
    if sigma == 0:
        return images
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise SiseError(f"the blur's kernel_size must be odd and >= 1, got {kernel_size}")
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    line = line / line.sum()
    c = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, line.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(rows, line.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def is_constant(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """(N,) True where a (N, h, w) map has max - min <= eps."""
    flat = maps.flatten(1)
    return (flat.amax(dim=1) - flat.amin(dim=1)) <= eps


def otsu_threshold(maps: Tensor, nbins: int = 256, valid: Tensor | None = None) -> Tensor:
    """Otsu's threshold of each map of a (N, H, W) stack, batched on the maps' device.

    Otsu (1979) picks the threshold t that maximises the between-class variance
    ``w_0(t) w_1(t) (μ_0(t) - μ_1(t))²`` of the histogram. The histogram has ``nbins`` equal bins
    over [min, max] of each map and t is a bin centre, exactly as scikit-image's
    ``threshold_otsu`` computes it (the tests compare the two). A constant map's threshold is its
    value.

    Args:
        maps: (N, H, W) stack (any trailing shape: each row of ``maps.flatten(1)`` is one set).
        nbins: histogram bins.
        valid: optional bool mask shaped like ``maps``: only the values where it is True count
            (min, max and histogram), so sets of different sizes share one batched call with the
            same result as one call per set. A row with no valid value gets NaN.

    Returns:
        (N,) thresholds, float64 for exactness, on the maps' device.
    """
    flat = maps.flatten(1).double()
    n = flat.shape[0]
    if valid is None:
        low = flat.amin(dim=1, keepdim=True)
        high = flat.amax(dim=1, keepdim=True)
        weights = torch.ones_like(flat)
    else:
        mask = valid.flatten(1)
        empty = ~mask.any(dim=1, keepdim=True)
        low = torch.where(mask, flat, torch.inf).amin(dim=1, keepdim=True).masked_fill(empty, 0)
        high = torch.where(mask, flat, -torch.inf).amax(dim=1, keepdim=True).masked_fill(empty, 0)
        # invalid values sit at the row's minimum (inside the bins) with weight 0
        flat = torch.where(mask, flat, low)
        weights = mask.to(flat.dtype)
    span = high - low
    constant = span.squeeze(1) <= 0
    safe_span = torch.where(span > 0, span, torch.ones_like(span))
    # Bin index as numpy.histogram assigns it: equal bins, the last one closed on the right.
    edges = low + safe_span * torch.linspace(0, 1, nbins + 1, device=flat.device, dtype=flat.dtype)
    index = ((flat - low) / safe_span * nbins).floor().long().clamp_(0, nbins - 1)
    # numpy corrects the float estimate against the actual edges; do the same.
    below = flat < edges.gather(1, index)
    index = index - below.long()
    above = (flat >= edges.gather(1, (index + 1).clamp_max(nbins))) & (index < nbins - 1)
    index = (index + above.long()).clamp_(0, nbins - 1)
    counts = torch.zeros(n, nbins, device=flat.device, dtype=flat.dtype)
    counts.scatter_add_(1, index, weights)
    centers = (edges[:, :-1] + edges[:, 1:]) / 2

    weight1 = counts.cumsum(1)
    weight2 = counts.flip(1).cumsum(1).flip(1)
    mass = counts * centers
    mean1 = mass.cumsum(1) / weight1.clamp_min(1e-300)
    mean2 = mass.flip(1).cumsum(1).flip(1) / weight2.clamp_min(1e-300)
    between = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    best = between.argmax(dim=1, keepdim=True)
    threshold = torch.where(constant, low.squeeze(1), centers.gather(1, best).squeeze(1))
    if valid is not None:
        threshold = threshold.masked_fill(empty.squeeze(1), torch.nan)
    return threshold
