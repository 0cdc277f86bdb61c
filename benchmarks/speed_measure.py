"""Measuring one explanation: wall time, process CPU time, forward passes and peak memory.

Part of ``benchmarks/speed.py`` (the command line and the report live there).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sise.runtime.device import synchronize


@dataclass
class Method:
    """One timed method: how to run it, and what its runs measured.

    ``run`` returns the (N, H, W) maps and, for SISE, its layer maps and kept-map counts (else
    ``None``), so the checks can compare the fast paths to the reference.
    """

    key: str
    label: str
    run: Callable[[], tuple[Tensor, Tensor | None, Tensor | None]]
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    first_time: float | None = None
    forwards: int = 0
    memory: int = -1
    maps: Tensor | None = None
    layer_maps: Tensor | None = None
    kept: Tensor | None = None
    compile_seconds: Callable[[], float] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def fastest(self) -> float:
        return min(self.times)


class ForwardCounter:
    """Counts the images that go through the model's forward (a pre-hook on the root module).

    A compiled forward (``torch.compile``) calls the same module through ``functional_call``, so
    the hook still fires; it is kept out of the compiled graph (``torch.compiler.disable``) so
    that counting does not make the batch size a compile-time constant.
    """

    def __init__(self, model: nn.Module) -> None:
        self.images = 0
        self._handle = model.register_forward_pre_hook(torch.compiler.disable(self._hook))

    def _hook(self, module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], Tensor) and args[0].ndim == 4:
            self.images += int(args[0].shape[0])

    def remove(self) -> None:
        self._handle.remove()


@contextlib.contextmanager
def cudnn_benchmark() -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = True`` for the block (cuDNN times its algorithms)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Yields a dict that holds ``bytes`` (peak above the start) and ``how`` after the block."""
    result: dict = {}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield result
        synchronize(device)
        result["bytes"] = torch.cuda.max_memory_allocated(device) - start
        result["how"] = "torch.cuda.max_memory_allocated above the allocated memory at the start"
        return
    _malloc_trim()
    if not os.path.exists("/proc/self/statm"):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        yield result
        result["bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start
        result["how"] = "growth of resource.getrusage max RSS (a lower bound)"
        return
    start = _rss_bytes()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            done.wait(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()
        peak[0] = max(peak[0], _rss_bytes())
        result["bytes"] = peak[0] - start
        result["how"] = "peak RSS above the RSS at the start, sampled every 2 ms (/proc/self/statm)"


def run_once(method: Method, device: torch.device, counter: ForwardCounter) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one explanation; keeps its maps and forwards."""
    synchronize(device)
    counter.images = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    maps, layer_maps, kept = method.run()
    synchronize(device)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    method.forwards = counter.images
    method.maps = maps.detach().float().cpu()
    method.layer_maps = None if layer_maps is None else layer_maps.detach().float().cpu()
    method.kept = None if kept is None else kept.detach().cpu()
    return elapsed, cpu


def time_methods(
    methods: list[Method],
    device: torch.device,
    counter: ForwardCounter,
    warmup: int,
    repeats: int,
) -> str:
    """Warm up each method ``warmup`` times, then time ``repeats`` round-robin rounds.

    Peak memory is measured in the first run of each method (a warm-up run if there is one, else
    the first timed run, whose time then counts). Returns how peak memory was measured.
    """
    how = ""
    for method in methods:
        for _ in range(warmup):
            with peak_memory(device) as memory:
                wall, _cpu = run_once(method, device, counter)
            if method.first_time is None:
                method.first_time = wall
                method.memory, how = memory["bytes"], memory["how"]
    for _ in range(repeats):
        for method in methods:
            if method.memory < 0:  # no warm-up: the first timed run measures the memory
                with peak_memory(device) as memory:
                    wall, cpu = run_once(method, device, counter)
                method.memory, how = memory["bytes"], memory["how"]
            else:
                wall, cpu = run_once(method, device, counter)
            if method.first_time is None:
                method.first_time = wall
            method.times.append(wall)
            method.cpu_times.append(cpu)
    return how
