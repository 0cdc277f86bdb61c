"""RISE: a black box explained by random masks, each weighted by the score it keeps.

Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018. The masked inputs are scored with the batched engine
(:func:`sise.runtime.engine.score_masked`, through :class:`~sise.methods.masked.MaskedScoring`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sise.core.hooks import forward_scores
from sise.core.masks import BaselineSpec, MaskSums
from sise.core.postprocess import minmax_normalize
from sise.core.scores import ScoreKind
from sise.errors import check_integer, check_number
from sise.methods.base import Explainer, Explanation, Targets
from sise.methods.masked import MaskedScoring
from sise.runtime import Runtime, check_fits


def _check_grid(n_masks: object, grid_size: object, p: object) -> tuple[int, int, float]:
    """RISE's mask options: ``n_masks`` >= 1, ``grid_size`` >= 1 and ``p`` in (0, 1]."""
    return (
        check_integer("n_masks", n_masks, low=1),
        check_integer("grid_size", grid_size, low=1),
        check_number("p", p, low=0.0, low_inclusive=False, high=1.0),
    )


class RandomGridMasks:
    """RISE's random masks as a lazy :class:`~sise.core.masks.MaskSource`.

    Mask generation (Petsiuk et al. 2018, Sec. 3.2): sample an s×s grid with cells set to 1 with
    probability p, up-sample it bilinearly (``align_corners=False``) to ``(s+1)·C_H × (s+1)·C_W``
    with the cell size ``C = ⌈H/s⌉``, and crop an H×W window at a random offset in
    ``[0, C_H) × [0, C_W)``. The small grids and the offsets are drawn up front from a seeded
    CPU :class:`torch.Generator` (the global RNG is never touched) and moved to the masks' device,
    so a seed gives the same masks on every device (CUDA's generator draws other numbers); the
    full-resolution masks are made batch by batch there, and mask ``i`` is the same whichever
    batch asks for it. The same ``n_masks`` masks are used for each of ``n_images`` images.

    Args:
        n_masks: masks per image.
        grid_size: s, cells per side of the random grid.
        p: probability that a cell is kept.
        size: (H, W) of the masks.
        n_images: images the masks are applied to (mask ``k`` belongs to image ``k // n_masks``).
        seed: seed of the generator.
        device: where masks are made.
    """

    def __init__(
        self,
        n_masks: int,
        grid_size: int,
        p: float,
        size: tuple[int, int],
        n_images: int = 1,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        n_masks, grid_size, p = _check_grid(n_masks, grid_size, p)
        device = torch.device(device)
        # Before drawing, per mask: on the CPU its grid is drawn as float32 (4 B a cell) and
        # tested (1 B a cell), its two int64 offsets drawn and stacked (32 B); kept on the masks'
        # device: the grid as float32 (4 B a cell), the offsets (16 B) and an int64 owner per
        # image. A billion masks of 7×7 for one image: about 480 GB.
        drawn = n_masks * (5 * grid_size * grid_size + 32)
        kept = n_masks * (4 * grid_size * grid_size + 16 + 8 * n_images)
        what = f"RISE's {n_masks:,} random grids of {grid_size}x{grid_size} cells"
        advice = (
            "lower n_masks (the paper uses 4000 at 224 px; command line: --option "
            "rise.n_masks=4000) or grid_size"
        )
        if device.type == "cpu":
            check_fits(drawn + kept, device, what, advice)
        else:
            check_fits(drawn, "cpu", what, advice)
            check_fits(kept, device, what, advice)
        generator = torch.Generator()
        generator.manual_seed(seed)
        height, width = size
        self.n_masks = n_masks
        self.grid_size = grid_size
        self.p = p
        self.size = size
        self.cell = (math.ceil(height / grid_size), math.ceil(width / grid_size))
        self.grids = (
            (torch.rand(n_masks, grid_size, grid_size, generator=generator) < p).float().to(device)
        )
        self.shifts = torch.stack(
            [
                torch.randint(0, self.cell[0], (n_masks,), generator=generator),
                torch.randint(0, self.cell[1], (n_masks,), generator=generator),
            ],
            dim=1,
        ).to(device)
        self.owners = torch.arange(n_images, device=device).repeat_interleave(n_masks)

    def __len__(self) -> int:
        return self.owners.shape[0]

    def masks(self, start: int, stop: int) -> Tensor:
        index = torch.arange(start, stop, device=self.grids.device) % self.n_masks
        up_size = ((self.grid_size + 1) * self.cell[0], (self.grid_size + 1) * self.cell[1])
        grown = F.interpolate(
            self.grids[index, None], size=up_size, mode="bilinear", align_corners=False
        )[:, 0]
        height, width = self.size
        rows = self.shifts[index, 0, None] + torch.arange(height, device=grown.device)
        cols = self.shifts[index, 1, None] + torch.arange(width, device=grown.device)
        batch = torch.arange(len(index), device=grown.device)
        return grown[batch[:, None, None], rows[:, :, None], cols[:, None, :]]


class RISE(MaskedScoring, Explainer):
    """RISE (Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of
    Black-box Models", BMVC 2018).

    With N random masks ``M_i`` (see :class:`RandomGridMasks`), keep probability p and the
    explained score Ψ_c, the saliency is the Monte-Carlo estimate of ``E[Ψ_c(x ⊙ M) | M(λ) = 1]``
    (Eq. 6)::

        S(λ) = 1 / (N · p) · Σ_i Ψ_c(x ⊙ M_i) · M_i(λ)

    returned min-max normalised (the raw S is in ``extras["saliency"]``). Masked-out pixels take
    the model's input-space zero (``baseline="zero"``, the paper's ``x ⊙ M``), or another
    baseline. Defaults N = 4000, s = 7, p = 0.5 are the setting used for 224-px inputs.

    Cost: one forward pass plus N masked forward passes per image, batched on the model's device.

    Args:
        model: a classifier returning (N, K) class scores.
        n_masks: N, masks per image.
        grid_size: s, cells per side of the random grid.
        p: probability that a grid cell is kept.
        seed: seed of the mask generator: the same seed gives the same masks and map.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
        baseline: what masked-out pixels become: ``"zero"``, ``"blur"`` or a tensor.
        runtime: how the masked forwards run (batch size, precision, progress bar:
            :class:`sise.Runtime`); ``None``: the defaults.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> x = torch.randn(2, 3, 32, 32)  # two model-ready images
        >>> from sise import RISE
        >>> explanation = RISE(model, n_masks=200, seed=0)(x, targets=[1, 3])
        >>> explanation.maps.shape, explanation.forward_passes  # 1 + n_masks per image
        (torch.Size([2, 32, 32]), tensor([201, 201]))
    """

    name = "rise"
    progress_label = "RISE masked forwards"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 4000,
        grid_size: int = 7,
        p: float = 0.5,
        seed: int = 0,
        score: ScoreKind | None = None,
        baseline: BaselineSpec = "zero",
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(model, score=score, runtime=runtime)
        self.n_masks, self.grid_size, self.p = _check_grid(n_masks, grid_size, p)
        # torch.Generator.manual_seed takes 0 .. 2^64 − 1
        self.seed = check_integer("seed", seed, low=0, high=2**64 - 1)
        self.set_masking_options(baseline=baseline)

    def mask_source(self, inputs: Tensor) -> RandomGridMasks:
        """The masks used for ``inputs`` (one set of ``n_masks``, shared by every image)."""
        n, _, height, width = inputs.shape
        return RandomGridMasks(
            self.n_masks,
            self.grid_size,
            self.p,
            (height, width),
            n,
            seed=self.seed,
            device=inputs.device,
        )

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        n = inputs.shape[0]
        target, resolved, scores = forward_scores(self.model, inputs, targets, self.score)
        source = self.mask_source(inputs)
        height, width = inputs.shape[-2:]
        # mask k belongs to image k // n_masks: one group of n_masks masks per image
        sums = MaskSums([self.n_masks] * n, (height, width), inputs.device)
        self.score_masks(inputs, target, source, sums=sums)
        saliency = sums.result() / (self.n_masks * self.p)
        return Explanation(
            maps=minmax_normalize(saliency),
            targets=resolved,
            scores=scores,
            forward_passes=torch.full((n,), 1 + self.n_masks, device=inputs.device),
            method=self.name,
            extras={"saliency": saliency},
        )
