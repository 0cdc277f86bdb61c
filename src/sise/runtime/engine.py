"""The batched masked-scoring engine shared by SISE, Score-CAM, RISE and the model-truth metrics.

Perturbation methods spend nearly all their time here: score ``Ψ_c(b + (x - b) ⊙ m)`` for
thousands of masks ``m``. The engine

* builds each batch of masked inputs in place in one reusable device buffer,
* packs the masks of several images into the same batches (each mask knows its image),
* makes masks lazily, batch by batch, so the full-resolution stack never has to exist at once,
* and never copies to the host inside the loop, so a GPU is never waiting on Python.
"""

from __future__ import annotations

import bisect
import contextlib
import inspect
import itertools
import warnings
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from sise.core.postprocess import minmax_normalize, upsample
from sise.core.scores import ScoreKind
from sise.errors import SiseError
from sise.runtime.allocator import retained_freed_memory
from sise.runtime.device import CompiledForward, auto_batch_size, autocast, channels_last_weights
from sise.runtime.folding import folded_batch_norms
from sise.runtime.prepacking import prepacked_convolutions
from sise.runtime.progress import progress_bar
from sise.targets import ClassScore, FunctionTarget, Target, checked_scores, first_rows

#: The compiled path pads each batch to a multiple of this many rows (CUDA graphs: see
#: :func:`_row_quantum`).
ROW_MULTIPLE = 8
#: Batch norms are folded into their convolutions (:mod:`sise.runtime.folding`) from this many masks up:
#: folding costs about a third of one batch-1 forward (ResNet-50 on a CPU: 52 against 140 ms)
#: and saves about a tenth of every forward.
FOLD_MIN_MASKS = 16


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
        self._take_out = [_takes_out(s) for s in self._sources]
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


def _takes_out(source: MaskSource) -> bool:
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


def _mask_writer(source: MaskSource) -> Callable[[int, int, Tensor], Tensor]:
    """``write(start, stop, buffer)``: masks ``start:stop``, written into ``buffer`` if that helps.

    Masks already in memory (:class:`TensorMasks`) are returned as views, uncopied; masks made on
    the fly are written into the buffer when the source takes ``out=``; any other source's masks
    are returned as they come.
    """
    if isinstance(source, TensorMasks) or not _takes_out(source):
        return lambda start, stop, buffer: source.masks(start, stop)
    return lambda start, stop, buffer: source.masks(start, stop, out=buffer)  # type: ignore[call-arg]


@torch.no_grad()
def score_masked(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor | Target | Callable[[Tensor], Tensor],
    source: MaskSource,
    *,
    score: ScoreKind = "softmax",
    baseline: Tensor | None = None,
    batch_size: int | Literal["auto"] = 64,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool | None = None,
    compiled: CompiledForward | None = None,
    sums: MaskSums | None = None,
    on_batch: Callable[[int], None] | None = None,
    progress: str | None = None,
) -> Tensor:
    """Score every masked input ``b + (x - b) ⊙ m`` with the model, in batches.

    The loop never waits on the device: masks are made on the inputs' device, written into one
    reusable mask buffer and multiplied into one reusable input buffer, and the scores stay on
    the device (no ``.item()``, no data-dependent shapes), so a GPU runs ahead of Python. Masks of
    several images share batches; each batch gathers the images its masks belong to.

    Args:
        model: the classifier, already in the mode it should run in.
        inputs: (N, C, H, W) model-ready images.
        targets: what is explained: (N,) class indices (scored with ``score``) or a target
            (:mod:`sise.targets`), which gets the rows of each batch with their images
            (:meth:`sise.targets.Target.rows`).
        source: the masks, each tagged with the image it masks.
        score: the explained score Ψ_c of class indices.
        baseline: (N, C, H, W) value a masked-out pixel takes; ``None`` means zeros (the model's
            input-space zero, i.e. the normalisation mean).
        batch_size: masked inputs per forward pass, or ``"auto"``: on CUDA as many as fit in the
            free device memory (:func:`sise.runtime.device.auto_batch_size` probes with one trial forward),
            on a CPU :data:`sise.runtime.device.CPU_BATCH_SIZE`.
        autocast_dtype: run the forwards under autocast to this dtype (e.g. ``torch.bfloat16``).
            With ``torch.float16``, masked inputs whose score overflows (not finite) are scored
            again in float32, with a warning; checking costs one wait on the device per call.
        channels_last: ``True``: run the masked forwards in channels-last memory format: the
            input buffer is channels-last and, for the duration of this call only, so are the
            model's 4-D weights (:func:`sise.runtime.device.channels_last_weights`; each parameter gets
            its original tensor back afterwards, so the user's model is left as it was).
            ``False``: the input buffer is contiguous (NCHW) and the model is not touched.
            ``None`` (default, auto): on a CPU only the input buffer is channels-last, which
            makes oneDNN run the network channels-last without touching the weights (their
            layout does not matter there: they are prepacked, :mod:`sise.runtime.prepacking`); a model
            that cannot take such an input (one that calls ``.view()`` on a feature map) falls
            back to NCHW at its first batch (``benchmarks/cpu_layouts.py`` measures the layouts).
            Otherwise: ``False``.
        compiled: run the forwards through this :class:`sise.runtime.device.CompiledForward` of
            ``model`` (``torch.compile``; build it once and pass it to every call, so the model
            compiles once). Batches are then balanced and padded to a multiple of 8 rows (with
            CUDA graphs: of an eighth of the batch size, so that few graphs are recorded;
            :func:`_row_quantum`); the padding rows are computed and dropped. Where compiling
            fails the forwards run eagerly.
        sums: also add each batch's masks, weighted by their scores, to these group sums
            (:class:`MaskSums`), so that a method needs not make its masks a second time.
        on_batch: called with the number of masks after each batch.
        progress: a label: draw a progress bar over the masked forwards with it.

    Returns:
        (M,) float32 scores, on the inputs' device, in the order of the masks.
    """
    if isinstance(targets, Tensor):
        targets = ClassScore(targets, score)
    elif not isinstance(targets, Target):
        targets = FunctionTarget(targets)
    total = len(source)
    if progress is not None and total > 0:
        with progress_bar(total, progress, True) as advance:

            def both(count: int) -> None:
                advance(count)
                if on_batch is not None:
                    on_batch(count)

            return score_masked(
                model,
                inputs,
                targets,
                source,
                score=score,
                baseline=baseline,
                batch_size=batch_size,
                autocast_dtype=autocast_dtype,
                channels_last=channels_last,
                compiled=compiled,
                sums=sums,
                on_batch=both,
            )
    device = inputs.device
    scores = torch.empty(total, device=device, dtype=torch.float32)
    if total == 0:
        return scores
    n, c, h, w = inputs.shape
    if channels_last is None:
        input_cl = device.type == "cpu"
        weights_cl, may_fall_back = False, True
    else:
        input_cl = weights_cl = bool(channels_last)
        may_fall_back = False
    if isinstance(batch_size, str):
        if batch_size != "auto":
            raise SiseError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
        with channels_last_weights(model) if weights_cl else contextlib.nullcontext():
            batch_size = auto_batch_size(
                model, inputs, autocast_dtype=autocast_dtype, channels_last=input_cl, limit=total
            )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SiseError(f"batch_size must be >= 1 or 'auto', got {batch_size!r}")
    step = min(batch_size, total)
    rows = step
    if compiled is not None:
        quantum = _row_quantum(batch_size, compiled.cudagraphs)
        step, rows = _balanced_batches(total, batch_size, quantum)

    def new_buffer(cl: bool) -> Tensor:
        memory_format = torch.channels_last if cl else torch.contiguous_format
        # zeros for the compiled path: its padding rows are computed, so they must hold numbers
        make = torch.empty if compiled is None else torch.zeros
        return make((rows, c, h, w), device=device, dtype=inputs.dtype).to(
            memory_format=memory_format
        )

    buffer = new_buffer(input_cl)
    write_masks = _mask_writer(source)
    mask_buffer = torch.empty((step, h, w), device=device, dtype=torch.float32)
    delta = inputs if baseline is None else inputs - baseline
    single = n == 1

    def fill(start: int, stop: int, batch: Tensor) -> tuple[Tensor, Tensor]:
        """The masked inputs ``start:stop`` written into ``batch``; returns owners and masks."""
        masks = write_masks(start, stop, mask_buffer[: stop - start])
        owners = source.owners[start:stop]
        # One image: broadcast it instead of gathering copies of it.
        image_delta = delta if single else delta.index_select(0, owners)
        torch.mul(image_delta, masks.to(inputs.dtype)[:, None], out=batch)
        if baseline is not None:
            batch.add_(baseline if single else baseline.index_select(0, owners))
        return owners, masks

    def forward(batch: Tensor) -> Tensor:
        if compiled is not None:
            logits = compiled(batch, autocast_dtype, weights_cl)
            if logits is not None:
                return logits
        with autocast(device, autocast_dtype):
            return model(batch)

    # the compiled forward holds its own channels-last weights
    swap_weights = weights_cl and compiled is None
    # the compiled forward runs the model's own weights through torch.compile; a few masks do
    # not pay for rewriting the model
    rewrite = compiled is None and total >= FOLD_MIN_MASKS
    with (
        # fresh pages for every batch's activations cost more than the convolutions on a CPU
        retained_freed_memory() if device.type == "cpu" else contextlib.nullcontext(),
        channels_last_weights(model) if swap_weights else contextlib.nullcontext(),
        folded_batch_norms(model, example=inputs[:1]) if rewrite else contextlib.nullcontext(),
        # inside the fold, so that the folded weights are the ones packed
        prepacked_convolutions(model, example=inputs[:1])
        if rewrite and device.type == "cpu"
        else contextlib.nullcontext(),
    ):
        for start in range(0, total, step):
            stop = min(start + step, total)
            count = stop - start
            run_rows = count if compiled is None else _padded(count, batch_size, quantum)
            batch = buffer[:run_rows]
            owners, masks = fill(start, stop, batch[:count])
            try:
                logits = forward(batch)
            except RuntimeError:
                if not (may_fall_back and input_cl and start == 0):
                    raise
                # auto channels-last: this model wants NCHW (e.g. it .view()s a feature map)
                input_cl, buffer = False, new_buffer(False)
                batch = buffer[:run_rows]
                owners, masks = fill(start, stop, batch[:count])
                logits = forward(batch)
            batch_scores = checked_scores(targets.rows(owners), first_rows(logits, count), count)
            scores[start:stop] = batch_scores
            if sums is not None:
                if autocast_dtype == torch.float16:
                    # an overflowed score is scored again below and added then
                    batch_scores = torch.where(batch_scores.isfinite(), batch_scores, 0.0)
                sums.add(start, masks, batch_scores)
            if on_batch is not None:
                on_batch(count)
    if autocast_dtype == torch.float16:
        _rescore_overflows(
            scores, model, inputs, targets, source, score, baseline, batch_size, channels_last, sums
        )
    return scores


def _rescore_overflows(
    scores: Tensor,
    model: nn.Module,
    inputs: Tensor,
    targets: Target,
    source: MaskSource,
    score: ScoreKind,
    baseline: Tensor | None,
    batch_size: int,
    channels_last: bool | None,
    sums: MaskSums | None = None,
) -> None:
    """Score again in float32 the masked inputs whose float16 score is not finite (in place).

    Their masks, weighted by the new scores, are added to ``sums`` (which got them with weight 0).

    float16 overflows above 65,504; an activation that large turns the score into inf or NaN.
    This costs one wait on the device per call (to learn whether any score overflowed). An
    overflow that a later layer hides (e.g. ReLU6 clamps inf to 6) gives a finite, wrong score
    and is not caught here.
    """
    bad = (~torch.isfinite(scores)).nonzero().flatten()
    if bad.numel() == 0:
        return
    warnings.warn(
        f"{bad.numel()} of {scores.numel()} masked inputs overflowed float16; they are scored "
        "again in float32",
        stacklevel=3,
    )
    indices = bad.tolist()
    masks = torch.cat([source.masks(i, i + 1) for i in indices])
    fresh = score_masked(
        model,
        inputs,
        targets,
        TensorMasks(masks, source.owners[bad]),
        score=score,
        baseline=baseline,
        batch_size=batch_size,
        channels_last=channels_last,
    )
    scores[bad] = fresh
    if sums is not None:
        for row, index in enumerate(indices):
            sums.add(index, masks[row : row + 1], fresh[row : row + 1])


def _row_quantum(batch_size: int, cudagraphs: bool) -> int:
    """Rows a compiled batch is padded to a multiple of.

    :data:`ROW_MULTIPLE` (8): tensor-core kernels want multiples of 8, and the batch dimension is
    compiled dynamic, so other sizes cost nothing. On an H100 (ResNet-50, fp16, channels-last,
    batch 512, ``benchmarks/results/gpu_h100_2/``) SISE's 1,875 masks ran as 4 × 472 rows in
    0.114 s where 4 × 512 (a multiple of an eighth of the batch) took 0.142 s (fastest 0.120),
    and Ada-SISE's 672 as 2 × 336 in 0.070 s against 2 × 384 in 0.078 s; an earlier run of
    unpadded odd sizes (469, 337) was slower than either. With CUDA graphs every batch size is
    recorded as its own graph, so there the multiple is an eighth of the batch size (at most
    eight graphs per input shape).
    """
    return max(8, batch_size // 8) if cudagraphs else ROW_MULTIPLE


def _balanced_batches(total: int, batch_size: int, quantum: int = ROW_MULTIPLE) -> tuple[int, int]:
    """``(step, rows)`` for the compiled path: masks per batch, and rows each batch runs with.

    As few batches as ``batch_size`` allows, of equal size (``step``), each run padded to
    ``rows``, the next multiple of ``quantum`` (:func:`_row_quantum`); the padding rows are
    computed and dropped.
    """
    batches = -(-total // batch_size)
    step = -(-total // batches)
    return step, _padded(step, batch_size, quantum)


def _padded(count: int, batch_size: int, quantum: int = ROW_MULTIPLE) -> int:
    """``count`` rounded up to a multiple of ``quantum``, at most ``batch_size``."""
    return min(batch_size, -(-count // quantum) * quantum)


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
