"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022), as pytorch-grad-cam computes it.

Drop% and the deletion game replace pixels by a constant, and the sharp edge of the hole tells
the model where the map was ("class information leaks through the shape of the mask"). ROAD
fills the removed pixels with *noisy linear imputation* instead: each removed pixel is the
weighted mean of its 8 neighbours (weight 1/6 for the 4 direct ones, 1/12 for the diagonals,
renormalised at the image border), a sparse linear system solved jointly for all removed pixels
of an image, plus a little Gaussian noise (σ = 0.01 in the model's input space):

    for every removed pixel i:  Σ_{j ∈ N(i)} w_j · (v_i − v_j) = 0,

with ``v_j = x_j`` for a kept neighbour. The result is smooth where the hole is, so the removal
itself carries no shape.

**Order and percentiles.** pytorch-grad-cam's ``ROADMostRelevantFirst(p)`` keeps the pixels whose
map value is *below* the map's p-th percentile (``np.percentile``, linear interpolation) and
removes the rest, i.e. the ``100 − p`` % most relevant; ``ROADLeastRelevantFirst(p)`` does the same
on ``1 − map``, removing the ``100 − p`` % least relevant. Their averages over p ∈ {10, …, 90}
(``ROADMostRelevantFirstAverage``, ``...LeastRelevantFirstAverage``) therefore average over the
same removed shares 10 … 90 % as the paper's curves, and ``ROADCombined`` is
``(LeRF − MoRF) / 2`` of those averages. Each value is ``Ψ_c(x̃_p) − Ψ_c(x)``, the change of the
explained score (MoRF: lower is better, a faithful map's most relevant pixels carry the score;
LeRF: higher is better; combined: higher is better). The ROAD paper reports accuracy instead;
:attr:`RoadCurves.kept` is its per-image form here, whether the model's top-1 class on ``x̃_p`` is
still its top-1 class on ``x`` ("prediction kept").

**Equal to pytorch-grad-cam** (``pytorch_grad_cam.metrics.road``, tested on the real
EfficientNet-Lite0 and the bundled photos, per image within 1e-4): the same threshold rule, the
same system (built vectorised with ``scipy.sparse``), the same noise
draws (``generators=None`` draws them from torch's global generator in pytorch-grad-cam's order:
per percentile, image by image, ``randn_like`` of the transposed ``(removed pixels, channels)``
solution; with
``torch.manual_seed`` set alike, the numbers agree). Differences:

* where the threshold rule removes *every* pixel (a map with more than ``p`` % of its pixels at its
  minimum, e.g. a sparse SISE map at p = 10, or at its maximum for LeRF) the system has no kept
  pixel to lean on and is singular: pytorch-grad-cam's ``spsolve`` returns NaN there. Here the
  removed image is the noise alone around the model's input-space zero (the normalisation
  mean, the baseline of Drop%), so every value is finite;
* the system is factored by SuperLU with a symmetric ordering and no pivoting (it is symmetric
  positive definite), about twice as fast as ``spsolve``'s default; the solutions agree to ~1e-14;
* the masked forward passes go through :func:`sise.runtime.score_masked`, one batched forward per
  percentile for all images (pytorch-grad-cam: one per percentile, unbatched imputation alike);
  the CPU fast path (batch-norm folding) changes scores by ~1e-6;
* ``generators``: one seeded generator per image makes an image's noise independent of the other
  images of its batch (the benchmark seeds one per pair, the same for every method).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from sise.core.masks import TensorMasks
from sise.core.scores import ScoreKind, check_score_kind
from sise.errors import SiseError
from sise.eval.metrics.checks import check_maps_fit_inputs, check_model_inputs
from sise.extras import require
from sise.runtime import BatchSize, score_masked
from sise.targets import ClassScore, Target

__all__ = [
    "NEIGHBOUR_WEIGHTS",
    "ROAD_NOISE",
    "ROAD_PERCENTILES",
    "RoadCurves",
    "noisy_linear_imputation",
    "road",
    "road_combined",
    "road_curves",
    "road_kept_pixels",
]

#: pytorch-grad-cam's percentiles (its ``ROAD...Average`` and ``ROADCombined`` defaults).
ROAD_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: The imputation's noise: σ of the Gaussian added to every imputed value (ROAD's and
#: pytorch-grad-cam's default), in the model's input space.
ROAD_NOISE = 0.01
#: ``(row offset, column offset, weight)`` of the 8 neighbours in the imputation (ROAD's).
NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)

Order = Literal["morf", "lerf"]


def road_kept_pixels(saliency: np.ndarray, percentile: float, order: Order) -> np.ndarray:
    """The (H, W) bool pixels a ROAD step keeps (pytorch-grad-cam's rule, see the module).

    MoRF keeps ``map < percentile(map, p)``; LeRF keeps ``1 − map < percentile(1 − map, p)``,
    both computed in float32 as pytorch-grad-cam does.
    """
    values = saliency.astype(np.float32, copy=False)
    if order == "lerf":
        values = (1 - torch.from_numpy(values)).numpy()
    threshold = np.percentile(values, percentile)
    return np.asarray(values < threshold)


def noisy_linear_imputation(
    image: Tensor,
    kept: np.ndarray,
    *,
    noise: float = ROAD_NOISE,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ROAD's noisy linear imputation of one image's removed pixels (see the module docstring).

    Args:
        image: (C, H, W) model-ready image (float32, CPU).
        kept: (H, W) bool, the pixels kept (the others are imputed).
        noise: σ of the Gaussian noise added to every imputed value (0: none).
        generator: the noise's generator (None: torch's global one, as pytorch-grad-cam).

    Returns:
        (C, H, W) float32: ``x`` on the kept pixels, the imputed values on the removed ones.
    """
    sparse = require("scipy.sparse", "ROAD's imputation")
    linalg = require("scipy.sparse.linalg", "ROAD's imputation")
    channels, height, width = image.shape
    flat = image.detach().to("cpu", torch.float32).reshape(channels, -1)
    kept_flat = np.asarray(kept, dtype=bool).reshape(-1)
    missing = np.flatnonzero(~kept_flat)
    m = len(missing)
    filled = flat.clone()
    if m == 0:
        return filled.reshape(image.shape)
    if m == kept_flat.size:
        # no kept pixel: singular (pytorch-grad-cam gets NaN); the input-space zero instead
        solution = torch.zeros(m, channels)
    else:
        values = flat.numpy()
        variable = np.full(kept_flat.size, -1, dtype=np.int64)
        variable[missing] = np.arange(m)
        rows, cols = np.divmod(missing, width)
        weight_sum = np.ones(m)
        rhs = np.zeros((m, channels))
        a_rows, a_cols, a_vals = [], [], []
        for dy, dx, weight in NEIGHBOUR_WEIGHTS:
            y, x = rows + dy, cols + dx
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            weight_sum[~inside] -= weight  # the border: the weights of the neighbours there
            where = np.flatnonzero(inside)
            neighbour = y[inside] * width + x[inside]
            known = kept_flat[neighbour]
            rhs[where[known]] += weight * values[:, neighbour[known]].T
            a_rows.append(where[~known])
            a_cols.append(variable[neighbour[~known]])
            a_vals.append(np.full(int((~known).sum()), -weight))
        a_rows.append(np.arange(m))
        a_cols.append(np.arange(m))
        a_vals.append(weight_sum)
        system = sparse.coo_matrix(
            (np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))),
            shape=(m, m),
        ).tocsc()
        # the system is symmetric positive definite (a grid Laplacian in which every component of
        # removed pixels touches a kept one), so a symmetric ordering without pivoting factors it
        # about twice as fast as spsolve's default (COLAMD, partial pivoting), the same solution
        factor = linalg.splu(
            system,
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
        solved = np.asarray(factor.solve(rhs)).reshape(m, channels)
        solution = torch.tensor(solved, dtype=torch.float)
    if noise:
        # pytorch-grad-cam adds noise * randn_like(res.t()); normal_ on a tensor of the same
        # (transposed) strides draws the same numbers, from any generator
        solution_t = solution.t()
        solution_t = solution_t + noise * torch.empty_like(solution_t).normal_(generator=generator)
    else:
        solution_t = solution.t()
    filled[:, torch.from_numpy(missing)] = solution_t
    return filled.reshape(image.shape)


class _ScoreAndTop1(Target):
    """The explained score of each row and, on the side, its top-1 class (``reference`` None) or
    whether that is its image's reference class, written to ``record`` at the row's image: ROAD
    scores one masked input per image, so the image is the mask."""

    def __init__(
        self, inner: Target, reference: Tensor | None, record: Tensor, owners: Tensor | None = None
    ) -> None:
        self.inner = inner
        self.reference = reference
        self.record = record
        self.owners = owners

    def rows(self, owners: Tensor) -> _ScoreAndTop1:
        return _ScoreAndTop1(self.inner.rows(owners), self.reference, self.record, owners)

    def __call__(self, output: Tensor) -> Tensor:
        owners = self.owners
        if owners is None:
            owners = torch.arange(output.shape[0], device=output.device)
        top = output.detach().argmax(dim=1)
        if self.reference is None:
            self.record[owners] = top.to(self.record)
        else:
            self.record[owners] = (top == self.reference[owners]).to(self.record)
        return self.inner(output)


@dataclass(frozen=True)
class RoadCurves:
    """One ROAD order (MoRF or LeRF) of N images at P percentiles.

    Attributes:
        order: ``"morf"`` or ``"lerf"``.
        percentiles: the P percentiles (pytorch-grad-cam's meaning, see the module docstring).
        clean: (N,) ``Ψ_c(x)``.
        scores: (N, P) ``Ψ_c(x̃_p)``.
        kept: (N, P) bool, the model's top-1 class on ``x̃_p`` is its top-1 class on ``x``.
    """

    order: str
    percentiles: tuple[float, ...]
    clean: Tensor
    scores: Tensor
    kept: Tensor

    @property
    def differences(self) -> Tensor:
        """(N, P) ``Ψ_c(x̃_p) − Ψ_c(x)``: pytorch-grad-cam's ``ROAD...First(p)`` values."""
        return self.scores.double() - self.clean.double()[:, None]

    @property
    def mean_difference(self) -> Tensor:
        """(N,) the differences averaged over the percentiles (``ROAD...FirstAverage``)."""
        return self.differences.mean(dim=1)

    @property
    def accuracy(self) -> Tensor:
        """(N,) ``100 · mean_p 1[prediction kept]``: the share of the percentiles at which the
        model still predicts its class on ``x`` (averaged over images: ROAD's accuracy curve's
        mean)."""
        return 100.0 * self.kept.double().mean(dim=1)


def road_curves(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    order: Order,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    generators: Sequence[torch.Generator] | None = None,
    score: ScoreKind = "softmax",
    batch_size: BatchSize = 64,
) -> RoadCurves:
    """ROAD's MoRF or LeRF curve of each image (see the module docstring for the rule).

    Cost: one clean forward, then per percentile one imputation per image (a sparse solve on the
    CPU) and one batched forward of all images through :func:`sise.runtime.score_masked` (the
    imputed image as the baseline, the kept pixels as the mask).

    Args:
        model: the classifier, in the mode it should be evaluated in.
        inputs: (N, C, H, W) model-ready images.
        targets: (N,) explained class per image.
        maps: (N, H, W) maps at the input resolution (MoRF needs only their order; LeRF uses
            ``1 − map``, so give maps in [0, 1] to match pytorch-grad-cam's normalised CAMs).
        order: ``"morf"`` (most relevant removed first) or ``"lerf"``.
        percentiles: pytorch-grad-cam's percentiles.
        noise: σ of the imputation's noise (0: none).
        generators: one noise generator per image (None: torch's global generator, drawn in
            pytorch-grad-cam's order).
        score: the explained score.
        batch_size: images per forward pass.

    Returns:
        The :class:`RoadCurves`.
    """
    check_model_inputs(inputs, targets)
    n, _c, h, w = inputs.shape
    check_maps_fit_inputs(maps, inputs)
    if order not in ("morf", "lerf"):
        raise SiseError(f"order must be 'morf' or 'lerf', got {order!r}")
    if not percentiles or not all(0 <= p <= 100 for p in percentiles):
        raise SiseError(f"percentiles must lie in [0, 100], got {list(percentiles)}")
    if generators is not None and len(generators) != n:
        raise SiseError(f"give one generator per image ({n}), got {len(generators)}")
    score = check_score_kind(score)
    device = inputs.device
    owners = torch.arange(n, device=device)
    inner = ClassScore(targets, score)
    top1 = torch.zeros(n, dtype=torch.long, device=device)
    ones = torch.ones(n, h, w, device=device, dtype=inputs.dtype)
    clean = score_masked(
        model,
        inputs,
        _ScoreAndTop1(inner, None, top1),
        TensorMasks(ones, owners),
        batch_size=batch_size,
    )
    saliency = maps.detach().to("cpu", torch.float32).numpy()
    images = inputs.detach().to("cpu", torch.float32)
    scores = torch.empty(n, len(percentiles), device=device)
    kept_top1 = torch.zeros(n, len(percentiles), dtype=torch.bool, device=device)
    for k, percentile in enumerate(percentiles):
        kept = np.stack([road_kept_pixels(saliency[i], percentile, order) for i in range(n)])
        filled = torch.stack(
            [
                noisy_linear_imputation(
                    images[i],
                    kept[i],
                    noise=noise,
                    generator=None if generators is None else generators[i],
                )
                for i in range(n)
            ]
        )
        record = torch.zeros(n, dtype=torch.bool, device=device)
        scores[:, k] = score_masked(
            model,
            inputs,
            _ScoreAndTop1(inner, top1, record),
            TensorMasks(torch.from_numpy(kept).to(device, inputs.dtype), owners),
            baseline=filled.to(device, inputs.dtype),
            batch_size=batch_size,
        )
        kept_top1[:, k] = record
    return RoadCurves(order, tuple(percentiles), clean, scores, kept_top1)


def road(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    maps: Tensor,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    noise: float = ROAD_NOISE,
    generators: Sequence[torch.Generator] | None = None,
    score: ScoreKind = "softmax",
    batch_size: BatchSize = 64,
) -> tuple[RoadCurves, RoadCurves]:
    """Both ROAD orders, ``(morf, lerf)``; LeRF's noise is drawn first, as ``ROADCombined``
    does. Arguments as for :func:`road_curves`; see :func:`road_combined`."""
    common = {
        "percentiles": percentiles,
        "noise": noise,
        "generators": generators,
        "score": score,
        "batch_size": batch_size,
    }
    lerf = road_curves(model, inputs, targets, maps, order="lerf", **common)  # type: ignore[arg-type]
    morf = road_curves(model, inputs, targets, maps, order="morf", **common)  # type: ignore[arg-type]
    return morf, lerf


def road_combined(morf: RoadCurves, lerf: RoadCurves) -> Tensor:
    """(N,) ``ROADCombined = (LeRF − MoRF) / 2`` of the mean score changes (higher is better:
    removing the least relevant pixels keeps the score, removing the most relevant loses it)."""
    return (lerf.mean_difference - morf.mean_difference) / 2
