"""Running the masked forwards fast: precision, memory format, batch size, and checking fidelity.

Everything here is opt-in. The defaults (fp32, the model's own memory format) give the reference
maps; the fast path trades a little numerical fidelity (bf16) for speed, and :func:`fidelity`
measures what was traded.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from sise.errors import SiseError

Precision = Literal["fp32", "bf16", "fp16"]
BatchSize = int | Literal["auto"]

_PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "float32": None,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}

#: Masked inputs per forward pass on a CPU when ``batch_size="auto"``. CPU throughput is flat
#: from about 16 images per batch; larger batches only cost cache and memory.
CPU_BATCH_SIZE = 32

#: Upper bound of an automatic batch size on an accelerator.
MAX_AUTO_BATCH_SIZE = 512


def autocast_dtype_for(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision name: ``"fp32"`` → ``None`` (no autocast), ``"bf16"``,
    ``"fp16"``."""
    try:
        return _PRECISIONS[precision.lower()]
    except (KeyError, AttributeError):
        raise SiseError(f"unknown precision {precision!r}: use 'fp32', 'bf16' or 'fp16'") from None


@contextlib.contextmanager
def channels_last_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Store the model's 4-D parameters and buffers in channels-last format inside the block.

    The same ``Parameter`` objects are kept (only their ``.data`` is swapped), and on exit each one
    gets back the very tensor it had before, so the model leaves the block exactly as it came in:
    same memory format, same storage, nothing copied back. It costs one extra copy of the 4-D
    weights while the block runs. Not thread-safe: do not run the same model elsewhere meanwhile.
    """
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                if tensor.ndim == 4 and not tensor.is_contiguous(memory_format=torch.channels_last):
                    saved.append((tensor, tensor.data))
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        yield model
    finally:
        for tensor, data in saved:
            tensor.data = data


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on the device's type, or nothing for ``None``/float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _first_tensor(output: object) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    return None


def auto_batch_size(
    model: nn.Module,
    inputs: Tensor,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    limit: int | None = None,
    memory_fraction: float = 0.6,
    cpu_default: int = CPU_BATCH_SIZE,
) -> int:
    """A batch size for the masked forwards of ``model`` on inputs shaped like ``inputs``.

    On a CPU this is ``cpu_default``. On CUDA it probes: two trial forwards (2 and 8 inputs)
    measure the peak memory per sample (activations, plus the masked input and its mask), and the
    batch is the number of samples that fit in ``memory_fraction`` of the free device memory
    (``torch.cuda.mem_get_info``), rounded down to a multiple of 8 and capped at
    :data:`MAX_AUTO_BATCH_SIZE`. The probe synchronises, before any masked forward, runs 10
    images through the model, and resets CUDA's peak-memory statistics.

    Args:
        model: the classifier, in the mode it will run in.
        inputs: (N, C, H, W) model-ready images, on the model's device.
        autocast_dtype: autocast dtype of the masked forwards (changes the activation memory).
        channels_last: whether the masked forwards run in channels-last format.
        limit: never return more than this (e.g. the number of masks).
        memory_fraction: share of the free memory the masked forwards may use.
        cpu_default: the batch size on devices that are not CUDA.
    """
    device = inputs.device
    cap = MAX_AUTO_BATCH_SIZE if limit is None else max(1, min(MAX_AUTO_BATCH_SIZE, limit))
    if device.type != "cuda":
        return max(1, min(cpu_default, cap))
    c, h, w = inputs.shape[1:]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def peak_of(rows: int) -> int:
        probe = inputs[:1].expand(rows, c, h, w).contiguous(memory_format=memory_format)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with torch.no_grad(), autocast(device, autocast_dtype):
            output = _first_tensor(model(probe))
        torch.cuda.synchronize(device)
        del output
        return torch.cuda.max_memory_allocated(device) - before

    # Two trial sizes: the slope is the memory per sample, without the per-call overheads
    # (cuDNN workspace, lazily loaded kernels) that a single trial would spread over its samples.
    small, large = 2, 8
    peak_small = peak_of(small)
    peak_large = peak_of(large)
    slope = (peak_large - peak_small) / (large - small)
    per_sample = slope if slope > 0 else max(1, peak_large) / large
    # plus the masked input and the mask the engine builds for each sample, plus a margin for the
    # allocator's rounding and fragmentation
    per_sample += inputs.element_size() * c * h * w + 4 * h * w * 3
    per_sample *= 1.25
    free, _total = torch.cuda.mem_get_info(device)
    fits = int(free * memory_fraction / per_sample)
    size = fits // 8 * 8 if fits >= 8 else fits
    return max(1, min(size, cap))


def fidelity(maps_a: Tensor, maps_b: Tensor, eps: float = 1e-12) -> Tensor:
    """Pearson correlation of each pair of maps: (..., H, W) and (..., H, W) → (...), e.g. (N,).

    Use it to check a fast path against the reference, e.g. bf16 maps against fp32 maps of the
    same inputs (1 means the same map up to an affine change of scale; > 0.99 is the target). A
    pair where either map is constant has no correlation and gives 1 if both are equal, else 0.
    """
    if maps_a.shape != maps_b.shape:
        raise SiseError(f"maps of shape {tuple(maps_a.shape)} and {tuple(maps_b.shape)} differ")
    if maps_a.ndim < 2:
        raise SiseError(f"expected (N, H, W) or (H, W) maps, got shape {tuple(maps_a.shape)}")
    a = maps_a.detach().reshape(-1, maps_a.shape[-2] * maps_a.shape[-1]).double()
    b = maps_b.detach().reshape(-1, maps_b.shape[-2] * maps_b.shape[-1]).double().to(a.device)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    norm_a, norm_b = a.norm(dim=1), b.norm(dim=1)
    degenerate = (norm_a <= eps) | (norm_b <= eps)
    corr = (a * b).sum(dim=1) / (norm_a * norm_b).clamp_min(eps)
    same = (a - b).abs().amax(dim=1) <= eps
    fallback = same.to(corr.dtype)
    return torch.where(degenerate, fallback, corr).float().reshape(maps_a.shape[:-2])


def device_name(device: torch.device | str) -> str:
    """A readable name of the device: the GPU's name, or the CPU's model name and core count."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name} ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (for timing); a no-op on a CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
