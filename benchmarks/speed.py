"""Seconds per explanation: SISE against Score-CAM and RISE, this package's and its peers'.

One run times, on the same model, the same input and the same batch size:

* SISE with the paper's fixed selection (μ = 0) and with adaptive selection (Ada-SISE), in fp32
  (``sise``, ``sise-adaptive``), and any fast-path variant named ``KEY@OPTIONS`` with OPTIONS
  joined by ``+``: a precision (``fp32``, ``bf16``, ``fp16``), ``cl`` (channels-last),
  ``compile`` (``torch.compile``), ``cudagraphs`` (compiled, replayed as CUDA graphs) or
  ``exact`` (the whole explanation in true fp32: TF32 off, :func:`sise.runtime.device.exact_fp32`; on
  CUDA the default fp32 convolutions are TF32), ``tune`` (``torch.backends.cudnn.benchmark`` on
  during the call: cuDNN times its algorithms for each new shape), ``pad64`` (compiled batches
  padded to a multiple of an eighth of the batch size, the default before, not of 8 rows) or
  ``eagergrad`` (with ``compile``: the gradient pass stays eager, as before it was compiled on
  CUDA), e.g. ``sise@bf16+cl+compile``; each variant's
  maps are compared to the fp32 maps of the same selection, and to the ``@exact`` ones where
  those run (Pearson r, :func:`sise.runtime.device.fidelity`, and the fraction of fusion-gate pixels
  that flip);
* this package's Score-CAM and RISE;
* torch-cam's ``torchcam.methods.ScoreCAM`` and pytorch-grad-cam's ``pytorch_grad_cam.ScoreCAM``
  (optional imports: a missing one is skipped with a note); ``torchcam-retain`` runs torch-cam
  inside :func:`sise.runtime.allocator.retained_freed_memory`, the malloc settings this package's methods
  run with on a CPU, to show how much of a lead those settings make (``torchcam-tune``: with
  ``cudnn.benchmark``).

Protocol (printed with the table):

* Every Score-CAM explains the same layer: the last spatial feature map before global pooling,
  which is also SISE's deepest layer (``resnet*``: ``layer4``).
* Batch size: one number ``B`` for every method (``--batch-size``, default ``auto``: resolved
  once, in fp32, by :func:`sise.runtime.device.auto_batch_size`, i.e. 32 on a CPU and the number that
  fits in free memory on CUDA). torch-cam gets ``ScoreCAM(batch_size=B)``, pytorch-grad-cam gets
  ``cam.batch_size = B`` (its ``ScoreCAM`` reads that attribute; its default is 16), this
  package's methods ``batch_size=B``.
* Each method runs ``--warmup`` times untimed (peak memory and, for compiled variants, the
  compile cost are measured in the first run), then ``--repeats`` rounds run every method once,
  round-robin, so that load from other processes spreads over all methods; the table gives the
  median and the fastest run. Explainers are built once and reused, as a user explaining many
  images would; the peers' explainers are built (and their hooks removed) inside each timed run,
  which costs microseconds.
* Forward passes: images that went through the model's ``forward`` in one explanation, counted
  by a forward pre-hook on the model (a forward+backward counts as one; torch-cam runs the
  user's forward and then its own clean forward; compiled variants count their padding rows).
* Peak memory: see :mod:`speed_measure`.
* Models come from :func:`sise.models.loading.load_model`: the demo model (EfficientNet-Lite0 with its
  real packaged weights, ``--model demo``), or a torchvision name / ``timm:NAME`` with random
  weights (``random_init=True``: nothing is downloaded); the input is the packaged photos
  (``chelsea``, then ``coffee``, then flipped copies) resized to ``--size`` by the model's own
  preprocessing; the target is the model's predicted class.

Usage::

    python benchmarks/speed.py --model resnet18 --size 64,224 --device cpu --repeats 5 \\
        --methods sise,sise-adaptive,torchcam --targets cpu
    python benchmarks/speed.py --model resnet50 --device cuda \\
        --methods sise,sise-adaptive,sise@bf16+cl+compile,sise-adaptive@bf16+cl+compile,torchcam
    python benchmarks/speed.py --quick        # a smoke run on a small input

Measuring, the peers and the checks live in ``speed_measure.py``, ``speed_peers.py`` and
``speed_checks.py`` beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import socket
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from speed_checks import fidelity_lines, packing_lines, sync_lines, target_lines
from speed_measure import ForwardCounter, Method, cudnn_benchmark, time_methods
from speed_peers import LABELS, PEERS

import sise.runtime.engine
from sise import SISE
from sise.core.layers import discover_layers
from sise.images import load_image, sample_image_path
from sise.models.loading import LoadedModel, load_model
from sise.runtime import FIELDS as RUNTIME_FIELDS
from sise.runtime import Runtime
from sise.runtime.device import auto_batch_size, autocast_dtype_for, device_name, exact_fp32

DEFAULT_METHODS = (
    "sise,sise-adaptive,sise@bf16+cl,sise-adaptive@bf16+cl,scorecam,rise,torchcam,gradcam"
)
VARIANT_FLAGS = (
    "fp32",
    "bf16",
    "fp16",
    "cl",
    "compile",
    "cudagraphs",
    "eagergrad",
    "exact",
    "tune",
    "pad64",
)


# --- model and input ------------------------------------------------------------------------------


def load(name: str, device: torch.device) -> tuple[LoadedModel, str]:
    """The model by name (:func:`sise.models.loading.load_model`) and a description of its weights."""
    real = name in ("demo", "efficientnet_lite0")
    loaded = load_model(name, device=device, random_init=not real)
    return loaded, "real (packaged)" if real else "random init"


def make_inputs(loaded: LoadedModel, size: int, n: int = 1) -> Tensor:
    """(n, 3, size, size) model-ready photos: chelsea, coffee, then flipped copies of them."""
    sized = dataclasses.replace(loaded, input_size=(size, size))
    photos = [sized.preprocess(load_image(sample_image_path(p))) for p in ("chelsea", "coffee")]
    images = []
    for i in range(n):
        x = photos[i % len(photos)]
        if i >= len(photos):  # more images than photos: flip, so that every image differs
            x = x.flip(-1) if (i // len(photos)) % 2 else x.flip(-2)
        images.append(x)
    return torch.cat(images)


# --- methods --------------------------------------------------------------------------------------


def sise_options(key: str) -> tuple[dict, str]:
    """SISE's options and a label from a key such as ``sise-adaptive@bf16+cl+compile``."""
    base, _, variant = key.partition("@")
    selection = "adaptive" if base == "sise-adaptive" else "fixed"
    options: dict = {"selection": selection}
    flags = [f for f in variant.split("+") if f] if variant else []
    for flag in flags:
        if flag not in VARIANT_FLAGS:
            raise SystemExit(f"unknown option {flag!r} in {key!r}: use {', '.join(VARIANT_FLAGS)}")
    precision = next((f for f in flags if f in ("fp32", "bf16", "fp16")), "fp32")
    options["precision"] = precision
    options["channels_last"] = True if "cl" in flags else None
    if "exact" in flags:
        options["exact"] = True
    if "tune" in flags:
        options["tune"] = True
    if "pad64" in flags:
        options["pad64"] = True
    if "eagergrad" in flags:
        options["eagergrad"] = True
    if "cudagraphs" in flags:
        options["compile"] = "cudagraphs"
    elif "compile" in flags:
        options["compile"] = True
    name = "adaptive" if selection == "adaptive" else "fixed μ=0"
    words = {
        "cl": "channels_last",
        "compile": "compiled",
        "cudagraphs": "CUDA graphs",
        "exact": "exact, no TF32",
        "tune": "cudnn.benchmark",
        "pad64": "padded to 64 rows",
        "eagergrad": "eager gradient pass",
    }
    extras = [precision] + [words[f] for f in flags if f in words]
    return options, f"SISE {name} ({'+'.join(extras)})"


def _sise_method(key: str, model: nn.Module, x: Tensor, targets: Tensor, batch: int) -> Method:
    options, label = sise_options(key)
    exact = options.pop("exact", False)
    tune = options.pop("tune", False)
    multiple = (
        max(8, batch // 8) if options.pop("pad64", False) else sise.runtime.engine.ROW_MULTIPLE
    )
    eager_gradients = options.pop("eagergrad", False)
    speed = {k: options.pop(k) for k in list(options) if k in RUNTIME_FIELDS}
    explainer = SISE(model, **options, runtime=Runtime(batch_size=batch, **speed))
    if eager_gradients:  # compile the masked forwards only, as before the gradient pass was
        explainer.model_runtime._compiled_gradients = None

    def run() -> tuple[Tensor, Tensor | None, Tensor | None]:
        padding, sise.runtime.engine.ROW_MULTIPLE = sise.runtime.engine.ROW_MULTIPLE, multiple
        try:
            with (
                exact_fp32() if exact else contextlib.nullcontext(),
                cudnn_benchmark() if tune else contextlib.nullcontext(),
            ):
                explanation = explainer(x, targets)
        finally:
            sise.runtime.engine.ROW_MULTIPLE = padding
        layer_maps, kept = explanation.layer_maps, explanation.kept_maps
        return (
            explanation.maps,
            layer_maps if isinstance(layer_maps, Tensor) else None,
            kept if isinstance(kept, Tensor) else None,
        )

    method = Method(key, label, run)
    if explainer.runtime.compile:
        method.compile_seconds = lambda: explainer.compile_seconds
    return method


def build_methods(
    keys: list[str],
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    layer: str,
    batch: int,
    rise_masks: int,
) -> tuple[list[Method], list[str]]:
    """The methods to time, and notes on those that cannot run."""
    methods: list[Method] = []
    notes: list[str] = []
    for key in keys:
        if key.split("@")[0] in ("sise", "sise-adaptive"):
            methods.append(_sise_method(key, model, x, targets, batch))
        elif key == "scorecam":
            from sise.methods.score_cam import ScoreCAM

            cam = ScoreCAM(model, layer, runtime=Runtime(batch_size=batch))
            methods.append(
                Method(
                    key, f"sise Score-CAM ({layer})", lambda e=cam: (e(x, targets).maps, None, None)
                )
            )
        elif key == "rise":
            from sise.methods.rise import RISE

            rise = RISE(model, n_masks=rise_masks, runtime=Runtime(batch_size=batch))
            methods.append(
                Method(
                    key,
                    f"sise RISE (N={rise_masks})",
                    lambda e=rise: (e(x, targets).maps, None, None),
                )
            )
        elif key in PEERS:
            runner = PEERS[key](model, x, targets, layer, batch)
            if isinstance(runner, str):
                notes.append(runner)
            else:
                methods.append(Method(key, f"{LABELS[key]} ({layer})", runner))
        else:
            raise SystemExit(
                f"unknown method {key!r}: sise[-adaptive][@OPTIONS], scorecam, rise, "
                f"{', '.join(PEERS)}"
            )
    return methods, notes


# --- report ---------------------------------------------------------------------------------------


def _fmt_bytes(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB" if value >= 0 else "n/a"


def format_table(methods: list[Method], n_images: int, cpu: bool) -> str:
    """The table; speed-ups are a peer's seconds over the method's, by median and by fastest run.

    ``cpu`` adds the process CPU time (all threads), a second view of the cost on a shared CPU
    (it grows too when OpenMP threads spin while descheduled, so it is no cleaner than wall time).
    """
    methods = [m for m in methods if m.times]
    peers = [m for m in methods if m.key in PEERS]
    header = ["method", "s/expl. median", "fastest", "first run"]
    header += ["CPU s median"] if cpu else []
    header += ["forwards", "peak memory"]
    for peer in peers:
        short = {
            "torchcam": "torch-cam",
            "torchcam-tune": "torch-cam tuned",
            "torchcam-retain": "torch-cam retained",
        }.get(peer.key, "grad-cam")
        header += [f"vs {short} (median)", f"vs {short} (fastest)"]
    rows = []
    for m in methods:
        first = "" if m.first_time is None else f"{m.first_time / n_images:.3f}"
        row = [m.label, f"{m.median / n_images:.3f}", f"{m.fastest / n_images:.3f}", first]
        row += [f"{sorted(m.cpu_times)[len(m.cpu_times) // 2] / n_images:.3f}"] if cpu else []
        row += [f"{m.forwards / n_images:,.0f}", _fmt_bytes(m.memory)]
        for peer in peers:
            row += [f"{peer.median / m.median:.2f}x", f"{peer.fastest / m.fastest:.2f}x"]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append(" | ".join(cells))
    lines.append(
        "speed-up = the peer's seconds / this method's seconds (> 1: faster than the peer)"
    )
    compiled = [m for m in methods if m.compile_seconds is not None]
    for m in compiled:
        assert m.compile_seconds is not None
        lines.append(
            f"compile cost, {m.label}: {m.compile_seconds():.1f} s in its first calls "
            f"(first run {m.first_time:.2f} s against a median of {m.median:.3f} s)"
        )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="demo (EfficientNet-Lite0, real weights), a torchvision name or timm:NAME (random "
        "init); default resnet18 (timm:test_efficientnet with --quick)",
    )
    parser.add_argument(
        "--size", default="224", help="input height and width; a comma list runs each"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs per method first (0: none)"
    )
    parser.add_argument("--batch-size", default="auto", help="masked inputs per forward, or auto")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated")
    parser.add_argument("--rise-masks", type=int, default=None, help="RISE N (4000 cuda, 1000 cpu)")
    parser.add_argument(
        "--images", type=int, default=1, help="images per timed explanation call (photos, flipped)"
    )
    parser.add_argument(
        "--multi-images",
        type=int,
        default=0,
        help="also check N images in one call against N calls",
    )
    parser.add_argument("--sync-check", action="store_true", help="count host syncs (CUDA)")
    parser.add_argument("--targets", choices=("none", "cpu", "gpu"), default="none")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the report to this file")
    parser.add_argument("--quick", action="store_true", help="smoke run: small input, one repeat")
    args = parser.parse_args(argv)
    args.model = args.model or ("timm:test_efficientnet" if args.quick else "resnet18")
    args.sizes = [int(s) for s in str(args.size).split(",") if s.strip()]
    if args.quick:
        args.sizes = [min(s, 48) for s in args.sizes]
        args.repeats = 1
        args.rise_masks = args.rise_masks or 32
        args.multi_images = args.multi_images or 2
        if args.methods == DEFAULT_METHODS:
            args.methods = (
                "sise,sise-adaptive,sise@bf16+cl,sise-adaptive@bf16+cl,scorecam,rise,torchcam"
            )
    if args.warmup < 0 or args.repeats < 1 or args.images < 1:
        parser.error("--warmup must be >= 0, --repeats and --images >= 1")
    return args


def run_size(
    args: argparse.Namespace, loaded: LoadedModel, size: int, device: torch.device
) -> list[str]:
    model = loaded.model
    keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    for key in keys:  # fail on a bad variant before any timing
        if key.split("@")[0] in ("sise", "sise-adaptive"):
            options, _ = sise_options(key)
            autocast_dtype_for(options["precision"])
    x = make_inputs(loaded, size, n=args.images)
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    layer = discover_layers(model, x[:1])[-1]
    if args.batch_size == "auto":
        batch = auto_batch_size(model, x)
        batch_note = f"{batch} (auto, {device.type})"
    else:
        batch = int(args.batch_size)
        batch_note = str(batch)
    rise_masks = args.rise_masks or (4000 if device.type == "cuda" else 1000)
    methods, notes = build_methods(keys, model, x, targets, layer, batch, rise_masks)
    counter = ForwardCounter(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SISE's "layer kept no map" and the peers' chatter
            memory_how = time_methods(methods, device, counter, args.warmup, args.repeats)
    finally:
        counter.remove()
    lines = [
        f"model: {args.model}, input {x.shape[0]}x3x{size}x{size}, target classes "
        f"{targets.tolist()} (predicted); Score-CAM layer: {layer} (all of them); batch size: {batch_note} for "
        "every method",
        f"peak memory: {memory_how}, in each method's first run",
    ]
    lines += [f"note: {note}" for note in notes]
    lines += ["", format_table(methods, x.shape[0], cpu=device.type == "cpu"), ""]
    lines += fidelity_lines(methods)
    if args.sync_check and device.type == "cuda":
        lines += sync_lines(model, x, targets, batch)
    if args.multi_images > 1:
        xs = make_inputs(loaded, size, n=args.multi_images)
        with torch.no_grad():
            many_targets = model(xs).argmax(dim=1)
        lines += packing_lines(model, xs, many_targets, batch, device, min(args.repeats, 2))
    if args.targets != "none":
        lines += target_lines(methods, x.shape[0], args.targets, size)
    return lines


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    loaded, weights = load(args.model, device)
    command = " ".join(sys.argv) if argv is None else "benchmarks/speed.py " + " ".join(argv)
    cuda_flags = (
        f", cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
        f"cudnn.benchmark={torch.backends.cudnn.benchmark}"
        if device.type == "cuda"
        else ""
    )
    lines = [
        f"sise speed benchmark, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"command: python {command}",
        f"machine: {socket.gethostname()}, {platform.platform()}, python {platform.python_version()}, "
        f"torch {torch.__version__}",
        f"device: {device_name(device)}{cuda_flags}",
        f"weights: {args.model} ({weights})",
        f"timing: {args.warmup} warm-up run(s), then median and fastest of {args.repeats} "
        "round-robin runs per method, seconds per explanation",
    ]
    for size in args.sizes:
        lines += ["", f"=== {size} x {size} px ===", *run_size(args, loaded, size, device)]
    if device.type == "cpu":
        lines.append(
            "note: on a shared CPU, other processes' load makes these timings noisy (see the "
            "fastest column)."
        )
    report = "\n".join(lines)
    print(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(report + "\n")
    return report


if __name__ == "__main__":
    main()
