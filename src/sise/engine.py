"""The batched masked-scoring engine shared by SISE, Score-CAM, RISE and the model-truth metrics.

Perturbation methods spend nearly all their time here: score ``Ψ_c(b + (x - b) ⊙ m)`` for
thousands of masks ``m``. The engine

* builds each batch of masked inputs in place in one reusable device buffer,
* packs the masks of several images into the same batches (each mask knows its image),
* makes masks lazily, batch by batch, so the full-resolution stack never has to exist at once,
* and never copies to the host inside the loop, so a GPU is never waiting on Python.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.postprocess import minmax_normalize, upsample
from sise.scores import ScoreKind, class_scores


class MaskSource(Protocol):
    """Masks made on demand: ``len(source)`` masks, mask ``i`` applies to image ``owners[i]``."""

    owners: Tensor

    def __len__(self) -> int: ...

    def masks(self, start: int, stop: int) -> Tensor:
        """Masks ``start:stop`` as a (stop - start, H, W) float tensor in [0, 1]."""
        ...


class TensorMasks:
    """Masks already at input resolution: a (M, H, W) tensor and its (M,) owner images."""

    def __init__(self, masks: Tensor, owners: Tensor | None = None) -> None:
        self._masks = masks
        self.owners = (
            owners
            if owners is not None
            else torch.zeros(masks.shape[0], dtype=torch.long, device=masks.device)
        )

    def __len__(self) -> int:
        return self._masks.shape[0]

    def masks(self, start: int, stop: int) -> Tensor:
        return self._masks[start:stop]


class UpsampledMaps:
    """Low-resolution feature maps turned into masks batch by batch: ``Ω(A) = minmax(up(A))``.

    This is SISE's attribution-mask operator Ω and Score-CAM's mask: bilinear up-sampling to the
    input size (``align_corners=False``), then min-max normalisation of each map to [0, 1].
    """

    def __init__(self, maps: Tensor, owners: Tensor, size: tuple[int, int]) -> None:
        self._maps = maps
        self.owners = owners
        self._size = size

    def __len__(self) -> int:
        return self._maps.shape[0]

    def masks(self, start: int, stop: int) -> Tensor:
        return minmax_normalize(upsample(self._maps[start:stop].float(), self._size))


class ConcatMasks:
    """Several mask sources scored as one, so batches stay full across layers or images."""

    def __init__(self, sources: Sequence[MaskSource]) -> None:
        self._sources = [s for s in sources if len(s) > 0]
        self._starts = [0]
        for source in self._sources:
            self._starts.append(self._starts[-1] + len(source))
        device = self._sources[0].owners.device if self._sources else torch.device("cpu")
        self.owners = (
            torch.cat([s.owners for s in self._sources])
            if self._sources
            else torch.zeros(0, dtype=torch.long, device=device)
        )

    def __len__(self) -> int:
        return self._starts[-1]

    def masks(self, start: int, stop: int) -> Tensor:
        parts = []
        for source, first, end in zip(self._sources, self._starts, self._starts[1:], strict=False):
            lo, hi = max(start, first), min(stop, end)
            if lo < hi:
                parts.append(source.masks(lo - first, hi - first))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def score_masked(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    source: MaskSource,
    *,
    score: ScoreKind = "softmax",
    baseline: Tensor | None = None,
    batch_size: int = 64,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Tensor:
    """Score every masked input ``b + (x - b) ⊙ m`` with the model, in batches.

    Args:
        model: the classifier, already in the mode it should run in.
        inputs: (N, C, H, W) model-ready images.
        targets: (N,) class explained for each image.
        source: the masks, each tagged with the image it masks.
        score: the explained score Ψ_c.
        baseline: (N, C, H, W) value a masked-out pixel takes; ``None`` means zeros (the model's
            input-space zero, i.e. the normalisation mean).
        batch_size: masked inputs per forward pass.
        autocast_dtype: run the forwards under autocast to this dtype (e.g. ``torch.bfloat16``).
        channels_last: build the batch buffer in channels-last memory format.
        on_batch: called with the number of masks after each batch (progress bars).

    Returns:
        (M,) float32 scores, on the inputs' device, in the order of the masks.
    """
    total = len(source)
    device = inputs.device
    scores = torch.empty(total, device=device, dtype=torch.float32)
    if total == 0:
        return scores
    if batch_size < 1:
        raise SiseError(f"batch_size must be >= 1, got {batch_size}")
    n, c, h, w = inputs.shape
    rows = min(batch_size, total)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    buffer = torch.empty((rows, c, h, w), device=device, dtype=inputs.dtype).to(
        memory_format=memory_format
    )
    delta = inputs if baseline is None else inputs - baseline
    single = n == 1
    for start in range(0, total, rows):
        stop = min(start + rows, total)
        batch = buffer[: stop - start]
        masks = source.masks(start, stop).to(dtype=inputs.dtype)[:, None]
        owners = source.owners[start:stop]
        # One image: broadcast it instead of gathering copies of it.
        image_delta = delta if single else delta.index_select(0, owners)
        torch.mul(image_delta, masks, out=batch)
        if baseline is not None:
            batch.add_(baseline if single else baseline.index_select(0, owners))
        with _autocast(device, autocast_dtype):
            logits = model(batch)
        scores[start:stop] = class_scores(logits, targets.index_select(0, owners), score)
        if on_batch is not None:
            on_batch(stop - start)
    return scores


BaselineSpec = str | Tensor | None


def make_baseline(inputs: Tensor, baseline: BaselineSpec, blur_sigma: float = 10.0) -> Tensor | None:
    """The value masked-out pixels take, as (N, C, H, W), or ``None`` for zeros.

    Args:
        inputs: (N, C, H, W) model-ready images.
        baseline: ``"zero"``/``None`` (the model's input-space zero, i.e. the normalisation mean),
            ``"blur"`` (a Gaussian blur of each image, ``blur_sigma`` pixels), or a tensor that
            broadcasts to ``inputs``.
        blur_sigma: standard deviation of the blur, in pixels.
    """
    if baseline is None or (isinstance(baseline, str) and baseline == "zero"):
        return None
    if isinstance(baseline, Tensor):
        try:
            return torch.broadcast_to(baseline.to(inputs), inputs.shape)
        except RuntimeError as error:
            raise SiseError(
                f"baseline of shape {tuple(baseline.shape)} does not broadcast to the inputs' "
                f"shape {tuple(inputs.shape)}"
            ) from error
    if baseline == "blur":
        from torchvision.transforms.functional import gaussian_blur

        radius = max(1, int(3 * blur_sigma))
        size = min(2 * radius + 1, 2 * (min(inputs.shape[-2:]) // 2) - 1)
        return gaussian_blur(inputs, kernel_size=[size, size], sigma=[blur_sigma, blur_sigma])
    raise SiseError(f"unknown baseline {baseline!r}: use 'zero', 'blur' or a tensor")


def weighted_mask_sum(
    source: MaskSource,
    weights: Tensor,
    n_images: int,
    *,
    per_unit_area: bool = False,
    chunk: int = 64,
) -> Tensor:
    """``S_i = Σ_{m owned by i} w_m · m`` for every image i, as (N, H, W).

    With ``per_unit_area`` each mask is first divided by its area, ``m / Σ_λ m(λ)`` (SISE's
    contribution ``C_m``, which keeps large masks from rewarding the background).

    The reduction RISE, Score-CAM and SISE share after scoring; masks are regenerated chunk by
    chunk so the full stack of full-resolution masks never has to exist at once.
    """
    total = len(source)
    if total == 0:
        raise SiseError("no masks to sum")
    first = source.masks(0, min(chunk, total))
    height, width = first.shape[-2:]
    result = torch.zeros(n_images, height * width, device=weights.device, dtype=torch.float32)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        masks = first if start == 0 else source.masks(start, stop)
        flat = masks.reshape(stop - start, -1).float()
        scale = weights[start:stop, None]
        if per_unit_area:
            scale = scale / flat.sum(dim=1, keepdim=True).clamp_min(1e-12)
        weighted = flat * scale
        result.index_add_(0, source.owners[start:stop], weighted)
    return result.view(n_images, height, width)
