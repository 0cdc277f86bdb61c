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
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from sise.core.masks import MaskSource, MaskSums, TensorMasks, mask_writer
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
    write_masks = mask_writer(source)
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
