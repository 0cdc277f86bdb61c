"""Where one SISE call spends its time on a GPU: the phases, and the model's throughput floor.

For SISE and Ada-SISE (fp16, channels-last, compiled) on ResNet-50 (random init) at 224 px:

* the wall time of one call (CUDA synchronised, median of ``--repeats``);
* the phases, from ``torch.profiler`` over three calls: the gradient pass, the masked forwards
  (``score_masked``, which also sums the masks) and the rest (selection, gathering, fusion), as
  host wall time of SISE's ``record_function`` ranges, and the GPU kernel time inside and outside
  the masked forwards;
* the floor: rows per second of the same compiled model on full batches of masked inputs
  (``--batch-size`` rows), so that ``forwards / rate`` is the least the masked forwards can take;
* the gradient pass alone (exact fp32, batch 1): eager (the model's own forward and backward),
  compiled, and compiled with CUDA graphs (:class:`sise.runtime.compiled_gradients.CompiledGradientPass`).

Usage (CUDA only)::

    python benchmarks/gpu_profile.py --model resnet50 --size 224 --repeats 10
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import load, make_inputs
from speed_measure import cudnn_benchmark

from sise import SISE
from sise.core.hooks import gradient_pass
from sise.runtime import Runtime
from sise.runtime.compiled_gradients import CompiledGradientPass
from sise.runtime.device import device_name, exact_fp32, synchronize

RANGES = ("sise.gradient_pass", "sise.masked_forwards")


def timed(call, device: torch.device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def phases(call, device: torch.device) -> str:
    """Host time of SISE's ranges and GPU kernel time, per call, over three profiled calls.

    GPU kernels run behind the host, so they are not split by range: the total kernel time
    against the call's wall time says how long the GPU idles (launch gaps, waits on the host).
    """
    synchronize(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(3):
            call()
        synchronize(device)
    host = {name: 0.0 for name in RANGES}
    kernels = 0.0
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels += (event.time_range.end - event.time_range.start) / 1e3 / 3
        elif event.name in host:
            host[event.name] += event.cpu_time_total / 1e3 / 3
    line = ", ".join(f"{k} {v:.1f}" for k, v in host.items())
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=15)
    return f"host ms per call: {line}; GPU kernel ms per call: {kernels:.1f}\n{table}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--tune", action="store_true", help="cudnn.benchmark on")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    args = parser.parse_args()
    device = torch.device(args.device)
    loaded, weights = load(args.model, device)
    model = loaded.model
    x = make_inputs(loaded, args.size)
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    print(
        f"{args.model} ({weights}) at {args.size} px on {device_name(device)}, "
        f"torch {torch.__version__}, batch {args.batch_size}, cudnn.benchmark {args.tune}"
    )
    with cudnn_benchmark() if args.tune else contextlib.nullcontext():
        for selection in ("fixed", "adaptive"):
            explainer = SISE(
                model,
                selection=selection,
                runtime=Runtime(
                    precision="fp16", channels_last=True, compile=True, batch_size=args.batch_size
                ),
            )
            start = time.perf_counter()
            result = explainer(x, target)
            synchronize(device)
            first = time.perf_counter() - start
            explainer(x, target)
            times = timed(lambda e=explainer: e(x, target), device, args.repeats)
            forwards = int(result.forward_passes.sum())
            print(
                f"\n== SISE {selection}: median {statistics.median(times) * 1e3:.1f} ms, "
                f"fastest {min(times) * 1e3:.1f} ms, first {first:.1f} s, "
                f"{forwards} forwards"
            )
            print(phases(lambda e=explainer: e(x, target), device))
        compiled = explainer.model_runtime._compiled
        assert compiled is not None
        batch = torch.rand(args.batch_size, *x.shape[1:], device=device).contiguous(
            memory_format=torch.channels_last
        )
        with torch.no_grad():
            rows = timed(lambda: compiled(batch, torch.float16, True), device, 20)
        rate = args.batch_size / statistics.median(rows)
        print(
            f"\nfloor: compiled fp16 channels-last forward, {args.batch_size} rows: "
            f"{rate:,.0f} rows/s ({1e3 / rate:.4f} ms per row)"
        )
        layers = explainer.layers_for(x)

        # the same call, (layers, inputs, targets, score), three ways
        passes = {
            "eager": functools.partial(gradient_pass, model),
            "compiled": CompiledGradientPass(model),
            "compiled, CUDA graphs": CompiledGradientPass(model, cudagraphs=True),
        }
        for label, run in passes.items():

            def grad_only(run=run) -> None:
                with exact_fp32():
                    run(layers, x, target, "softmax")

            start = time.perf_counter()
            grad_only()
            synchronize(device)
            first = time.perf_counter() - start
            for _ in range(2):  # with CUDA graphs, calls 2 and 3 record, replay and are checked
                grad_only()
            median = statistics.median(timed(grad_only, device, args.repeats))
            print(
                f"gradient pass alone (exact fp32), {label}: {median * 1e3:.1f} ms "
                f"(first call {first:.1f} s)"
            )


if __name__ == "__main__":
    main()
