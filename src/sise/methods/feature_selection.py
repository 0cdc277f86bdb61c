"""SISE's feature-map selection: which maps of a layer become attribution masks (SISE's Eq. 3 and
Ada-SISE's adaptive threshold)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from sise.core.postprocess import otsu_threshold
from sise.errors import check_choice

Selection = Literal["fixed", "adaptive"]


def select_feature_maps(
    gradients: Tensor, mu: float = 0.0, selection: Selection = "fixed"
) -> Tensor:
    """Which feature maps of one layer to keep, per sample, batched on the device.

    ``α_k = Σ_λ ∂Ψ_c/∂A_k(λ)`` and ``β = max_k α_k`` for each sample.

    * ``"fixed"`` (SISE, Sattarzadeh et al. 2021, Eq. 3): keep ``α_k > μ·β``.
    * ``"adaptive"`` (Ada-SISE, Sudhakar et al. 2021): among the positive-gradient maps, keep those
      whose ``α_k / β`` exceeds Otsu's threshold of those values; if Otsu has nothing to split
      (all those values equal) keep them all.

    Every sample is done at once: Otsu's threshold of each sample's positive values is one batched
    :func:`sise.core.postprocess.otsu_threshold` call with a validity mask, so there is no per-sample
    loop and nothing waits on the host (it runs on the meta device). Each sample's result is
    exactly what a call on that sample alone gives.

    Args:
        gradients: (N, K, h, w) gradients ``∂Ψ_c/∂A`` of the layer's K maps.
        mu: with ``"fixed"`` selection, keep ``α_k > μ·β`` (μ = 0 keeps the positive-gradient
            maps). The seed text prints ``<``; that is a typo, as its own prose says.
        selection: ``"fixed"`` (SISE) or ``"adaptive"`` (Ada-SISE).

    Returns:
        (N, K) boolean mask of kept maps.
    """
    alpha = gradients.sum(dim=(2, 3))
    beta = alpha.amax(dim=1, keepdim=True)
    if selection == "fixed":
        return alpha > mu * beta
    check_choice("selection", selection, get_args(Selection))
    positive = alpha > 0
    normalised = alpha / beta.clamp_min(torch.finfo(alpha.dtype).tiny)
    # NaN for a sample without a positive map: nothing is kept there either way
    threshold = otsu_threshold(normalised, valid=positive).to(normalised.dtype)
    chosen = positive & (normalised > threshold[:, None])
    return torch.where(chosen.any(dim=1, keepdim=True), chosen, positive)


def select_layers_maps(
    gradients: Sequence[Tensor], mu: float = 0.0, selection: Selection = "fixed"
) -> list[Tensor]:
    """:func:`select_feature_maps` of several layers in one call, with the same result.

    Each layer's ``α`` is padded with −∞ to the widest layer's K (a padded map is never positive,
    never above ``μ·β``, and never enters Otsu's threshold), so Ada-SISE's thresholds of every
    layer and sample are one batched :func:`sise.core.postprocess.otsu_threshold` call instead of one
    per layer: fewer small operations before the masked forwards, which a GPU waits on.

    Args:
        gradients: per layer, (N, K_l, h_l, w_l) gradients ``∂Ψ_c/∂A``.
        mu, selection: as for :func:`select_feature_maps`.

    Returns:
        per layer, the (N, K_l) boolean mask of kept maps.
    """
    alphas = [gradient.float().sum(dim=(2, 3)) for gradient in gradients]
    if not alphas:
        return []
    n = alphas[0].shape[0]
    width = max(alpha.shape[1] for alpha in alphas)
    padded = torch.cat(
        [F.pad(alpha, (0, width - alpha.shape[1]), value=-math.inf) for alpha in alphas]
    )
    keep = select_feature_maps(padded[:, :, None, None], mu, selection)
    return [part[:, : alpha.shape[1]] for part, alpha in zip(keep.split(n), alphas, strict=True)]
