"""Map post-processing shared by every method: resizing, min-max normalisation, Otsu's threshold,
and the package's one Gaussian blur."""

from __future__ import annotations

import math
from typing import Literal, get_args

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


#: How :func:`gaussian_blur` extends an image beyond its border.
BlurPadding = Literal["replicate", "zeros", "symmetric"]


def gaussian_blur(
    images: Tensor,
    sigma: float | tuple[float, float],
    kernel_size: int | None = None,
    *,
    padding: BlurPadding = "replicate",
    truncate: float = 3.0,
) -> Tensor:
    """Gaussian blur of each channel of (N, C, H, W) images: the package's one blur.

    The kernel is the sampled, normalised Gaussian ``g(t) ∝ exp(−t² / 2σ²)`` for integer offsets
    ``|t| <= kernel_size // 2``, computed in the images' dtype and applied separably (down the
    columns, then along the rows: 2k instead of k² products per pixel). ``padding`` says what lies
    beyond the border:

    * ``"replicate"`` (default): the edge pixels repeated, which keeps a constant image constant;
    * ``"zeros"``: zero (for normalised inputs, about the dataset's mean colour), so the border
      darkens towards it, as TorchRay's ``imsmooth``;
    * ``"symmetric"``: the half-sample symmetric (Neumann, "no flux") extension ``… b a | a b c …
      | c b …``. The blur matrix is then symmetric with unit row sums, hence unit column sums: the
      blur conserves each map's total, which zero padding would leak and ``reflect`` would skew.

    Each works for a kernel larger than the image.

    Every blur of the package is this one: the insertion metric's canvas (RISE's 11×11 kernel,
    σ = 5), the levels of Extremal Perturbation's blur pyramid and its masks' smoothing (zero
    padding, ±4σ), and the smoothing of SISE's fused map (symmetric, ±4σ, σ a fraction of each
    side).

    Args:
        images: (N, C, H, W) images.
        sigma: standard deviation in pixels, >= 0, or ``(σ_y, σ_x)``, one per axis; 0 leaves the
            images (or that axis) unchanged.
        kernel_size: odd kernel width in pixels; default ``2·ceil(truncate·σ) + 1``.
        padding: ``"replicate"``, ``"zeros"`` or ``"symmetric"``, see above.
        truncate: the default kernel's radius in σ (3: ±3σ, which holds 99.7% of the mass).

    Returns:
        (N, C, H, W) blurred images, in the images' dtype.
    """
    sigmas = (sigma, sigma) if isinstance(sigma, int | float) else tuple(sigma)
    if len(sigmas) != 2 or not all(math.isfinite(s) and s >= 0 for s in sigmas):
        raise SiseError(f"the blur's sigma must be a finite number >= 0, got {sigma}")
    if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
        raise SiseError(f"the blur's kernel_size must be odd and >= 1, got {kernel_size}")
    if not math.isfinite(truncate) or truncate <= 0:
        raise SiseError(f"the blur's truncate must be a finite number > 0, got {truncate}")
    if padding not in get_args(BlurPadding):
        raise SiseError(
            f"unknown blur padding {padding!r}: use 'replicate', 'zeros' or 'symmetric'"
        )
    blurred = images
    for dim, axis_sigma in ((2, sigmas[0]), (3, sigmas[1])):
        if axis_sigma == 0:
            continue
        size = kernel_size if kernel_size is not None else 2 * math.ceil(truncate * axis_sigma) + 1
        radius = size // 2
        offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
        line = torch.exp(-(offsets**2) / (2 * axis_sigma**2))
        blurred = _blur_axis(blurred, line / line.sum(), dim, padding)
    return blurred


def _blur_axis(images: Tensor, line: Tensor, dim: int, padding: BlurPadding) -> Tensor:
    """Convolve each channel of (N, C, H, W) images with the odd kernel ``line`` along ``dim``
    (2: down the columns, 3: along the rows), extended beyond the border by ``padding``."""
    radius = line.numel() // 2
    channels = images.shape[1]
    shape = (channels, 1, -1, 1) if dim == 2 else (channels, 1, 1, -1)
    if padding == "symmetric":
        length = images.shape[dim]
        # The index of each padded position, folded back into the image by mirroring at the
        # half-sample points -1/2 and length - 1/2 (period 2·length): any radius works.
        index = torch.arange(-radius, length + radius, device=images.device) % (2 * length)
        index = torch.where(index < length, index, 2 * length - 1 - index)
        padded = images.index_select(dim, index)
    else:
        pad = (0, 0, radius, radius) if dim == 2 else (radius, radius, 0, 0)
        mode = "replicate" if padding == "replicate" else "constant"
        padded = F.pad(images, pad, mode=mode)
    return F.conv2d(padded, line.view(1, 1, *shape[2:]).expand(*shape), groups=channels)


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
