"""Speed: everything that makes an explanation fast without changing what it computes.

The one door is :class:`Runtime` (the settings) and :class:`ModelRuntime` (a runtime bound to a
model, what a method calls to evaluate it). Methods import nothing else from here; the
modules behind it are the batched masked-scoring engine (:mod:`sise.runtime.engine`), precision,
memory format and compiled forwards (:mod:`sise.runtime.device`), the compiled gradient pass,
and the CPU fast path (batch-norm folding, oneDNN prepacking, freed-memory reuse).
"""

from sise.runtime.allocator import retained_freed_memory
from sise.runtime.device import BatchSize, Compile, Precision, device_name, fidelity, synchronize
from sise.runtime.engine import score_masked
from sise.runtime.memory import available_bytes, check_fits
from sise.runtime.model_runtime import ModelRuntime
from sise.runtime.progress import progress_bar
from sise.runtime.settings import FIELDS, Runtime, default_device

__all__ = [
    "FIELDS",
    "BatchSize",
    "Compile",
    "ModelRuntime",
    "Precision",
    "Runtime",
    "available_bytes",
    "check_fits",
    "default_device",
    "device_name",
    "fidelity",
    "progress_bar",
    "retained_freed_memory",
    "score_masked",
    "synchronize",
]
