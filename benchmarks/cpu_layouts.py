"""Masked-forward throughput on a CPU by memory layout, with and without prepacked weights.

Why the engine's CPU masked forwards run channels-last at every input size with prepacked
convolution weights (``sise.runtime.engine.score_masked``, ``sise.runtime.prepacking``): for each model and input
size this times batches of random inputs through the model with its batch norms folded
(``sise.runtime.folding``, as in the engine), in four ways:

- ``nchw``: contiguous inputs, the model as it is;
- ``nchw+pack``: the same inside ``prepacked_convolutions`` (which takes channels-last inputs
  only, so this is ``nchw`` again: a check that the packed path stays out of the NCHW path);
- ``cl``: channels-last inputs, the weights as they are;
- ``cl+pack``: channels-last inputs, convolution weights prepacked once (the engine's default).

Random weights (no download): the layers' shapes, not their values, set the speed. It prints a
table of milliseconds per image (median of ``--repeats`` timings of ``--rounds`` batches).

With ``--frozen`` it also times ``torch.compile`` of a copy of the model with inductor's
freezing (batch norms folded, weights prepacked, ReLUs and additions fused into the convolutions:
the compiled floor) on the same channels-last batches, and prints its compile time.

    OMP_NUM_THREADS=2 python benchmarks/cpu_layouts.py --models resnet18,resnet50 --sizes 64,224
    OMP_NUM_THREADS=2 python benchmarks/cpu_layouts.py --models resnet18,mobilenet_v2 --frozen
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from sise.runtime.device import device_name
from sise.runtime.folding import folded_batch_norms
from sise.runtime.prepacking import prepacked_convolutions

MODES = ("nchw", "nchw+pack", "cl", "cl+pack")


def build(name: str) -> nn.Module:
    if hasattr(torchvision.models, name):
        return getattr(torchvision.models, name)().eval()
    import timm

    return timm.create_model(name, pretrained=False).eval()


def time_mode(
    model: nn.Module, size: int, mode: str, batch: int, rounds: int, repeats: int
) -> float:
    """Median milliseconds per image of ``rounds`` batches, over ``repeats`` timings."""
    x = torch.randn(batch, 3, size, size)
    if mode.startswith("cl"):
        x = x.contiguous(memory_format=torch.channels_last)
    packed = prepacked_convolutions(model, example=x[:1]) if mode.endswith("pack") else None
    with (
        torch.inference_mode(),
        folded_batch_norms(model, example=x[:1]),
        packed if packed is not None else contextlib.nullcontext(),
    ):
        model(x)  # warm-up: oneDNN primitives, packed weights
        return _ms_per_image(lambda: model(x), batch, rounds, repeats)


def _ms_per_image(forward: Callable[[], object], batch: int, rounds: int, repeats: int) -> float:
    """Median milliseconds per image of ``rounds`` calls of ``forward``, over ``repeats``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(rounds):
            forward()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / (rounds * batch) * 1000


def time_frozen(
    model: nn.Module, size: int, batch: int, rounds: int, repeats: int
) -> tuple[float, float]:
    """Milliseconds per image of the model compiled with inductor's freezing, and the seconds
    its first call took (the compile)."""
    import torch._inductor.config as inductor_config

    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(copy.deepcopy(model))
        start = time.perf_counter()
        compiled(x)
        compile_seconds = time.perf_counter() - start
        compiled(x)
        return _ms_per_image(lambda: compiled(x), batch, rounds, repeats), compile_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="resnet18,resnet50,densenet121,vgg11,efficientnet_lite0"
    )
    parser.add_argument("--sizes", default="64,160,224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: as set)")
    parser.add_argument("--frozen", action="store_true", help="also torch.compile, freezing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"sise CPU layouts, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"machine: {platform.platform()}, torch {torch.__version__}")
    print(f"device: {device_name(torch.device('cpu'))}, batch {args.batch}, folded batch norms")
    print("ms per image (median); speed-up of cl+pack over nchw and over cl\n")
    header = f"{'model':<20}| {'px':>4} | " + " | ".join(f"{m:>9}" for m in MODES)
    header += " | vs nchw | vs cl" + (" | frozen | compile s" if args.frozen else "")
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        model = build(name)
        for size in (int(s) for s in args.sizes.split(",")):
            # about the same work per timing at every size
            rounds = max(1, round(4 * (64 / size) ** 2))
            ms = {m: time_mode(model, size, m, args.batch, rounds, args.repeats) for m in MODES}
            cells = " | ".join(f"{ms[m]:>9.3f}" for m in MODES)
            best = ms["cl+pack"]
            line = (
                f"{name:<20}| {size:>4} | {cells} | {ms['nchw'] / best:>6.2f}x | "
                f"{ms['cl'] / best:.2f}x"
            )
            if args.frozen:
                frozen, compile_seconds = time_frozen(model, size, args.batch, rounds, args.repeats)
                line += f" | {frozen:>6.3f} | {compile_seconds:.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
