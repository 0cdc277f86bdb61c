"""Freed CPU memory kept for reuse during an explanation (glibc's malloc on Linux).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a block larger than its
mmap threshold (which grows with use, to 32 MiB at most) with a fresh ``mmap`` and gives it back
with ``munmap`` when it is freed, and it returns free memory at the top of its heap beyond a trim
threshold. A batch of 32 masked inputs makes activations of 50-400 MB at every layer, so each
batch gets fresh pages from the kernel, which zeroes every 4 KiB page at its first touch (a page
fault). On the real EfficientNet-Lite0 at 224 px, SISE spent more than half its time in them.

Inside :func:`retained_freed_memory`, freed blocks stay in glibc's heap and the next batch reuses
them: ``mallopt(M_MMAP_THRESHOLD, 2 GiB)`` and ``mallopt(M_TRIM_THRESHOLD, 2 GiB)``. On exit the
thresholds are set to what glibc's own adjustment reaches in a process that frees large blocks
(32 MiB and 64 MiB), so the process is left as a warmed-up PyTorch process would be; if the
block grew glibc's heap by more than 256 MiB (an explanation at 224 px adds 300-600 MB),
``malloc_trim(0)`` hands its free memory back to the system. A block that grew it less keeps it:
trimming after every call made the next call fault its pages in again (Lite0 at 64 px: 0.14 →
0.16 s a call; Grad-CAM at 224 px 0.018 → 0.022 s with a limit on the heap's free memory rather
than on its growth, 0.018 s now; ResNet-18 at 64 px, which adds about 150 MB, 0.51 → 0.54 s with
a limit of 128 MiB; ``benchmarks/results/20261127-0049_cpu_memory.txt`` for the limit as it is).
Measured on these 2 CPU cores, the real EfficientNet-Lite0 at 224 px, fresh processes, seconds
per call with glibc's settings against these (``benchmarks/cpu_memory.py``,
``benchmarks/results/20261126-2355_cpu_memory.txt``): SISE 3.56 → 1.65, Score-CAM 4.85 → 2.30,
RISE (1,000 masks) 9.85 → 4.64, Integrated Gradients 2.91 → 1.73, FullGrad 1.69 → 0.84,
Extremal Perturbation 1.70 → 1.49, Grad-CAM unchanged; page faults per SISE call 1.9 million →
0.18 million. The price: peak resident memory 1421 → 1569 MiB for SISE; after the call the
process holds less (1035 → 785 MiB).

In a thread other than the main one the gain is smaller: glibc's other arenas serve blocks over
64 MiB with ``mmap`` whatever the threshold (SISE on the Lite0 at 224 px in a thread: 3.7 →
2.9 s).

Set :data:`ENABLED` to ``False`` to leave glibc's settings alone. Elsewhere (not glibc, not
Linux) nothing happens. The settings are process-wide: nested and concurrent blocks share one
count, and only the last one out restores them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import threading
from collections.abc import Iterator

#: Whether :func:`retained_freed_memory` changes glibc's thresholds; set to ``False`` to opt out.
ENABLED = True

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Inside the block: blocks up to this size come from the heap, and free memory stays there.
_RETAIN = 2**31 - 1  # mallopt takes a C int
#: After the block: the thresholds glibc's dynamic adjustment grows to (DEFAULT_MMAP_THRESHOLD_MAX
#: on 64-bit, and twice that for trimming).
_MMAP_AFTER = 32 * 2**20
_TRIM_AFTER = 64 * 2**20
#: After a block that grew the heap by more than this, its free memory is handed back.
_KEEP_FREE = 256 * 2**20

_lock = threading.Lock()
_depth = 0
_heap_end_at_start = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, or ``None`` where malloc is another library's."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.sbrk.argtypes = [ctypes.c_ssize_t]
        libc.sbrk.restype = ctypes.c_void_p
    except (OSError, AttributeError):
        return None
    return libc


def _heap_end(libc: ctypes.CDLL) -> int:
    """The end of glibc's main heap (the program break): how far it has grown."""
    return int(libc.sbrk(0) or 0)


@contextlib.contextmanager
def retained_freed_memory() -> Iterator[None]:
    """Inside the block, memory PyTorch frees on the CPU is kept by glibc for the next batch."""
    global _depth, _heap_end_at_start
    libc = _glibc() if ENABLED else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _heap_end_at_start = _heap_end(libc)
            libc.mallopt(_M_MMAP_THRESHOLD, _RETAIN)
            libc.mallopt(_M_TRIM_THRESHOLD, _RETAIN)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_AFTER)
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_AFTER)
                if _heap_end(libc) - _heap_end_at_start > _KEEP_FREE:
                    libc.malloc_trim(0)
