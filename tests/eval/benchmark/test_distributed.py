"""Spreading a benchmark over ranks: the GPU each rank gets, the process-group backend, and how a
resumed run shares out what is left (the two-process run itself: test_run.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sise.eval.benchmark import BenchmarkConfig, run_benchmark
from sise.eval.benchmark import run as running
from sise.eval.benchmark.distributed import (
    Ranks,
    distributed,
    my_share,
    process_group_backend,
)
from sise.eval.benchmark.scoring import MetricSettings


def test_backend_is_nccl_only_when_every_local_rank_has_its_own_gpu() -> None:
    assert process_group_backend(gpus=2, local_ranks=2) == "nccl"
    assert process_group_backend(gpus=8, local_ranks=2) == "nccl"
    assert process_group_backend(gpus=1, local_ranks=4) == "gloo"  # ranks share one GPU
    assert process_group_backend(gpus=0, local_ranks=2) == "gloo"  # a CPU run


def test_ranks_share_the_gpus_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    devices = [Ranks(r, 5, r, True).device("cuda") for r in range(5)]
    assert devices == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert {Ranks(r, 3, r, True).device("cuda") for r in range(3)} == {"cuda:0"}
    assert Ranks(1, 3, 1, True).device("cpu") == "cpu"
    assert Ranks().device("cuda:1") == "cuda:1"  # one process: the device asked for


def test_joining_the_group_selects_the_ranks_shared_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local rank 2 of 3 on a 2-GPU machine: cuda:0, and gloo since two ranks share it (no GPU
    here: torch's CUDA and process-group calls are recorded instead)."""
    import torch.distributed as dist

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(dist, "init_process_group", lambda b, **_: calls.append(("init", b)))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroy", None)))
    for name, value in {"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    with distributed("cuda", required=True) as ranks:
        assert (ranks.rank, ranks.world, ranks.local_rank) == (2, 3, 2)
        assert ranks.device("cuda") == "cuda:0"
    assert [c[0] for c in calls] == ["set_device", "init", "destroy"]
    assert torch.cuda._get_device_index(calls[0][1]) == 0 and calls[1][1] == "gloo"
    calls.clear()
    with distributed("cpu", required=True) as ranks:  # a CPU run never touches CUDA
        assert ranks.device("cpu") == "cpu"
    assert calls == [("init", "gloo"), ("destroy", None)]


def test_my_share_splits_without_overlap() -> None:
    items = list(range(11))
    shares = [my_share(items, Ranks(r, 3, r, True)) for r in range(3)]
    assert sorted(i for share in shares for i in share) == items
    assert [len(s) for s in shares] == [4, 4, 3]


def _as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    @contextlib.contextmanager
    def fake(device: str, required: bool) -> Iterator[Ranks]:
        yield Ranks(rank, world, rank, False)  # not initialised: barriers do nothing

    monkeypatch.setattr(running, "spread_over_ranks", fake)


def test_a_resumed_run_shares_out_only_what_is_left(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "resume.sqlite"
    config = BenchmarkConfig(
        dataset=f"synthetic:{tiny_data}",
        model="synthetic-vgg",
        methods=["gradcam"],
        db=db,
        metric_settings=MetricSettings(steps=4),
        progress=False,
    )
    # a first two-rank run of which only rank 0 finished: every other pair is done
    _as_rank(monkeypatch, 0, 2)
    run_benchmark(config)
    with sqlite3.connect(db) as conn:
        done = set(conn.execute("SELECT image_id, class_index FROM results").fetchall())
    assert len(done) == 4  # of the set's 8 pairs

    shares: dict[int, list[tuple[str, int]]] = {}

    def record(config, loaded, todo, *rest) -> None:  # type: ignore[no-untyped-def]
        shares[len(shares)] = [(p.image_id, p.class_index) for p, _ in todo]

    monkeypatch.setattr(running, "_work", record)
    for rank in range(2):
        _as_rank(monkeypatch, rank, 2)
        run_benchmark(config)
    # sharing all pairs first would give rank 0 nothing left and rank 1 all four
    assert [len(s) for s in shares.values()] == [2, 2]
    left = set(shares[0]) | set(shares[1])
    assert len(left) == 4 and not left & done


def _ranks_of(parent: int) -> list[int]:
    """The spawned ranks whose parent is ``parent`` (read from Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_killing_the_launcher_ends_its_ranks() -> None:
    script = (
        "import time\n"
        "from sise.eval.benchmark.distributed import spawn_local\n"
        "spawn_local(2, time.sleep, 300)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-c", script], env=env)
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(ranks) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            ranks = _ranks_of(launcher.pid)
        assert len(ranks) == 2, "the two ranks did not start"
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) != 0
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(pid) for pid in ranks), "ranks outlived their launcher"
    finally:
        launcher.kill()
        for pid in ranks:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
