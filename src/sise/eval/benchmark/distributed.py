"""Spreading a benchmark over processes: torchrun / torch.distributed plumbing, shards, merging.

Under ``torchrun --nproc_per_node=K -m sise.cli benchmark ...`` (or ``sise benchmark --nproc K``,
which starts the K processes itself), rank ``r`` takes the pairs ``i % K == r``
(:func:`my_share`) and writes its own SQLite file ``<db>.rank<r>`` (:func:`shard_path`): SQLite
files are never written by two processes at once. Rank 0 merges the shards into ``<db>``
(:func:`merge_shards`) and writes the table. Nothing is lost if a rank dies: its shard stays on
disk and the next run's rank 0 merges it before work is shared out.

Ranks talk only at the start and the end (``nccl`` when every local rank has a GPU of its own,
else ``gloo``), so the slowest shard may take hours: the process group's timeout is a week.
More ranks than GPUs is allowed and often worth it: they share the GPUs round-robin, and the
CPU-side work of the metrics (ROAD's sparse solves, above all) then runs on several cores while
the GPU explains for another rank.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from sise.errors import SiseError
from sise.eval.benchmark.store import ResultStore

__all__ = [
    "Ranks",
    "distributed",
    "glob_escape",
    "merge_shards",
    "my_share",
    "process_group_backend",
    "shard_path",
    "spawn_local",
]

_T = TypeVar("_T")


@dataclass
class Ranks:
    """This process's place in the run: rank, world size, local rank on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a one-process run)."""
        if self.initialised:
            import torch.distributed as dist

            dist.barrier()

    def device(self, device: str) -> str:
        """The device this rank runs on: in a distributed CUDA run, ``cuda:LOCAL_RANK`` modulo
        the GPUs there are (ranks beyond the GPU count share them)."""
        if self.initialised and device.startswith("cuda"):
            return f"cuda:{self.local_rank % max(torch.cuda.device_count(), 1)}"
        return device


def process_group_backend(gpus: int, local_ranks: int) -> str:
    """``nccl`` when each of a machine's ``local_ranks`` ranks has a GPU of its own, else
    ``gloo``: NCCL refuses two ranks on one GPU, and the run's only collective, a barrier, needs
    nothing of NCCL."""
    return "nccl" if gpus >= local_ranks > 0 else "gloo"


@contextlib.contextmanager
def distributed(device: str, required: bool) -> Iterator[Ranks]:
    """Join the torchrun process group if there is one (``WORLD_SIZE`` > 1), leave it after.

    Args:
        device: the run's device (``cuda...`` picks the ``nccl`` backend, else ``gloo``).
        required: refuse to run without torchrun's environment (``--distributed``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        if required:
            raise SiseError(
                "--distributed needs the torch.distributed environment: launch with "
                "torchrun --nproc_per_node=K -m sise.cli benchmark ..., or pass --nproc K"
            )
        yield Ranks()
        return
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    ranks = Ranks(rank, world, local_rank, True)
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    backend = process_group_backend(gpus, local_world)
    if gpus:
        torch.cuda.set_device(ranks.device("cuda"))
    dist.init_process_group(backend, timeout=datetime.timedelta(days=7))
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def my_share(items: Sequence[_T], ranks: Ranks) -> list[_T]:
    """The items of this rank: every ``world``-th, from the ``rank``-th (every rank must pass
    the same sequence)."""
    return [item for i, item in enumerate(items) if i % ranks.world == ranks.rank]


def shard_path(db: Path, rank: int) -> Path:
    """The results file rank ``rank`` writes in a distributed run."""
    return db.with_name(f"{db.name}.rank{rank}")


def glob_escape(name: str) -> str:
    """``name`` with the glob wildcards ``*?[`` made literal."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def merge_shards(store: ResultStore, db: Path) -> int:
    """Fold every ``<db>.rank<r>`` file into ``store`` and delete it; returns the rows copied."""
    merged = 0
    for shard in sorted(db.parent.glob(f"{glob_escape(db.name)}.rank*")):
        if shard.suffix.startswith(".rank") and shard.suffix[5:].isdigit():
            merged += store.merge_from(shard)
            shard.unlink()
            for extra in (Path(f"{shard}-journal"), Path(f"{shard}-wal"), Path(f"{shard}-shm")):
                extra.unlink(missing_ok=True)
    return merged


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_rank(rank: int, world: int, port: int, work: Callable[..., None], args: tuple) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    work(*args)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def spawn_local(nproc: int, work: Callable[..., None], *args: object) -> None:
    """Run ``work(*args)`` in ``nproc`` new local processes set up as torchrun's ranks would be
    (``work`` must be importable: a module-level function).

    The ranks end with this process: a ``kill`` (SIGTERM) or an exception here terminates them,
    where spawned processes would otherwise run on, orphaned, writing their shards. (Ctrl-C
    already reaches them: it signals the whole foreground process group.)
    """
    import torch.multiprocessing as mp

    if nproc < 2:
        raise SiseError(f"--nproc must be at least 2 to spread a run, got {nproc}")
    context = mp.start_processes(
        _as_rank,
        args=(nproc, _free_port(), work, args),
        nprocs=nproc,
        start_method="spawn",
        join=False,
    )
    assert context is not None
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    try:
        while not context.join():
            pass
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        for process in context.processes:
            process.join(timeout=30)
