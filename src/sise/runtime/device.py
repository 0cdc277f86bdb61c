"""Running the masked forwards fast: precision, memory format, batch size, and checking fidelity.

Everything here is opt-in. The defaults (fp32, the model's own memory format) give the reference
maps; the fast path trades a little numerical fidelity (bf16) for speed, and :func:`fidelity`
measures what was traded.
"""

from __future__ import annotations

import contextlib
import platform
import time
import warnings
import weakref
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from sise.errors import SiseError

Precision = Literal["fp32", "bf16", "fp16"]
BatchSize = int | Literal["auto"]
#: ``False``: eager forwards; ``True``: ``torch.compile``; ``"cudagraphs"``: compiled and replayed
#: as CUDA graphs (``mode="reduce-overhead"``; CUDA only, plain compile elsewhere).
Compile = bool | Literal["cudagraphs"]

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


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Inside the block, CUDA float32 convolutions and matmuls run in true fp32, not TF32.

    cuDNN convolutions use TF32 by default on Ampere and later GPUs (``torch.backends.cudnn.
    allow_tf32``): about 10 mantissa bits instead of 23, and a rounding that depends on the
    algorithm cuDNN picks for each batch shape. SISE's feature-map selection thresholds sums of
    gradients at μ·β and Otsu's threshold, so TF32 noise flips maps near the threshold, and the
    same image then gets a different explanation alone than packed with others. Both flags are
    process-wide: they are set for the duration of the block and restored afterwards (not
    thread-safe). A no-op on a CPU.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


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
    images through the model, and resets CUDA's peak-memory statistics. It runs once per model
    and input shape, precision and memory format: the memory per sample is remembered (weakly
    keyed by the model), and later calls only read the free memory again.

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
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    key = (tuple(inputs.shape[1:]), inputs.dtype, str(device), autocast_dtype, channels_last)
    known = _PER_SAMPLE_BYTES.setdefault(model, {})
    if key not in known:
        known[key] = _per_sample_bytes(model, inputs, autocast_dtype, memory_format)
    free, _total = torch.cuda.mem_get_info(device)
    fits = int(free * memory_fraction / known[key])
    size = fits // 8 * 8 if fits >= 8 else fits
    return max(1, min(size, cap))


#: Memory per masked sample measured by :func:`auto_batch_size`, per model (weakly) and setting.
_PER_SAMPLE_BYTES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, float]] = (
    weakref.WeakKeyDictionary()
)


def _per_sample_bytes(
    model: nn.Module,
    inputs: Tensor,
    autocast_dtype: torch.dtype | None,
    memory_format: torch.memory_format,
) -> float:
    """Device memory one more masked sample takes, with a 25% margin (two trial forwards)."""
    device = inputs.device
    c, h, w = inputs.shape[1:]

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
    return per_sample * 1.25


#: Conv and linear weights are stored in the autocast dtype once, instead of being cast at every
#: forward; autocast would cast them to the same values (round to nearest), so nothing changes.
_AUTOCAST_WEIGHT_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def compile_setting(value: object) -> Compile:
    """Check a ``compile`` option: ``False``, ``True`` or ``"cudagraphs"``."""
    if isinstance(value, bool) or value == "cudagraphs":
        return value
    raise SiseError(f"compile must be False, True or 'cudagraphs', got {value!r}")


#: How many compilations of one compiled function torch keeps inside :func:`room_to_recompile`.
RECOMPILE_LIMIT = 64


def room_to_recompile() -> contextlib.AbstractContextManager:
    """Inside the block, torch.compile keeps up to :data:`RECOMPILE_LIMIT` compilations per
    function instead of its default 8 (``torch._dynamo.config.recompile_limit``), never fewer
    than the user's own setting.

    Every model, input shape and setting compiled by this package shares one function's cache
    (the compiled functions are closures of one code object), and past the limit torch runs the
    function uncompiled without telling the caller: a process that explains with a few models and
    sizes (``sise app``, a benchmark of several models) would silently lose the compiled path.
    """
    import torch._dynamo.config as config

    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    return config.patch(**{name: max(getattr(config, name), RECOMPILE_LIMIT)})


class CompiledForward:
    """The model's forward for masked inputs, compiled once with ``torch.compile`` and reused.

    The compiled function runs ``torch.func.functional_call(model, weights, (x,))`` under the
    autocast of the masked forwards, with weights this object holds: the model's own tensors,
    or copies of them in channels-last format and with conv/linear weights already in the
    autocast dtype. The user's model is not changed: functional_call swaps the weights in for the
    call only, as :func:`channels_last_weights` does, and the copies live here, so CUDA graphs
    (``cudagraphs=True``) always see the same weight addresses. The copies are made again when
    the model's weights change (another tensor, or an in-place update).

    Batch sizes: the batch dimension is compiled dynamic (``maybe_mark_dynamic``), so one
    compilation serves every batch size; the engine pads batches to multiples of 8 rows, and with
    CUDA graphs to multiples of an eighth of the batch, so that at most eight graphs are recorded
    per input shape.

    Cost: the first call per input shape, precision and memory format compiles (seconds to a
    minute: :attr:`compile_seconds` sums the first calls). If compiling or running the compiled
    model fails for any reason, :meth:`__call__` returns ``None`` from then on, the engine runs
    the model eagerly, and a warning says why once (:attr:`failure`).

    Args:
        model: the classifier, in the mode the masked forwards run in.
        cudagraphs: on CUDA, ``torch.compile(mode="reduce-overhead")``: the compiled forward is
            replayed as a CUDA graph (no per-kernel launch cost).
    """

    def __init__(self, model: nn.Module, cudagraphs: bool = False) -> None:
        self.model = model
        self.cudagraphs = cudagraphs
        self.failure: str | None = None
        self.compile_seconds = 0.0
        self._entries: dict[tuple, _CompiledEntry] = {}

    def __call__(
        self, batch: Tensor, autocast_dtype: torch.dtype | None, channels_last: bool
    ) -> Tensor | None:
        """The model's output on ``batch``, compiled; ``None`` if this model cannot be compiled."""
        if self.failure is not None:
            return None
        start = time.perf_counter()
        try:
            entry = self._entry(batch.device, autocast_dtype, channels_last)
            first = (tuple(batch.shape[1:]), batch.dtype) not in entry.seen
            if batch.shape[0] > 1:
                torch._dynamo.maybe_mark_dynamic(batch, 0)
            if entry.cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            with room_to_recompile():
                output = entry.function(entry.weights.tensors, batch)
        except Exception as error:
            self.failure = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
            warnings.warn(
                f"torch.compile could not run this model ({self.failure}); the masked forwards "
                "run eagerly instead",
                stacklevel=3,
            )
            return None
        if first:
            entry.seen.add((tuple(batch.shape[1:]), batch.dtype))
            self.compile_seconds += time.perf_counter() - start
        return output

    def _entry(
        self, device: torch.device, autocast_dtype: torch.dtype | None, channels_last: bool
    ) -> _CompiledEntry:
        """The compiled forward for this setting, built on first use, weights up to date."""
        import torch._dynamo  # noqa: F401 - slow to import; only the compiled path needs it

        key = (str(device), autocast_dtype, channels_last)
        if key not in self._entries:
            self._entries[key] = _CompiledEntry(
                self.model, device, autocast_dtype, channels_last, self.cudagraphs
            )
        entry = self._entries[key]
        entry.weights.refresh(self.model)
        return entry


class _CompiledEntry:
    """One compiled forward: for one device, autocast dtype and memory format."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        channels_last: bool,
        cudagraphs: bool,
    ) -> None:
        self.cudagraphs = cudagraphs and device.type == "cuda"
        self.seen: set[tuple] = set()
        self.weights = CompiledWeights(autocast_dtype, channels_last, static=self.cudagraphs)

        def forward(weights: dict[str, Tensor], x: Tensor) -> Tensor:
            with autocast(device, autocast_dtype):
                return torch.func.functional_call(model, weights, (x,))

        self.function = torch.compile(forward, mode="reduce-overhead" if self.cudagraphs else None)


class CompiledWeights:
    """The weights a compiled function runs a model with (``torch.func.functional_call``).

    Detached from the model's parameters, so a compiled backward computes no weight gradient, and
    made again when the model's weights change (another tensor, or an in-place update).

    Args:
        autocast_dtype: conv and linear weights are stored in this dtype (autocast would cast
            them to the same values at every forward); ``None``: the model's own dtype.
        channels_last: 4-D weights are stored channels-last.
        static: mark the tensors as having a fixed address, so that CUDA graphs read them in place
            instead of copying them at every replay.
    """

    def __init__(
        self, autocast_dtype: torch.dtype | None, channels_last: bool, static: bool
    ) -> None:
        self._autocast_dtype = autocast_dtype
        self._channels_last = channels_last
        self._static = static
        self._sources: list[tuple[int, int, int]] = []
        self.tensors: dict[str, Tensor] = {}

    def refresh(self, model: nn.Module) -> dict[str, Tensor]:
        """The weights for ``model`` now, (re)made if they changed since they were made."""
        versions = _weight_versions(model)
        if versions == self._sources:
            return self.tensors
        cast = {
            id(tensor)
            for module in model.modules()
            if type(module) in _AUTOCAST_WEIGHT_MODULES
            for tensor in module.parameters(recurse=False)
        }
        weights: dict[str, Tensor] = {}
        with torch.no_grad():
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                prepared = tensor.detach()
                if self._autocast_dtype is not None and id(tensor) in cast:
                    prepared = prepared.to(self._autocast_dtype)
                if self._channels_last and prepared.ndim == 4:
                    prepared = prepared.contiguous(memory_format=torch.channels_last)
                if self._static:
                    torch._dynamo.mark_static_address(prepared)
                weights[name] = prepared
        self.tensors, self._sources = weights, versions
        return weights


def _weight_versions(model: nn.Module) -> list[tuple[int, int, int]]:
    """Identity, storage address and version counter of every weight (changes on any update)."""
    return [
        (id(tensor), tensor.data_ptr(), tensor._version)
        for tensor in [*model.parameters(), *model.buffers()]
    ]


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
