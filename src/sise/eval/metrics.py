"""The paper's evaluation metrics (SPEC section 3), batched on torch tensors, on any device.

Notation used throughout: ``E`` is an explanation map (N, H, W), non-negative and normalised to
[0, 1]; ``G`` is the ground-truth region of the explained class, a (N, H, W) bool mask (the union
of the class's boxes, see :func:`sise.eval.data.datasets.gt_mask`); ``Ψ_c`` is the explained score
(softmax, sigmoid or logit, see :mod:`sise.core.scores`).

Ground-truth metrics (no model needed):

* :func:`energy_pointing_game` (EBPG, Wang et al. 2020, Score-CAM),
* :func:`bbox_score` (Schulz et al. 2020, IBA),
* :func:`miou` (IoU of the binarised map with G),
* :func:`distractor_energy` (the share of the map's energy on other classes' objects),
* :func:`pointing_game_hits` / :func:`pointing_game_accuracy` (Zhang et al. 2016, TorchRay).

Model-truth metrics (all masked forward passes go through :func:`sise.runtime.engine.score_masked`):

* :func:`drop_and_increase` (Chattopadhay et al. 2018, Grad-CAM++),
* :func:`insertion_deletion_auc` (Petsiuk et al. 2018, RISE),
* :func:`sanity_check` (Adebayo et al. 2018, cascading model-parameter randomisation).

How far a table's number may be from the one more pairs would give: :func:`standard_error`.

Every percentage is returned in [0, 100].
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from sise.core.postprocess import gaussian_blur
from sise.core.scores import ScoreKind, check_score_kind
from sise.errors import SiseError
from sise.runtime.device import BatchSize
from sise.runtime.engine import TensorMasks, score_masked

__all__ = [
    "average_drop",
    "bbox_score",
    "blur",
    "causal_curve",
    "curve_auc",
    "distractor_energy",
    "drop_and_increase",
    "energy_pointing_game",
    "increase_in_confidence",
    "insertion_deletion_auc",
    "miou",
    "pointing_game_accuracy",
    "pointing_game_hits",
    "rank_average",
    "sanity_check",
    "scaled_tolerance",
    "spearman",
    "standard_error",
    "top_k_membership",
]

Substrate = Literal["zero", "blur"]


# --------------------------------------------------------------------------------------------
# input checks


def _check_maps(maps: Tensor, name: str = "maps") -> None:
    if maps.ndim != 3:
        raise SiseError(
            f"{name} must be a (N, H, W) stack of maps, got shape {tuple(maps.shape)}; "
            "add a batch dimension with maps[None] for a single map"
        )
    if not maps.is_floating_point():
        raise SiseError(f"{name} must be a floating-point tensor, got {maps.dtype}")
    if not bool(torch.isfinite(maps).all()):
        raise SiseError(f"{name} contain NaN or infinite values; fix the explanation method")


def _check_gt(maps: Tensor, gt_mask: Tensor) -> None:
    _check_maps(maps)
    if gt_mask.shape != maps.shape:
        raise SiseError(
            f"gt_mask shape {tuple(gt_mask.shape)} differs from maps shape {tuple(maps.shape)}: "
            "rasterise the ground truth at the maps' resolution (sise.eval.gt_mask)"
        )
    if gt_mask.dtype != torch.bool:
        raise SiseError(f"gt_mask must be a bool tensor, got {gt_mask.dtype}")
    empty = ~gt_mask.flatten(1).any(dim=1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise SiseError(
            f"the ground-truth mask of sample(s) {rows} is empty: every evaluated class needs "
            "at least one ground-truth pixel; drop those samples"
        )


def _check_unit_maps(maps: Tensor, height: int, width: int, n: int) -> None:
    _check_maps(maps)
    if maps.shape != (n, height, width):
        raise SiseError(
            f"maps must be (N, H, W) = {(n, height, width)} to match the inputs, got "
            f"{tuple(maps.shape)}; up-sample them to the input size first"
        )
    if bool((maps < 0).any()) or bool((maps > 1).any()):
        raise SiseError(
            "model-truth metrics multiply the input by the map, so maps must lie in [0, 1]; "
            "normalise them with sise.core.postprocess.minmax_normalize"
        )


def _check_model_inputs(inputs: Tensor, targets: Tensor) -> None:
    if inputs.ndim != 4:
        raise SiseError(f"inputs must be (N, C, H, W), got shape {tuple(inputs.shape)}")
    if targets.shape != (inputs.shape[0],):
        raise SiseError(
            f"targets must hold one class index per input, shape ({inputs.shape[0]},), got "
            f"{tuple(targets.shape)}"
        )


# --------------------------------------------------------------------------------------------
# ground-truth metrics


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
    _check_gt(maps, boxes_mask)
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
    classes (the union of :attr:`sise.eval.data.datasets.EvalPair.other_boxes`) and ``G`` the
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
    _check_gt(maps, gt_mask)
    if distractor_mask.shape != maps.shape or distractor_mask.dtype != torch.bool:
        raise SiseError(
            f"distractor_mask must be a bool tensor of the maps' shape {tuple(maps.shape)}, got "
            f"{distractor_mask.dtype} {tuple(distractor_mask.shape)}: rasterise it with "
            "sise.eval.data.datasets.distractor_mask"
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
    _check_gt(maps, gt_mask)
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
    _check_gt(maps, gt_mask)
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
    _check_gt(maps, gt_mask)
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


# --------------------------------------------------------------------------------------------
# model-truth metrics


def _clean_scores(
    model: nn.Module, inputs: Tensor, targets: Tensor, score: ScoreKind, batch_size: BatchSize
) -> Tensor:
    """Ψ_c(x) through the engine: an all-ones mask with a zero baseline reproduces x exactly."""
    n, _, h, w = inputs.shape
    ones = torch.ones(1, h, w, device=inputs.device, dtype=inputs.dtype).expand(n, h, w)
    owners = torch.arange(n, device=inputs.device)
    return score_masked(
        model, inputs, targets, TensorMasks(ones, owners), score=score, batch_size=batch_size
    )


def drop_and_increase(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    score: ScoreKind = "softmax",
    baseline: Tensor | None = None,
    batch_size: BatchSize = 64,
) -> tuple[Tensor, Tensor]:
    """Per-sample Drop and Increase (Chattopadhay et al., "Grad-CAM++", WACV 2018).

    With ``Y = Ψ_c(x)`` and ``O = Ψ_c(b + (x - b) ⊙ E)`` (the map multiplies the model-ready
    input, exactly like SISE's masks; ``b`` is the baseline, zeros by default, i.e. the
    normalisation mean):

    * ``drop = 100 · max(0, Y - O) / Y`` (average it for Drop%, lower is better),
    * ``increase = O > Y`` (average it for Increase%, higher is better).

    The baseline changes the numbers a lot (SPEC section 3): print it with every result.
    A sample with ``Y = 0`` (a softmax that underflowed) has nothing to lose: drop 0.

    Args:
        model: the classifier, in the mode it should be evaluated in (usually ``eval()``).
        inputs: (N, C, H, W) model-ready images.
        targets: (N,) explained class per image.
        maps: (N, H, W) explanation maps in [0, 1] at the input resolution.
        score: the explained score; ``"logit"`` only works where every ``Y`` is positive.
        baseline: (N, C, H, W) value a masked-out pixel takes; ``None`` means zeros.
        batch_size: masked inputs per forward pass.

    Returns:
        ``(drop, increase)``: (N,) float percentages and (N,) bools.
    """
    _check_model_inputs(inputs, targets)
    n, _, h, w = inputs.shape
    _check_unit_maps(maps, h, w, n)
    score = check_score_kind(score)
    clean = _clean_scores(model, inputs, targets, score, batch_size)
    if bool((clean < 0).any()):
        raise SiseError(
            "Drop% is a relative change of a positive score, but some scores Y are negative; "
            "use score='softmax' or 'sigmoid'"
        )
    owners = torch.arange(n, device=inputs.device)
    masked = score_masked(
        model,
        inputs,
        targets,
        TensorMasks(maps.to(inputs.dtype), owners),
        score=score,
        baseline=baseline,
        batch_size=batch_size,
    )
    lost = (clean - masked).clamp_min(0)
    drop = torch.where(clean > 0, 100.0 * lost / clean.clamp_min(1e-30), torch.zeros_like(lost))
    return drop, masked > clean


def standard_error(terms: Tensor, class_ids: Tensor | None = None) -> float:
    """The standard error of a table's number, from the per-pair terms it averages.

    Without ``class_ids`` the number is the mean of the terms over pairs (EBPG, Drop%, insertion
    AUC, ...; Increase% averages ``100 · 1[O > Y]``), and its standard error is ``s / √n``, ``s``
    the sample standard deviation (divisor ``n − 1``). With ``class_ids`` the number is the mean
    over the K classes of each class's mean (the pointing game's accuracy, terms ``100 · hit``),
    and its standard error is ``√(Σ_c s_c² / n_c) / K``. Pairs are taken as independent draws,
    classes as fixed.

    Applied to the per-pair *differences* of two methods on the same pairs, it gives the paired
    standard error of the difference of their numbers, which is much smaller than either
    method's own when some pairs are hard for every method.

    Args:
        terms: (P,) per-pair terms.
        class_ids: (P,) class of each pair, or ``None``.

    Returns:
        The standard error; NaN when it cannot be estimated (fewer than two pairs, or with
        ``class_ids`` a class with fewer than two).
    """
    if terms.ndim != 1 or (class_ids is not None and class_ids.shape != terms.shape):
        raise SiseError(
            f"terms must be 1-D and class_ids (if given) of the same shape, got "
            f"{tuple(terms.shape)} and {None if class_ids is None else tuple(class_ids.shape)}"
        )
    terms = terms.double()
    if class_ids is None:
        n = terms.numel()
        return float(terms.std() / math.sqrt(n)) if n >= 2 else math.nan
    classes, inverse = torch.unique(class_ids.to(terms.device), return_inverse=True)
    variance_of_mean = 0.0
    for c in range(len(classes)):
        members = terms[inverse == c]
        if members.numel() < 2:
            return math.nan
        variance_of_mean += float(members.var()) / members.numel()
    return math.sqrt(variance_of_mean) / len(classes)


def average_drop(drop: Tensor) -> float:
    """Drop% = ``mean(drop)`` of :func:`drop_and_increase`'s per-sample drops (lower is better)."""
    if drop.numel() == 0:
        raise SiseError("no samples to average")
    return float(drop.double().mean())


def increase_in_confidence(increase: Tensor) -> float:
    """Increase% = ``100 · mean(1[O > Y])`` of :func:`drop_and_increase`'s flags."""
    if increase.numel() == 0:
        raise SiseError("no samples to average")
    return float(100.0 * increase.double().mean())


def blur(inputs: Tensor, kernel_size: int = 11, sigma: float = 5.0) -> Tensor:
    """Gaussian blur of each channel: RISE's insertion canvas (11×11 kernel, σ = 5).

    The kernel is a sampled, normalised 2-D Gaussian. Borders are padded by replication, so a
    constant image stays constant (RISE zero-pads, which darkens the borders towards the
    model's input-space zero).

    Args:
        inputs: (N, C, H, W) images.
        kernel_size: odd kernel width in pixels.
        sigma: standard deviation in pixels.

    Returns:
        (N, C, H, W) blurred images.
    """
    if sigma <= 0:
        raise SiseError(f"blur needs sigma > 0, got {sigma}")
    return gaussian_blur(inputs, sigma, kernel_size)


class _StepMasks:
    """The masks of every step of every sample's insertion or deletion game, made lazily.

    Mask ``i`` of sample ``n`` (flat index ``n · points + i``) marks the pixels of ``x`` that are
    shown after ``i`` steps: insertion shows the ``i · per_step`` most salient pixels, deletion
    shows all but those.
    """

    def __init__(
        self, rank: Tensor, size: tuple[int, int], per_step: int, points: int, insertion: bool
    ) -> None:
        self._rank = rank
        self._size = size
        self._per_step = per_step
        self._points = points
        self._insertion = insertion
        self.owners = torch.arange(rank.shape[0], device=rank.device).repeat_interleave(points)

    def __len__(self) -> int:
        return self._rank.shape[0] * self._points

    def masks(self, start: int, stop: int) -> Tensor:
        index = torch.arange(start, stop, device=self._rank.device)
        owner = torch.div(index, self._points, rounding_mode="floor")
        changed = (index % self._points) * self._per_step
        moved = self._rank.index_select(0, owner) < changed[:, None]
        shown = moved if self._insertion else ~moved
        return shown.float().view(-1, *self._size)


def causal_curve(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    mode: Literal["insertion", "deletion"],
    steps: int = 224,
    score: ScoreKind = "softmax",
    substrate: Substrate | Tensor = "zero",
    batch_size: BatchSize = 64,
) -> tuple[Tensor, Tensor]:
    """Score curve of RISE's insertion or deletion game (Petsiuk et al., BMVC 2018).

    Pixels are ordered by decreasing saliency (ties: row-major order, by a stable sort).
    Each step moves ``p = ceil(H·W / steps)`` pixels, so there are ``S = ceil(H·W / p)`` steps
    and ``S + 1`` points (RISE uses ``p = 224`` at 224×224, i.e. ``steps=224``).

    * deletion: start from ``x``; step ``i`` replaces the ``i·p`` most salient pixels by the
      substrate ``s`` (RISE: zeros);
    * insertion: start from the substrate (RISE: a blurred copy of ``x``); step ``i`` puts back
      the ``i·p`` most salient pixels of ``x``.

    Each point is ``Ψ_c(s + (x - s) ⊙ m_i)`` with ``m_i`` the pixels of ``x`` shown, scored by
    :func:`sise.runtime.engine.score_masked` in batches across all samples and steps.

    Args:
        model: the classifier.
        inputs: (N, C, H, W) model-ready images.
        targets: (N,) explained class per image.
        maps: (N, H, W) maps at the input resolution (only their order matters).
        mode: ``"insertion"`` or ``"deletion"``.
        steps: requested number of steps (see above for the exact count).
        score: the explained score.
        substrate: ``"zero"`` (the input-space zero), ``"blur"`` (:func:`blur` of the input)
            or an (N, C, H, W) tensor.
        batch_size: images per forward pass.

    Returns:
        ``(fractions, scores)``: (S + 1,) share of pixels moved at each point, from 0 to 1,
        and (N, S + 1) scores.
    """
    _check_model_inputs(inputs, targets)
    n, _c, h, w = inputs.shape
    _check_maps(maps)
    if maps.shape != (n, h, w):
        raise SiseError(
            f"maps must be (N, H, W) = {(n, h, w)} to match the inputs, got {tuple(maps.shape)}"
        )
    if mode not in ("insertion", "deletion"):
        raise SiseError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    if steps < 1:
        raise SiseError(f"steps must be >= 1, got {steps}")
    score = check_score_kind(score)
    canvas: Tensor | None
    if isinstance(substrate, Tensor):
        if substrate.shape != inputs.shape:
            raise SiseError(
                f"a substrate tensor must have the inputs' shape {tuple(inputs.shape)}, got "
                f"{tuple(substrate.shape)}"
            )
        canvas = substrate.to(inputs)
    elif substrate == "zero":
        canvas = None
    elif substrate == "blur":
        canvas = blur(inputs)
    else:
        raise SiseError(f"substrate must be 'zero', 'blur' or a tensor, got {substrate!r}")

    pixels = h * w
    per_step = math.ceil(pixels / steps)
    points = math.ceil(pixels / per_step) + 1
    order = maps.flatten(1).sort(dim=1, descending=True, stable=True).indices
    # rank[n, λ] = position of pixel λ in sample n's saliency order
    positions = torch.arange(pixels, device=inputs.device).expand(n, pixels)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    source = _StepMasks(rank, (h, w), per_step, points, insertion=mode == "insertion")
    scores = score_masked(
        model, inputs, targets, source, score=score, baseline=canvas, batch_size=batch_size
    )
    moved = (torch.arange(points, device=inputs.device) * per_step).clamp_max(pixels)
    return moved.double() / pixels, scores.view(n, points)


def curve_auc(fractions: Tensor, scores: Tensor) -> Tensor:
    """Area under each score curve by the trapezoid rule over the fraction axis [0, 1].

    Args:
        fractions: (P,) increasing x-values from 0 to 1.
        scores: (N, P) curves.

    Returns:
        (N,) areas.
    """
    return torch.trapezoid(scores.double(), x=fractions.double(), dim=1).float()


def insertion_deletion_auc(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    steps: int = 224,
    score: ScoreKind = "softmax",
    insertion_substrate: Substrate | Tensor = "blur",
    deletion_substrate: Substrate | Tensor = "zero",
    batch_size: BatchSize = 64,
) -> tuple[Tensor, Tensor]:
    """Insertion and deletion AUC of each map (Petsiuk et al., "RISE", BMVC 2018).

    ``AUC = ∫_0^1 Ψ_c(image after moving a fraction f of the pixels) df`` by the trapezoid
    rule; see :func:`causal_curve` for the games. Higher insertion and lower deletion are
    better. The defaults are RISE's: a blurred canvas for insertion, zeros for deletion.

    Cost: ``2 · (S + 1)`` forward passes per sample (S ≈ ``steps``); lower ``steps`` on a CPU.

    Args:
        model, inputs, targets, maps, steps, score, batch_size: as for :func:`causal_curve`.
        insertion_substrate: the canvas pixels are inserted into (``"blur"``, ``"zero"`` or a
            tensor).
        deletion_substrate: what deleted pixels become (``"zero"``, ``"blur"`` or a tensor).

    Returns:
        ``(insertion, deletion)``: two (N,) float tensors.
    """
    curves = {}
    for mode, substrate in (("insertion", insertion_substrate), ("deletion", deletion_substrate)):
        fractions, scores = causal_curve(
            model,
            inputs,
            targets,
            maps,
            mode=mode,  # type: ignore[arg-type]
            steps=steps,
            score=score,
            substrate=substrate,
            batch_size=batch_size,
        )
        curves[mode] = curve_auc(fractions, scores)
    return curves["insertion"], curves["deletion"]


# --------------------------------------------------------------------------------------------
# sanity check


def rank_average(values: Tensor) -> Tensor:
    """Ranks 1..P of each row of a (N, P) tensor, tied values getting their average rank.

    This is the ranking of Spearman's correlation (``scipy.stats.rankdata(method="average")``).

    Returns:
        (N, P) float64 ranks.
    """
    if values.ndim != 2:
        raise SiseError(f"rank_average takes a (N, P) tensor, got shape {tuple(values.shape)}")
    n, p = values.shape
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.long().cumsum(dim=1) - 1
    # Make group ids unique across rows so one scatter handles the whole batch.
    group = group + torch.arange(n, device=values.device)[:, None] * p
    position = torch.arange(1, p + 1, device=values.device, dtype=torch.float64).expand(n, p)
    first = torch.full((n * p,), float(p + 1), dtype=torch.float64, device=values.device)
    last = torch.zeros(n * p, dtype=torch.float64, device=values.device)
    first.scatter_reduce_(0, group.flatten(), position.flatten(), reduce="amin")
    last.scatter_reduce_(0, group.flatten(), position.flatten(), reduce="amax")
    mean_rank = ((first + last) / 2).gather(0, group.flatten()).view(n, p)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation between matching rows of two (N, ...) tensors.

    ``ρ = Pearson(rank(a), rank(b))`` over the flattened trailing dimensions, with average
    ranks for ties. Where either row is constant ρ is undefined (scipy returns NaN); here it
    is 0, "no rank agreement to measure", so that averages stay finite.

    Returns:
        (N,) float64 correlations in [-1, 1].
    """
    if a.shape != b.shape or a.ndim < 2:
        raise SiseError(
            f"spearman needs two (N, ...) tensors of one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    ra = rank_average(a.flatten(1))
    rb = rank_average(b.flatten(1))
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    norm = (ra.square().sum(dim=1) * rb.square().sum(dim=1)).sqrt()
    dot = (ra * rb).sum(dim=1)
    return torch.where(norm > 0, dot / norm.clamp_min(1e-300), torch.zeros_like(dot))


def _layers_in_call_order(model: nn.Module, inputs: Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order a forward pass enters them."""
    owners = {
        name: module
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    }
    entered: list[str] = []
    handles = []
    for name, module in owners.items():

        def record(_module: nn.Module, _args: object, name: str = name) -> None:
            if name not in entered:
                entered.append(name)

        handles.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return entered


@torch.no_grad()
def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Redraw the module's own parameters from a truncated normal of the trained scale.

    Each tensor gets ``N(0, σ²)`` truncated to ±2σ (Adebayo et al. re-initialise from a
    truncated normal), with σ the trained entries' standard deviation so that activations keep
    their magnitude; a constant tensor (a fresh bias, a BatchNorm scale) uses its magnitude,
    at least 0.01.
    """
    for param in module.parameters(recurse=False):
        trained = param.detach().double()
        sigma = float(trained.std()) if trained.numel() > 1 else 0.0
        if not sigma > 0:
            sigma = max(float(trained.abs().mean()), 1e-2)
        fresh = torch.empty(param.shape, dtype=torch.float32)
        nn.init.trunc_normal_(fresh, std=sigma, a=-2 * sigma, b=2 * sigma, generator=generator)
        param.copy_(fresh.to(param))


def sanity_check(
    explain: Callable[[nn.Module, Tensor, Tensor], Tensor],
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> list[tuple[str, float]]:
    """Cascading model-parameter randomisation test (Adebayo et al., "Sanity Checks for
    Saliency Maps", NeurIPS 2018).

    A faithful explanation depends on the model: as the layers are randomised one after the
    other, from the output layer towards the input, the maps must drift away from the maps of
    the trained model. After randomising each layer (cumulatively) the maps are recomputed and
    compared with the originals by Spearman rank correlation (:func:`spearman`), averaged over
    the samples.

    The user's model is never modified: the test works on a deep copy. Re-initialisation is
    seeded (``seed``), drawn on the CPU and copied to the parameters' device, so the result
    does not depend on the device.

    Args:
        explain: ``explain(model, inputs, targets) -> (N, H, W) maps``.
        model: the trained classifier.
        inputs: (N, C, H, W) model-ready images.
        targets: (N,) explained class per image.
        layers: names (as in ``named_modules``) of the layers to randomise, in the order to
            randomise them. Default: every module owning parameters, in reverse order of
            execution in a forward pass (top layer first).
        seed: seed of the re-initialisation.

    Returns:
        ``[(layer name, mean Spearman ρ with the original maps), ...]`` after each cumulative
        randomisation step.
    """
    _check_model_inputs(inputs, targets)
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    if layers is None:
        order = list(reversed(_layers_in_call_order(work, inputs)))
    else:
        unknown = [name for name in layers if name not in modules]
        if unknown:
            raise SiseError(
                f"unknown layer name(s) {unknown}: use names from model.named_modules()"
            )
        order = list(layers)
    if not order:
        raise SiseError("the model has no layer with parameters to randomise")
    original = explain(work, inputs, targets).detach()
    _check_maps(original, "the maps returned by explain")
    generator = torch.Generator().manual_seed(seed)
    results: list[tuple[str, float]] = []
    for name in order:
        _randomise(modules[name], generator)
        maps = explain(work, inputs, targets).detach()
        if maps.shape != original.shape:
            raise SiseError(
                f"explain returned maps of shape {tuple(maps.shape)} after randomising {name!r}, "
                f"but {tuple(original.shape)} before"
            )
        results.append((name, float(spearman(original, maps).mean())))
    return results
