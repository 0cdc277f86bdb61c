"""Ground-truth metrics: how well a map agrees with the boxes of the explained class (no model
needed). See :mod:`sise.eval.metrics` for the notation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sise.errors import SiseError
from sise.eval.metrics.checks import check_ground_truth, check_maps

__all__ = [
    "bbox_score",
    "distractor_energy",
    "energy_pointing_game",
    "miou",
    "pointing_game_accuracy",
    "pointing_game_hits",
    "pointing_game_hits_original",
    "scaled_tolerance",
    "top_k_membership",
]


def energy_pointing_game(maps: Tensor, boxes_mask: Tensor) -> Tensor:
    """Energy-based pointing game (EBPG) of each map.

    ``EBPG = 100 · Σ_{λ∈G} E(λ) / Σ_λ E(λ)``: the share of the map's energy that falls inside the
    ground-truth region (Wang et al., "Score-CAM", CVPR-W 2020).

    Args:
        maps: (N, H, W) non-negative maps.
        boxes_mask: (N, H, W) bool ground truth ``G``.

    Returns:
        (N,) float scores in [0, 100]. An all-zero map has no energy to place and scores 0.

    Raises:
        SiseError: for mismatched shapes, an empty ``G``, or negative map values.
    """
    check_ground_truth(maps, boxes_mask)
    if bool((maps < 0).any()):
        raise SiseError(
            "EBPG is a ratio of energies, so maps must be non-negative; "
            "normalise them with sise.core.postprocess.minmax_normalize"
        )
    flat = maps.flatten(1).double()
    inside = (flat * boxes_mask.flatten(1)).sum(dim=1)
    total = flat.sum(dim=1)
    ratio = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.zeros_like(total))
    return (100.0 * ratio).float()


def distractor_energy(maps: Tensor, gt_mask: Tensor, distractor_mask: Tensor) -> Tensor:
    """Distractor energy: the share of the map's energy on objects of *other* classes.

    ``100 · Σ_{λ∈D∖G} E(λ) / Σ_λ E(λ)``, with ``D`` the region of the image's objects of other
    classes (the union of :attr:`sise.eval.data.pairs.EvalPair.other_boxes`) and ``G`` the
    explained class's own region: energy on another object that also lies in the class's own
    boxes is not counted against the map. Lower is better. It complements EBPG
    (:func:`energy_pointing_game`), which cannot tell energy on background from energy on a
    competing object; it asks whether a class's map is drawn to the other objects in the image.
    (This project's metric, not the paper's.)

    Args:
        maps: (N, H, W) non-negative maps.
        gt_mask: (N, H, W) bool region ``G`` of the explained class.
        distractor_mask: (N, H, W) bool region ``D`` of the other classes' objects; a sample
            whose ``D`` is empty scores NaN (it has nothing to be distracted by: leave it out of
            averages).

    Returns:
        (N,) float scores in [0, 100], NaN where ``D`` is empty. An all-zero map scores 0.

    Raises:
        SiseError: for mismatched shapes or dtypes, an empty ``G``, or negative map values.
    """
    check_ground_truth(maps, gt_mask)
    if distractor_mask.shape != maps.shape or distractor_mask.dtype != torch.bool:
        raise SiseError(
            f"distractor_mask must be a bool tensor of the maps' shape {tuple(maps.shape)}, got "
            f"{distractor_mask.dtype} {tuple(distractor_mask.shape)}: rasterise it with "
            "sise.eval.data.distractor_mask"
        )
    if bool((maps < 0).any()):
        raise SiseError(
            "distractor energy is a ratio of energies, so maps must be non-negative; "
            "normalise them with sise.core.postprocess.minmax_normalize"
        )
    flat = maps.flatten(1).double()
    outside_own = distractor_mask.flatten(1) & ~gt_mask.flatten(1)
    on_others = (flat * outside_own).sum(dim=1)
    total = flat.sum(dim=1)
    ratio = torch.where(total > 0, on_others / total.clamp_min(1e-300), torch.zeros_like(total))
    has_others = distractor_mask.flatten(1).any(dim=1)
    return torch.where(has_others, 100.0 * ratio, torch.full_like(ratio, math.nan)).float()


def top_k_membership(maps: Tensor, k: Tensor) -> Tensor:
    """How much each pixel belongs to the ``k`` highest pixels of its map, ties shared fairly.

    Pixels strictly above the k-th highest value ``v`` belong fully (1). The pixels equal to ``v``
    share the remaining ``k - #{E > v}`` places equally, so each gets the fraction
    ``(k - #{E > v}) / #{E = v}``. This is the expected membership when ties are broken
    uniformly at random, so the result does not depend on where tied pixels sit in the image and
    the memberships sum to exactly ``k``.

    Args:
        maps: (N, H, W) maps.
        k: (N,) integer count per map, 1 <= k <= H·W.

    Returns:
        (N, H, W) float64 memberships in [0, 1].
    """
    flat = maps.flatten(1)
    size = flat.shape[1]
    k = k.to(device=maps.device, dtype=torch.long)
    if bool((k < 1).any()) or bool((k > size).any()):
        raise SiseError(f"k must lie in [1, {size}] (the pixel count), got {k.tolist()}")
    ordered = flat.sort(dim=1, descending=True).values
    kth = ordered.gather(1, (k - 1)[:, None])
    above = flat > kth
    tied = flat == kth
    places_left = (k - above.sum(dim=1)).double()
    share = places_left / tied.sum(dim=1).double()
    return (above.double() + tied.double() * share[:, None]).view_as(maps)


def bbox_score(maps: Tensor, gt_mask: Tensor) -> Tensor:
    """Bounding-box score (Schulz et al., "Restricting the Flow", ICLR 2020).

    With ``N = |G|``, take the N highest-valued pixels of ``E`` and report
    ``100 · |top_N(E) ∩ G| / N``.

    Ties: pixels tied at the N-th highest value share the remaining places fractionally (see
    :func:`top_k_membership`), i.e. the score is the expectation over random tie-breaking.
    It is deterministic and position-independent; a constant map scores the chance level
    ``100 · |G| / (H·W)``.

    Args:
        maps: (N, H, W) maps.
        gt_mask: (N, H, W) bool ground truth ``G``.

    Returns:
        (N,) float scores in [0, 100].
    """
    check_ground_truth(maps, gt_mask)
    area = gt_mask.flatten(1).sum(dim=1)
    member = top_k_membership(maps, area).flatten(1)
    inside = (member * gt_mask.flatten(1)).sum(dim=1)
    return (100.0 * inside / area.double()).float()


def miou(maps: Tensor, gt_mask: Tensor, top_fraction: float = 0.2) -> Tensor:
    """IoU between ``G`` and the map binarised to its top ``top_fraction`` of pixels.

    ``K = round(top_fraction · H · W)`` (at least 1) pixels are kept;
    ``IoU = |B ∩ G| / |B ∪ G| = I / (K + |G| - I)`` with ``I = |B ∩ G|``. The paper does not
    state its binarisation; the top 20 % is this project's default (SPEC section 3), so print
    ``top_fraction`` with every result. Averaging over samples gives the mIoU.

    Ties: pixels tied at the K-th value count fractionally in ``I`` (see
    :func:`top_k_membership`), so the kept set always has exactly K pixels' worth and the
    result does not depend on where tied pixels sit. This matters for sparse maps with many
    exact zeros, which a plain ``E >= v`` threshold would blow up to the whole image.

    Args:
        maps: (N, H, W) maps.
        gt_mask: (N, H, W) bool ground truth ``G``.
        top_fraction: share of pixels kept, in (0, 1].

    Returns:
        (N,) IoU values in [0, 1] (not percentages; multiply by 100 to print).
    """
    check_ground_truth(maps, gt_mask)
    if not 0.0 < top_fraction <= 1.0:
        raise SiseError(f"top_fraction must lie in (0, 1], got {top_fraction}")
    n, h, w = maps.shape
    kept = min(h * w, max(1, round(top_fraction * h * w)))
    k = torch.full((n,), kept, dtype=torch.long, device=maps.device)
    member = top_k_membership(maps, k).flatten(1)
    gt = gt_mask.flatten(1)
    intersection = (member * gt).sum(dim=1)
    union = kept + gt.sum(dim=1).double() - intersection
    return (intersection / union).float()


def scaled_tolerance(
    original_hw: tuple[int, int], eval_hw: tuple[int, int], tolerance: float = 15.0
) -> float:
    """Pointing-game tolerance on a resized grid equivalent to ``tolerance`` px on the original.

    TorchRay's protocol uses 15 px on the *original* image. When maps and ground truth are
    evaluated at another resolution (e.g. the 224×224 model input), the same physical margin
    is ``tolerance · s`` pixels with ``s = sqrt(s_y · s_x)``, ``s_y = eval_h / original_h``,
    ``s_x = eval_w / original_w`` (the geometric mean keeps the accepted area the same when the
    resize is not uniform).

    Args:
        original_hw: (height, width) of the original image.
        eval_hw: (height, width) of the evaluation grid.
        tolerance: tolerance in original-image pixels.

    Returns:
        The tolerance in evaluation-grid pixels.
    """
    (oh, ow), (eh, ew) = original_hw, eval_hw
    if min(oh, ow, eh, ew) <= 0:
        raise SiseError(f"image sizes must be positive, got {original_hw} and {eval_hw}")
    return tolerance * math.sqrt((eh / oh) * (ew / ow))


def pointing_game_hits(maps: Tensor, gt_mask: Tensor, tolerance: float | Tensor = 15.0) -> Tensor:
    """Pointing-game hit of each map, TorchRay protocol (Zhang et al., "Excitation Backprop").

    The point is the arg-max of ``E``. It is a hit if some ground-truth pixel lies at Euclidean
    distance ``< tolerance`` from it (TorchRay's acceptance disc, in pixels of the grid given
    here), or if the point itself lies in ``G`` (so ``tolerance=0`` means "inside G").

    Decisions:
        * Ties for the maximum: the first maximum in row-major order (as ``torch.argmax`` and
          TorchRay).
        * A constant map (e.g. all zeros) points nowhere and counts as a miss.
        * TorchRay's 15 px are meant on the original image; at another resolution pass
          :func:`scaled_tolerance` (a float, or a (N,) tensor for per-sample values).

    Args:
        maps: (N, H, W) maps.
        gt_mask: (N, H, W) bool ground truth ``G``.
        tolerance: acceptance radius in pixels, a float or a (N,) tensor.

    Returns:
        (N,) bool hits.
    """
    check_ground_truth(maps, gt_mask)
    n, h, w = maps.shape
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1)
    py = torch.div(peak, w, rounding_mode="floor").double()
    px = (peak % w).double()
    radius = torch.as_tensor(tolerance, dtype=torch.float64, device=maps.device).expand(n)
    if bool((radius < 0).any()):
        raise SiseError(f"tolerance must be >= 0, got {tolerance}")
    ys = torch.arange(h, device=maps.device, dtype=torch.float64)
    xs = torch.arange(w, device=maps.device, dtype=torch.float64)
    distance2 = (ys[None, :, None] - py[:, None, None]) ** 2 + (
        xs[None, None, :] - px[:, None, None]
    ) ** 2
    near = (distance2 < radius[:, None, None] ** 2) & gt_mask
    on_target = gt_mask.flatten(1).gather(1, peak[:, None]).squeeze(1)
    hit = near.flatten(1).any(dim=1) | on_target
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    return hit & ~constant


def pointing_game_hits_original(
    maps: Tensor, regions: Sequence[Tensor], tolerance: float = 15.0
) -> Tensor:
    """Pointing-game hit of each map as TorchRay's benchmark scores it, on the original image
    (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016; TorchRay's
    ``PointingGameBenchmark`` and its ``examples/attribution_benchmark.py``).

    Each map is resized to its region's size, the original image's (bilinear,
    ``align_corners=False``, as TorchRay resizes a saliency map); the point ``(x, y)`` is its
    first maximum in row-major order (``argmax``). It is a hit when some pixel ``(i, j)`` of the
    region lies strictly inside the tolerance disc: ``(i - y)² + (j - x)² < tolerance²``.

    Unlike :func:`pointing_game_hits` this follows TorchRay to the letter: the tolerance is in
    original pixels, a constant map points at its first pixel (the top-left corner, which may
    hit), and ``tolerance=0`` accepts nothing.

    Args:
        maps: (N, h, w) maps at any resolution (the model's input).
        regions: N (H_i, W_i) bool regions at the original images' sizes
            (:func:`sise.eval.data.pairs.pointing_region`), on the CPU.
        tolerance: acceptance radius in original-image pixels (TorchRay: 15).

    Returns:
        (N,) bool hits, on the CPU.
    """
    check_maps(maps)
    if len(regions) != maps.shape[0]:
        raise SiseError(f"got {len(regions)} regions for {maps.shape[0]} maps")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise SiseError(f"tolerance must be a finite number >= 0, got {tolerance}")
    hits = torch.zeros(len(regions), dtype=torch.bool)
    for index, region in enumerate(regions):
        if region.ndim != 2 or region.dtype != torch.bool:
            raise SiseError(
                f"region {index} must be a (H, W) bool tensor, got {region.dtype} "
                f"{tuple(region.shape)}"
            )
        height, width = region.shape
        resized = F.interpolate(
            maps[index][None, None].float(),
            size=(height, width),
            mode="bilinear",
            align_corners=False,
        )
        y, x = divmod(int(resized.flatten().argmax()), width)
        rows = (torch.arange(height, dtype=torch.float64) - y) ** 2
        cols = (torch.arange(width, dtype=torch.float64) - x) ** 2
        accept = rows[:, None] + cols[None, :] < float(tolerance) ** 2
        hits[index] = bool((region.cpu() & accept).any())
    return hits


def pointing_game_accuracy(hits: Tensor, class_ids: Tensor) -> float:
    """Pointing-game accuracy: hit rate per class, then the mean over classes, in percent.

    ``100 · mean_c (#hits_c / #pairs_c)`` over the classes present in ``class_ids``. (TorchRay
    averages over all dataset classes, counting an absent class as 0; on VOC and COCO test
    sets every class is present, so the two agree there.)

    Args:
        hits: (P,) bool, one entry per (image, class) pair.
        class_ids: (P,) class index of each pair.

    Returns:
        The accuracy in [0, 100].
    """
    if hits.ndim != 1 or class_ids.shape != hits.shape:
        raise SiseError(
            f"hits and class_ids must be matching 1-D tensors, got {tuple(hits.shape)} and "
            f"{tuple(class_ids.shape)}"
        )
    if hits.numel() == 0:
        raise SiseError("no pointing-game results to average: pass at least one pair")
    classes, inverse = torch.unique(class_ids.to(hits.device), return_inverse=True)
    counts = torch.zeros(len(classes), dtype=torch.float64, device=hits.device)
    counts.scatter_add_(0, inverse, torch.ones_like(hits, dtype=torch.float64))
    hit_counts = torch.zeros_like(counts).scatter_add_(0, inverse, hits.double())
    return float(100.0 * (hit_counts / counts).mean())
