"""What keeping freed memory in glibc's heap (``sise.runtime.allocator``) gives the CPU masked forwards.

For each model and input size, each method explains the same photo in fresh processes, one per
mode, the modes taking turns ``--processes`` times:

- ``glibc``: glibc's own settings (``sise.runtime.allocator.ENABLED = False``);
- ``retain``: the engine's default: freed memory kept during the masked forwards, handed back
  afterwards when more than 128 MiB is free;
- ``retain-keep``: the same, never handed back (what trimming costs the next call; not run
  unless named in ``--modes``).

Methods come from the registry with their defaults, except RISE (1,000 masks), Integrated
Gradients (56 steps, 28 a batch) and Extremal Perturbation (30 iterations, one area), to keep
the run short.

Each process loads the model, explains once untimed, then ``--repeats`` times timed. The table
gives the median over processes of each process's median (and the fastest call), the minor page
faults per call, the process's resident memory after its last call and its peak.

    OMP_NUM_THREADS=2 python benchmarks/cpu_memory.py --cases demo:224,demo:64,resnet18:224,resnet18:64
    OMP_NUM_THREADS=2 python benchmarks/cpu_memory.py --cases demo:224 --methods all
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("glibc", "retain", "retain-keep")
#: Shorter settings than the defaults for the slow methods.
QUICK = {
    "rise": {"n_masks": 1000},
    "ig": {"n_steps": 56, "batch_size": 28},
    "extremal": {"iterations": 30, "areas": [0.1]},
}


def child(model_name: str, size: int, mode: str, method: str, repeats: int) -> dict:
    """One process's measurement (run with ``--child``)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from speed import load, make_inputs

    from sise.methods.registry import make_explainer
    from sise.runtime import allocator

    allocator.ENABLED = mode != "glibc"
    if mode == "retain-keep":
        allocator._KEEP_FREE = 2**62
    loaded, _ = load(model_name, torch.device("cpu"))
    x = make_inputs(loaded, size)
    model = loaded.model
    with torch.no_grad():
        target = int(model(x).argmax())
    explainer = make_explainer(method, model, **QUICK.get(method, {}))
    explainer(x, target)
    times, faults = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        explainer(x, target)
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return {
        "median": statistics.median(times),
        "fastest": min(times),
        "faults": statistics.median(faults),
        "rss_after_mib": pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="demo:224,demo:64,resnet18:224,resnet18:64")
    parser.add_argument("--methods", default="sise", help="registry names, or 'all'")
    parser.add_argument("--modes", default="glibc,retain", help=f"of {', '.join(MODES)}")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--child", nargs=4, metavar=("METHOD", "MODEL", "SIZE", "MODE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        method, name, size, mode = args.child
        print(json.dumps(child(name, int(size), mode, method, args.repeats)))
        return

    import torch

    from sise.methods.registry import METHODS

    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    modes = args.modes.split(",")

    lines = [
        f"# {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"{args.processes} processes per mode (taking turns), {args.repeats} calls each",
        "",
        "| method | model | px | mode | s per call (median / fastest) | page faults per call "
        "| RSS after, MiB | peak RSS, MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for case, method in [(c, m) for c in args.cases.split(",") for m in methods]:
        name, size = case.split(":")
        results: dict[str, list[dict]] = {mode: [] for mode in modes}
        for _ in range(args.processes):
            for mode in modes:
                command = [sys.executable, __file__, "--child", method, name, size, mode]
                command += ["--repeats", str(args.repeats)]
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for mode, runs in results.items():

            def middle(key: str, runs: list[dict] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            line = (
                f"| {method} | {name} | {size} | {mode} | {middle('median'):.3f} / "
                f"{min(r['fastest'] for r in runs):.3f} | {middle('faults'):,.0f} | "
                f"{middle('rss_after_mib'):.0f} | {middle('peak_mib'):.0f} |"
            )
            lines.append(line)
            print(line, flush=True)
    out = args.out or Path(__file__).parent / "results" / (
        datetime.datetime.now().strftime("%Y%m%d-%H%M") + "_cpu_memory.txt"
    )
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
