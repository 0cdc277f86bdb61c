"""Masks and baselines: what a masked-scoring method scores, independent of how fast.

A mask source makes masks on demand, each tagged with the image it masks (:class:`MaskSource`:
tensors already in memory, feature maps up-sampled batch by batch, several sources in a row);
:class:`MaskSums` adds scored masks into per-group sums as they are scored; :func:`make_baseline`
is the value a masked-out pixel takes. The engine that scores them in batches is
:func:`sise.runtime.engine.score_masked`.
"""

from __future__ import annotations

import bisect
import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor

from sise.core.postprocess import minmax_normalize, upsample
from sise.errors import SiseError


class MaskSource(Protocol):
    """Masks made on demand: ``len(source)`` masks, mask ``i`` applies to image ``owners[i]``."""

    owners: Tensor

    def __len__(self) -> int: ...

    def masks(self, start: int, stop: int) -> Tensor:
        """Masks ``start:stop`` as a (stop - start, H, W) float tensor in [0, 1].

        The engine's own sources also take ``out=``, a (stop - start, H, W) float32 tensor to
        write the masks into (the engine's reusable mask buffer); a source without it still works,
        its masks are copied into the buffer.
        """
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

    def masks(self, start: int, stop: int, out: Tensor | None = None) -> Tensor:
        if out is None:
            return self._masks[start:stop]
        return out.copy_(self._masks[start:stop])


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

    def masks(self, start: int, stop: int, out: Tensor | None = None) -> Tensor:
        up = upsample(self._maps[start:stop].float(), self._size)
        # minmax_normalize, in place: no full-resolution temporaries beyond the up-sampled maps.
        # A constant map becomes zeros (its span is 0), as in sise.core.postprocess.minmax_normalize.
        flat = up.view(up.shape[0], -1)
        low = flat.amin(dim=1)
        span = flat.amax(dim=1) - low
        scale = torch.where(
            span > 1e-12, span.clamp_min(1e-12).reciprocal(), torch.zeros_like(span)
        )
        target = up if out is None else out
        torch.sub(up, low.view(-1, 1, 1), out=target)
        return target.mul_(scale.view(-1, 1, 1))


def repeated_maps(activations: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Which kept feature maps repeat an earlier one, and how many kept maps each one stands for.

    Two maps of the same image whose min-max normalisations are equal (``a = s·b + t`` with
    ``s > 0``) give the same mask ``Ω(A) = minmax(up(A))``, so the same score: they need one
    forward pass between them. Tiny feature maps repeat: on the real EfficientNet-Lite0 and the two
    packaged photos, 41 of the 597 maps SISE keeps at 64 px repeat another, all of them 2x2 maps of
    the deepest layer, and 36 of 827 at 224 px, all 7x7 maps of that layer.

    Fixed shapes throughout, so nothing waits on the device: per image, the normalised maps are
    sorted (stably) by a projection onto fixed weights, and a kept map repeats when it
    equals, element for element, the kept map sorted just before it. Equal maps have equal
    projections, so they sort next to each other, the lowest channel first; a different map with
    the same projection can only keep two equal maps apart (a repeat then goes unnoticed and is
    scored), never merge different maps.

    Args:
        activations: (N, K, h, w) feature maps of a layer.
        keep: (N, K) the maps selected.

    Returns:
        ``(repeat, counts)``, both (N, K): ``repeat`` marks the kept maps that equal an earlier
        kept map of their image; ``counts`` holds, for each kept map that is not a repeat, the
        number of kept maps it stands for (itself included), and 0 elsewhere. Masks of the maps
        ``keep & ~repeat``, weighted by ``counts``, sum to the masks of all kept maps, up to float
        rounding (equal masks from maps of different scale may differ in their last bit).
    """
    rows = minmax_normalize(activations.float()).flatten(2)  # (N, K, h·w)
    # fixed pseudo-random weights in [0.5, 1.5), made on the device (a copy from the host would
    # wait on it); irregular, so that distinct maps of a few simple values rarely tie
    weights = torch.arange(1, rows.shape[2] + 1, device=rows.device, dtype=rows.dtype)
    weights = ((weights * 12.9898).sin() * 437.5853).frac().abs() + 0.5
    # maps not kept sort last, so that they never stand between two equal kept maps
    keys = torch.where(keep, (rows * weights).sum(dim=2), torch.inf)
    order = torch.sort(keys, dim=1, stable=True).indices
    rows = rows.gather(1, order[:, :, None].expand_as(rows))
    kept = keep.gather(1, order)
    same = (rows[:, 1:] == rows[:, :-1]).all(dim=2) & kept[:, 1:] & kept[:, :-1]
    repeat = torch.cat([torch.zeros_like(same[:, :1]), same], dim=1)
    # a run of equal maps starts at each map that is not a repeat; count the kept maps in each
    run = (~repeat).long().cumsum(dim=1) - 1
    sizes = torch.zeros_like(run).scatter_add_(1, run, kept.long())
    counts = torch.where(kept & ~repeat, sizes.gather(1, run), 0)
    # back to channel order
    return repeat.scatter(1, order, repeat), counts.scatter(1, order, counts)


class ConcatMasks:
    """Several mask sources scored as one, so batches stay full across layers or images."""

    def __init__(self, sources: Sequence[MaskSource]) -> None:
        self._sources = [s for s in sources if len(s) > 0]
        self._take_out = [takes_out(s) for s in self._sources]
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

    def masks(self, start: int, stop: int, out: Tensor | None = None) -> Tensor:
        parts = []
        for index, source in enumerate(self._sources):
            first, end = self._starts[index], self._starts[index + 1]
            lo, hi = max(start, first), min(stop, end)
            if lo >= hi:
                continue
            if out is None:
                parts.append(source.masks(lo - first, hi - first))
            elif self._take_out[index]:
                source.masks(lo - first, hi - first, out=out[lo - start : hi - start])  # type: ignore[call-arg]
            else:
                out[lo - start : hi - start].copy_(source.masks(lo - first, hi - first))
        if out is not None:
            return out
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def takes_out(source: MaskSource) -> bool:
    """Whether ``source.masks`` accepts ``out=`` (the engine's sources do; others may not)."""
    try:
        return "out" in inspect.signature(source.masks).parameters
    except (TypeError, ValueError):
        return False


class MaskSums:
    """``S_g = Σ_{m in g} w_m · m``, summed batch by batch while :func:`score_masked` scores them.

    The masks come in groups of consecutive masks, whose sizes are known on the host
    (``segments``, in mask order: e.g. SISE's masks layer by layer and image by image, RISE's
    image by image). Each scored batch adds its masks, weighted by their scores, to their groups'
    sums, so the masks are made once, not again after scoring. Each group's part of a batch is one
    matrix-vector product (``addmv``), so nothing waits on the device and a CPU sums as fast as a
    plain ``sum``.

    Args:
        segments: the number of masks in each group, in mask order (zeros allowed).
        size: (H, W) of the masks.
        device: where the sums live (the masks' device).
        per_unit_area: divide each mask by its area ``Σ_λ m(λ)`` first (SISE's ``C_m``).
        counts: (M,) how many equal masks each mask stands for (:func:`repeated_maps`): its
            weight is multiplied by that. ``None``: one each.
    """

    def __init__(
        self,
        segments: Sequence[int],
        size: tuple[int, int],
        device: torch.device | str,
        *,
        per_unit_area: bool = False,
        counts: Tensor | None = None,
    ) -> None:
        self.offsets = [0, *itertools.accumulate(segments)]
        self.size = size
        self.per_unit_area = per_unit_area
        if counts is not None and counts.shape != (self.offsets[-1],):
            raise SiseError(f"counts must have one entry per mask ({self.offsets[-1]})")
        self.counts = counts
        self.sums = torch.zeros(len(segments), size[0] * size[1], device=device)

    def __len__(self) -> int:
        """The number of masks the groups hold."""
        return self.offsets[-1]

    def add(self, start: int, masks: Tensor, weights: Tensor) -> None:
        """Add masks ``start : start + len(masks)``, weighted by ``weights``, to their groups."""
        stop = start + masks.shape[0]
        if not 0 <= start <= stop <= len(self):
            raise SiseError(f"masks {start}:{stop} are not among the {len(self)} masks summed")
        flat = masks.reshape(masks.shape[0], -1).float()
        scale = weights.float()
        if self.per_unit_area:
            scale = scale / flat.sum(dim=1).clamp_min(1e-12)
        if self.counts is not None:
            scale = scale * self.counts[start:stop].to(scale)
        group = bisect.bisect_right(self.offsets, start) - 1
        position = start
        while position < stop:
            end = min(stop, self.offsets[group + 1])
            if end > position:
                rows = slice(position - start, end - start)
                self.sums[group].addmv_(flat[rows].T, scale[rows])
            position = end
            group += 1

    def result(self) -> Tensor:
        """(G, H, W): each group's sum."""
        return self.sums.view(-1, *self.size)


def mask_writer(source: MaskSource) -> Callable[[int, int, Tensor], Tensor]:
    """``write(start, stop, buffer)``: masks ``start:stop``, written into ``buffer`` if that helps.

    Masks already in memory (:class:`TensorMasks`) are returned as views, uncopied; masks made on
    the fly are written into the buffer when the source takes ``out=``; any other source's masks
    are returned as they come.
    """
    if isinstance(source, TensorMasks) or not takes_out(source):
        return lambda start, stop, buffer: source.masks(start, stop)
    return lambda start, stop, buffer: source.masks(start, stop, out=buffer)  # type: ignore[call-arg]


BaselineSpec = str | Tensor | None


def make_baseline(
    inputs: Tensor, baseline: BaselineSpec, blur_sigma: float = 10.0
) -> Tensor | None:
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
