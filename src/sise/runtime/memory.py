"""How much memory a device has free, and a check that an allocation fits before it is made."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sise.errors import SiseError

#: Share of the available memory one allocation may take (the rest: the model, its activations,
#: the other processes).
USABLE_SHARE = 0.8


def available_bytes(device: torch.device | str) -> int | None:
    """Bytes that can still be allocated on ``device``, or ``None`` where that is not known.

    A CPU: the kernel's ``MemAvailable`` (``/proc/meminfo``, Linux), else the free physical
    pages (``os.sysconf``). A CUDA GPU: ``torch.cuda.mem_get_info``'s free bytes plus what
    PyTorch's caching allocator holds unused.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + cached)
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, device: torch.device | str, what: str, advice: str) -> None:
    """Refuse, before allocating, ``needed`` bytes that do not fit on ``device``.

    Raises:
        SiseError: ``needed`` is more than :data:`USABLE_SHARE` of :func:`available_bytes`; the
            message says how much ``what`` needs, how much there is, and ``advice``.
    """
    available = available_bytes(device)
    if available is None or needed <= USABLE_SHARE * available:
        return
    raise SiseError(
        f"{what} need {_size(needed)}, more than the {_size(available)} available on "
        f"{torch.device(device)}: {advice}"
    )


def _size(count: int) -> str:
    """Bytes in the largest unit that keeps a number >= 1 (``"196.0 GB"``)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
