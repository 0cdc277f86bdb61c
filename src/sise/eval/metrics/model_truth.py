"""Model-truth metrics: what the model does when the input is masked by the map. Every masked
forward pass goes through :func:`sise.runtime.engine.score_masked`. See :mod:`sise.eval.metrics`
for the notation."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from sise.core.masks import TensorMasks
from sise.core.postprocess import gaussian_blur
from sise.core.scores import ScoreKind, check_score_kind
from sise.errors import SiseError
from sise.eval.metrics.checks import (
    check_maps_fit_inputs,
    check_model_inputs,
    check_unit_maps,
)
from sise.runtime import BatchSize, score_masked

__all__ = [
    "Substrate",
    "average_drop",
    "blur",
    "causal_curve",
    "curve_auc",
    "drop_and_increase",
    "increase_in_confidence",
    "insertion_deletion_auc",
]

Substrate = Literal["zero", "blur"]


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
    check_model_inputs(inputs, targets)
    n, _, h, w = inputs.shape
    check_unit_maps(maps, h, w, n)
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
    check_model_inputs(inputs, targets)
    n, _c, h, w = inputs.shape
    check_maps_fit_inputs(maps, inputs)
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
