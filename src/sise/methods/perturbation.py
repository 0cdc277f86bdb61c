"""Perturbation methods: RISE and Extremal Perturbation.

Both explain a black box by what happens to the explained score Ψ_c when parts of the input are
removed: RISE averages random masks weighted by the score they keep (scored with the batched
engine :func:`sise.engine.score_masked`), Extremal Perturbation optimises a smooth mask of a fixed
area that keeps as much of the score as possible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sise.device import BatchSize
from sise.engine import BaselineSpec, make_baseline, score_masked, weighted_mask_sum
from sise.errors import SiseError, check_integer
from sise.hooks import forward_scores
from sise.methods.base import Explainer, Explanation, Targets
from sise.postprocess import minmax_normalize, upsample
from sise.progress import progress_bar
from sise.scores import ScoreKind, check_score_kind
from sise.targets import checked_scores


class RandomGridMasks:
    """RISE's random masks as a lazy :class:`~sise.engine.MaskSource`.

    Mask generation (Petsiuk et al. 2018, Sec. 3.2): sample an s×s grid with cells set to 1 with
    probability p, up-sample it bilinearly (``align_corners=False``) to ``(s+1)·C_H × (s+1)·C_W``
    with the cell size ``C = ⌈H/s⌉``, and crop an H×W window at a random offset in
    ``[0, C_H) × [0, C_W)``. The small grids and the offsets are drawn up front from a seeded
    :class:`torch.Generator` on the masks' device (the global RNG is never touched); the
    full-resolution masks are made batch by batch, and mask ``i`` is the same whichever batch
    asks for it. The same ``n_masks`` masks are used for each of ``n_images`` images.

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
        if n_masks < 1:
            raise SiseError(f"n_masks must be >= 1, got {n_masks}")
        if grid_size < 1:
            raise SiseError(f"grid_size must be >= 1, got {grid_size}")
        if not 0.0 < p <= 1.0:
            raise SiseError(f"p must be in (0, 1], got {p}")
        device = torch.device(device)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        height, width = size
        self.n_masks = n_masks
        self.grid_size = grid_size
        self.p = p
        self.size = size
        self.cell = (math.ceil(height / grid_size), math.ceil(width / grid_size))
        self.grids = (
            torch.rand(n_masks, grid_size, grid_size, generator=generator, device=device) < p
        ).float()
        self.shifts = torch.stack(
            [
                torch.randint(0, self.cell[0], (n_masks,), generator=generator, device=device),
                torch.randint(0, self.cell[1], (n_masks,), generator=generator, device=device),
            ],
            dim=1,
        )
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


class RISE(Explainer):
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
        batch_size: masked inputs per forward pass, or ``"auto"`` (default: as many as fit in
            the free memory on CUDA, :data:`sise.device.CPU_BATCH_SIZE` on a CPU).
        autocast_dtype: e.g. ``torch.bfloat16`` to run the masked forwards under autocast.
        progress: show a progress bar over the masked forwards.

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

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 4000,
        grid_size: int = 7,
        p: float = 0.5,
        seed: int = 0,
        score: ScoreKind = "softmax",
        baseline: BaselineSpec = "zero",
        batch_size: BatchSize = "auto",
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(model, score=score)
        if not (isinstance(batch_size, str) and batch_size == "auto"):
            check_integer("batch_size (or 'auto')", batch_size, low=1)
        if n_masks < 1:
            raise SiseError(f"n_masks must be >= 1, got {n_masks}")
        if grid_size < 1:
            raise SiseError(f"grid_size must be >= 1, got {grid_size}")
        if not 0.0 < p <= 1.0:
            raise SiseError(f"p must be in (0, 1], got {p}")
        self.n_masks = n_masks
        self.grid_size = grid_size
        self.p = p
        self.seed = seed
        self.baseline = baseline
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self.progress = progress

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
        masked_scores = score_masked(
            self.model,
            inputs,
            target,
            source,
            score=self.score,
            baseline=make_baseline(inputs, self.baseline),
            batch_size=self.batch_size,
            autocast_dtype=self.autocast_dtype,
            progress="RISE masked forwards" if self.progress else None,
        )
        saliency = weighted_mask_sum(source, masked_scores, n) / (self.n_masks * self.p)
        return Explanation(
            maps=minmax_normalize(saliency),
            targets=resolved,
            scores=scores,
            forward_passes=torch.full((n,), 1 + self.n_masks, device=inputs.device),
            method=self.name,
            extras={"saliency": saliency},
        )


def smooth_max_convolution(lattice: Tensor, sigma: float, temperature: float = 0.0) -> Tensor:
    """``m(u) = smax_v k(u − v) m̄(v)`` on the lattice, with a Gaussian ``k`` (``k(0) = 1``).

    Fong et al. (2019), Sec. 3.3: the max-convolution of the lattice parameters with a Gaussian
    kernel of width ``sigma`` (in lattice steps) makes every mask at least as smooth as the
    kernel. ``smax_T(z) = Σ z e^{z/T} / Σ e^{z/T}`` is the smooth maximum; ``temperature=0`` is
    its limit, the max.

    Args:
        lattice: (B, 1, h, w) parameters in [0, 1].
        sigma: kernel standard deviation, in lattice steps.
        temperature: T of the smooth maximum (0: max).

    Returns:
        (B, 1, h, w) smooth mask on the lattice, in [0, 1].
    """
    batch, _, height, width = lattice.shape
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=lattice.device, dtype=lattice.dtype)
    distance2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = torch.exp(-distance2 / (2 * sigma**2)).flatten()
    patches = F.unfold(lattice, kernel_size=2 * radius + 1, padding=radius)  # (B, k², h*w)
    weighted = patches * kernel[None, :, None]
    if temperature > 0:
        pooled = (weighted * torch.softmax(weighted / temperature, dim=1)).sum(dim=1)
    else:
        pooled = weighted.amax(dim=1)
    return pooled.view(batch, 1, height, width)


def blur_pyramid(inputs: Tensor, max_sigma: float, levels: int) -> Tensor:
    """(L, N, C, H, W): the inputs blurred with ``σ_l = max_sigma · l / (L − 1)``, l = 0..L-1."""
    stack = [inputs]
    for level in range(1, levels):
        blurred = make_baseline(inputs, "blur", blur_sigma=max_sigma * level / (levels - 1))
        assert blurred is not None
        stack.append(blurred)
    return torch.stack(stack)


def perturb(pyramid: Tensor, masks: Tensor) -> Tensor:
    """The blur perturbation ``π(x; m)``: pixel u blurred with ``σ = σ_max · (1 − m(u))``.

    The blur at each pixel interpolates linearly between the two nearest levels of the
    pyramid, so that ``m = 1`` keeps the pixel and ``m = 0`` blurs it with σ_max; this is
    differentiable in m.

    Args:
        pyramid: (B, L, C, H, W) blurred copies of each row's image, sharp first.
        masks: (B, H, W) masks in [0, 1] (not clamped: a clamp would stop the gradient of
            values on the bounds).
    """
    levels = pyramid.shape[1]
    position = (1 - masks) * (levels - 1)
    lower = position.detach().floor().clamp(max=levels - 2).long()
    fraction = (position - lower).unsqueeze(1)  # (B, 1, H, W)
    channels = pyramid.shape[2]
    index = lower[:, None, None].expand(-1, 1, channels, -1, -1)
    low = pyramid.gather(1, index).squeeze(1)
    high = pyramid.gather(1, index + 1).squeeze(1)
    return low + fraction * (high - low)


def area_regularizer(masks: Tensor, areas: Tensor) -> Tensor:
    """Fong et al.'s rank-based area constraint ``R_a(m) = ‖vecsort(m) − r_a‖² / |Ω|``.

    ``vecsort`` sorts the mask values in ascending order; ``r_a`` is the step vector of
    ``(1 − a)|Ω|`` zeros followed by ``a|Ω|`` ones. It is zero exactly for a binary mask of area
    a, wherever its ones are.

    Args:
        masks: (B, H, W) masks.
        areas: (B,) target area fractions.

    Returns:
        (B,) the regulariser per mask.
    """
    flat = masks.flatten(1)
    size = flat.shape[1]
    ones = torch.round(areas * size).long()
    reference = (torch.arange(size, device=flat.device)[None, :] >= (size - ones)[:, None]).to(
        flat.dtype
    )
    return ((flat.sort(dim=1).values - reference) ** 2).mean(dim=1)


class ExtremalPerturbation(Explainer):
    """Extremal Perturbation (Fong, Patrick and Vedaldi, "Understanding Deep Networks via
    Extremal Perturbations and Smooth Masks", ICCV 2019), preservation game, written from the
    paper.

    For each area a, the extremal perturbation is the smooth mask of area a that keeps the
    largest explained score when everything outside it is blurred::

        m_a = argmax_m  Ψ_c(π(x; m)) − λ R_a(m)

    * Smooth masks (Sec. 3.3): parameters ``m̄`` on a lattice with stride ``step`` pixels,
      a smooth max-convolution with a Gaussian of ``sigma`` pixels
      (:func:`smooth_max_convolution`), bilinear up-sampling to H×W.
    * Area (Sec. 3.2): ``R_a(m) = ‖vecsort(m) − r_a‖²`` (:func:`area_regularizer`), with a
      weight λ that grows geometrically from ``area_weight[0]`` to ``area_weight[1]`` over the
      iterations, so that the score decides where the mask goes before the area is enforced.
    * Perturbation: blur, ``σ(u) = blur_sigma · (1 − m(u))``, through a pyramid of ``levels``
      blurs (:func:`perturb`).
    * Optimisation: Adam on ``m̄`` (projected to [0, 1]) for ``iterations`` steps, all areas of
      all images in one batch. Gradients are taken with ``torch.autograd.grad`` with respect to
      ``m̄`` only: no parameter ``.grad`` of the model is touched.

    The defaults (800 iterations; areas 2.5-20 %; a 7-px lattice, a 21-px kernel, blur up to
    20 px over 8 levels) are meant for 224-px inputs; Adam's step size and the λ schedule are
    choices of this implementation, which the paper does not fix.

    The map is the sum of the masks of all areas (as in the paper's benchmarks), min-max
    normalised; each mask is in ``extras["masks"]`` (N, A, H, W) and the score it keeps in
    ``extras["mask_scores"]``.

    Cost per image: one forward pass, ``iterations`` forward+backward passes per area, and one
    forward per area for the final scores.

    Args:
        model: a classifier returning (N, K) class scores.
        areas: the area fractions a.
        iterations: optimisation steps (800 in the paper; tests use fewer).
        step: lattice stride of the mask parameters, in pixels.
        sigma: smoothing kernel width, in pixels.
        temperature: smooth-max temperature (0: max).
        blur_sigma: σ_max of the blur perturbation, in pixels.
        levels: levels of the blur pyramid.
        learning_rate: Adam's step size.
        area_weight: λ at the first and at the last iteration.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"`` (reported in
            ``scores`` and ``extras["mask_scores"]``).
        reward: the score the masks are optimised for. Default ``"logit"``: the paper's reward
            is the network's raw output, and a saturated softmax or sigmoid (≈ 1 on a confident
            image) gives masks that barely depend on the class. ``None`` uses ``score``. It
            applies to class targets (:meth:`sise.targets.Target.with_score`); a custom callable
            target is optimised as it is.
        progress: show a progress bar over the iterations.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> x = torch.randn(2, 3, 32, 32)  # two model-ready images
        >>> from sise import ExtremalPerturbation
        >>> extremal = ExtremalPerturbation(  # a short run, sized for 32-px images
        ...     model, areas=(0.1, 0.2), iterations=20, step=4, sigma=4.0, blur_sigma=4.0
        ... )
        >>> explanation = extremal(x, targets=[1, 3])
        >>> explanation.maps.shape, explanation.extras["masks"].shape  # (N, areas, H, W)
        (torch.Size([2, 32, 32]), torch.Size([2, 2, 32, 32]))
    """

    name = "extremal"

    def __init__(
        self,
        model: nn.Module,
        *,
        areas: Sequence[float] = (0.025, 0.05, 0.1, 0.2),
        iterations: int = 800,
        step: int = 7,
        sigma: float = 21.0,
        temperature: float = 0.0,
        blur_sigma: float = 20.0,
        levels: int = 8,
        learning_rate: float = 0.1,
        area_weight: tuple[float, float] = (1.0, 1000.0),
        score: ScoreKind = "softmax",
        reward: ScoreKind | None = "logit",
        progress: bool = False,
    ) -> None:
        super().__init__(model, score=score)
        self.reward: ScoreKind = check_score_kind(reward) if reward is not None else self.score
        # the reward form applies to class targets; None keeps every target as it is
        self._reward_form = reward is not None
        self.areas = [float(a) for a in areas]
        if not self.areas or not all(0.0 < a < 1.0 for a in self.areas):
            raise SiseError(f"areas must be fractions in (0, 1), got {list(areas)}")
        if iterations < 1:
            raise SiseError(f"iterations must be >= 1, got {iterations}")
        if step < 1 or sigma <= 0 or blur_sigma <= 0:
            raise SiseError("step, sigma and blur_sigma must be positive")
        if levels < 2:
            raise SiseError(f"levels must be >= 2, got {levels}")
        self.iterations = iterations
        self.step = step
        self.sigma = sigma
        self.temperature = temperature
        self.blur_sigma = blur_sigma
        self.levels = levels
        self.learning_rate = learning_rate
        self.area_weight = area_weight
        self.progress = progress

    def masks_from(self, lattice: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, H, W) smooth masks from (B, 1, h, w) lattice parameters in [0, 1].

        (No clamping here: the parameters are projected to [0, 1] after each step, and a clamp
        in the graph would zero the gradient of every parameter sitting on a bound.)
        """
        smooth = smooth_max_convolution(lattice, self.sigma / self.step, self.temperature)
        return upsample(smooth, size)[:, 0]

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        n, _, height, width = inputs.shape
        target, resolved, scores = forward_scores(self.model, inputs, targets, self.score)
        n_areas = len(self.areas)
        device = inputs.device
        owners = torch.arange(n, device=device).repeat_interleave(n_areas)
        areas = torch.tensor(self.areas, device=device).repeat(n)
        row_targets = target.rows(owners)
        rewarded = (target.with_score(self.reward) if self._reward_form else target).rows(owners)
        with torch.no_grad():
            pyramid = blur_pyramid(inputs.detach(), self.blur_sigma, self.levels)
            pyramid = pyramid.transpose(0, 1)[owners].contiguous()  # (N*A, L, C, H, W)
        lattice_size = (max(1, math.ceil(height / self.step)), max(1, math.ceil(width / self.step)))
        lattice = torch.full(
            (n * n_areas, 1, *lattice_size), 0.5, device=device, dtype=torch.float32
        ).requires_grad_(True)
        optimizer = torch.optim.Adam([lattice], lr=self.learning_rate)
        start, end = self.area_weight
        with progress_bar(self.iterations, "Extremal Perturbation", self.progress) as advance:
            for iteration in range(self.iterations):
                fraction = iteration / max(1, self.iterations - 1)
                weight = start * (end / start) ** fraction
                with torch.enable_grad():
                    masks = self.masks_from(lattice, (height, width))
                    logits = self.model(perturb(pyramid, masks))
                    reward = checked_scores(rewarded, logits, n * n_areas)
                    if not reward.requires_grad:
                        raise SiseError(
                            "the target's score has no gradient: Extremal Perturbation optimises "
                            "its masks for it, so compute it with differentiable torch operations"
                        )
                    penalty = area_regularizer(masks, areas)
                    loss = (weight * penalty - reward).sum()
                    (gradient,) = torch.autograd.grad(loss, [lattice])
                lattice.grad = gradient
                optimizer.step()
                with torch.no_grad():
                    lattice.clamp_(0, 1)
                advance(1)
        with torch.no_grad():
            masks = self.masks_from(lattice.detach(), (height, width))
            mask_scores = checked_scores(
                row_targets, self.model(perturb(pyramid, masks)), n * n_areas
            ).view(n, n_areas)
        masks = masks.view(n, n_areas, height, width)
        return Explanation(
            maps=minmax_normalize(masks.sum(dim=1)),
            targets=resolved,
            scores=scores,
            forward_passes=torch.full((n,), 1 + (self.iterations + 1) * n_areas, device=device),
            method=self.name,
            extras={"masks": masks, "areas": list(self.areas), "mask_scores": mask_scores},
        )
