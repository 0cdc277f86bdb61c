"""Seconds per explanation: SISE against Score-CAM and RISE, this package's and its peers'.

One run times, on the same model, the same input and the same batch size:

* SISE with the paper's fixed selection (μ = 0) and with adaptive selection (Ada-SISE), in fp32;
* the same two on the fast path (``--fast``, default bf16 autocast + channels-last), with the
  fidelity of their maps to the fp32 maps (Pearson correlation, :func:`sise.device.fidelity`);
* this package's Score-CAM and RISE;
* torch-cam's ``torchcam.methods.ScoreCAM`` and pytorch-grad-cam's ``pytorch_grad_cam.ScoreCAM``
  (optional imports: a missing one is skipped with a note).

Protocol (printed with the table):

* Every Score-CAM explains the same layer: the last spatial feature map before global pooling,
  which is also SISE's deepest layer (``resnet*``: ``layer4``).
* Batch size: one number ``B`` for every method (``--batch-size``, default ``auto``: resolved
  once, in fp32, by :func:`sise.device.auto_batch_size`, i.e. 32 on a CPU and the number that
  fits in free memory on CUDA). torch-cam gets ``ScoreCAM(batch_size=B)``, pytorch-grad-cam gets
  ``cam.batch_size = B`` (its ``ScoreCAM`` reads that attribute; its default is 16), this
  package's methods ``batch_size=B``.
* Each method runs once to warm up (peak memory is measured in that run), then ``--repeats``
  rounds run every method once, round-robin, so that load from other processes spreads over all
  methods; the table gives the median and the fastest run. Explainers are built once and reused,
  as a user explaining many images would; the peers' explainers are built (and their hooks
  removed) inside each timed run, which costs microseconds.
* Forward passes: images that went through the model's ``forward`` in one explanation, counted
  by a forward pre-hook on the model (a forward+backward counts as one; torch-cam runs the
  user's forward and then its own clean forward).
* Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the memory allocated before the
  run; on a CPU the peak resident set size above the RSS before the run, sampled every 2 ms from
  ``/proc/self/statm`` by a thread (after ``malloc_trim``, so memory freed by the previous
  method does not hide this one's), or ``resource.getrusage`` max-RSS growth where /proc is
  missing.
* Models are random-init (``weights=None``) torchvision models or the demo model (EfficientNet-
  Lite0 with its real packaged weights, ``--model demo``; ``tf_efficientnet_lite0`` gives the
  random-init timm one); the input is the packaged photo ``chelsea`` resized to ``--size``,
  normalised for the model; the target is the model's predicted class.

Usage::

    python benchmarks/speed.py --model resnet18 --size 224 --device cpu --repeats 3
    python benchmarks/speed.py --model demo --size 224 --device cpu --out benchmarks/results/x.txt
    python benchmarks/speed.py --quick        # a smoke run on a tiny input
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import os
import platform
import resource
import socket
import statistics
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sise import SISE
from sise.device import auto_batch_size, autocast_dtype_for, device_name, fidelity, synchronize
from sise.layers import discover_layers, resolve_layers

ALL_METHODS = (
    "sise",
    "sise-adaptive",
    "sise-fast",
    "sise-adaptive-fast",
    "scorecam",
    "rise",
    "torchcam",
    "gradcam",
)
PEERS = {"torchcam": "torch-cam ScoreCAM", "gradcam": "pytorch-grad-cam ScoreCAM"}


# --- model and input ------------------------------------------------------------------------------


class TinyNet(nn.Module):
    """A three-stage CNN of a few thousand weights, for smoke runs (``--model tiny``)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def build_model(name: str, device: torch.device) -> tuple[nn.Module, tuple, tuple, str]:
    """The model, its normalisation mean and std, and a description of its weights."""
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if name == "tiny":
        model, (mean, std), weights = TinyNet(), imagenet, "random init"
    elif name in ("demo", "efficientnet_lite0"):
        from sise.models import demo_model

        model, (mean, std), weights = demo_model(), ((0.5,) * 3, (0.5,) * 3), "real (packaged)"
    elif name.startswith("timm:") or name == "tf_efficientnet_lite0":
        import timm

        arch = name.removeprefix("timm:")
        model, weights = timm.create_model(arch, pretrained=False), "random init"
        config = dict(getattr(model, "pretrained_cfg", {}) or {})
        mean, std = tuple(config.get("mean", imagenet[0])), tuple(config.get("std", imagenet[1]))
    else:
        import torchvision

        model, (mean, std) = torchvision.models.get_model(name, weights=None), imagenet
        weights = "random init"
    return model.eval().to(device), mean, std, weights


def make_input(size: int, mean: tuple, std: tuple, device: torch.device, n: int = 1) -> Tensor:
    """The packaged photo (or noise if it is missing) as (n, 3, size, size), model-ready."""
    try:
        from sise.images import load_image, sample_image_path

        photos = [load_image(sample_image_path(name)) for name in ("chelsea", "coffee")]
    except Exception:  # noqa: BLE001 - any failure: fall back to noise
        photos = [np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)]
    images = []
    for i in range(n):
        rgb = photos[i % len(photos)]
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        if i >= len(photos):  # more images than photos: flip, so that every image differs
            x = x.flip(-1) if i % 2 else x.flip(-2)
        images.append(x)
    x = torch.cat(images)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x.to(device)


# --- measuring ------------------------------------------------------------------------------------


class ForwardCounter:
    """Counts the images that go through the model's forward (a pre-hook on the root module)."""

    def __init__(self, model: nn.Module) -> None:
        self.images = 0
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], Tensor) and args[0].ndim == 4:
            self.images += int(args[0].shape[0])

    def remove(self) -> None:
        self._handle.remove()


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


# --- methods --------------------------------------------------------------------------------------


@dataclass
class Method:
    key: str
    label: str
    run: Callable[[], Tensor]  # returns (N, H, W) maps
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    forwards: int = 0
    memory: int = 0
    maps: Tensor | None = None
    layer_maps: Tensor | None = None


def _sise_runner(explainer: SISE, x: Tensor, targets: Tensor, method_ref: list) -> Callable:
    def run() -> Tensor:
        explanation = explainer(x, targets)
        layer_maps = explanation.extras["layer_maps"]
        method_ref[0].layer_maps = layer_maps if isinstance(layer_maps, Tensor) else None
        return explanation.maps

    return run


def build_methods(
    keys: list[str],
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    layer: str,
    batch: int,
    fast: str,
    rise_masks: int,
) -> tuple[list[Method], list[str]]:
    """The methods to time, and notes on those that cannot run."""
    methods: list[Method] = []
    notes: list[str] = []
    precision, channels_last = "fp32", False
    if fast != "none":
        parts = set(fast.split("+"))
        channels_last = "cl" in parts or "channels_last" in parts
        precision = next((p for p in parts if p in ("bf16", "fp16", "fp32")), "fp32")
    fast_label = "+".join([precision] + (["channels_last"] if channels_last else []))

    def add_sise(key: str, label: str, **options: object) -> None:
        ref: list = [None]
        explainer = SISE(model, batch_size=batch, **options)  # type: ignore[arg-type]
        method = Method(key, label, _sise_runner(explainer, x, targets, ref))
        ref[0] = method
        methods.append(method)

    for key in keys:
        if key == "sise":
            add_sise(key, "SISE fixed μ=0 (fp32)")
        elif key == "sise-adaptive":
            add_sise(key, "SISE adaptive (fp32)", selection="adaptive")
        elif key in ("sise-fast", "sise-adaptive-fast"):
            if fast == "none":
                continue
            selection = "adaptive" if "adaptive" in key else "fixed"
            name = "adaptive" if selection == "adaptive" else "fixed μ=0"
            add_sise(
                key,
                f"SISE {name} ({fast_label})",
                selection=selection,
                precision=precision,
                channels_last=channels_last,
            )
        elif key == "scorecam":
            try:
                from sise.methods.cam import ScoreCAM
            except ImportError as error:
                notes.append(f"sise Score-CAM skipped: {error}")
                continue
            explainer = ScoreCAM(model, layer, batch_size=batch)
            methods.append(
                Method(key, f"sise Score-CAM ({layer})", lambda e=explainer: e(x, targets).maps)
            )
        elif key == "rise":
            try:
                from sise.methods.perturbation import RISE
            except ImportError as error:
                notes.append(f"sise RISE skipped: {error}")
                continue
            rise = RISE(model, n_masks=rise_masks, batch_size=batch)
            methods.append(
                Method(key, f"sise RISE (N={rise_masks})", lambda e=rise: e(x, targets).maps)
            )
        elif key == "torchcam":
            try:
                from torchcam.methods import ScoreCAM as TorchCamScoreCAM
            except ImportError as error:
                notes.append(f"torch-cam skipped (pip install torchcam): {error}")
                continue

            def run_torchcam(cls=TorchCamScoreCAM) -> Tensor:
                extractor = cls(model, layer, batch_size=batch, input_shape=tuple(x.shape[1:]))
                try:
                    with torch.no_grad():
                        model(x)
                    cams = extractor(targets.tolist())[0]
                finally:
                    extractor.remove_hooks()
                return F.interpolate(
                    cams[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False
                )[:, 0]

            methods.append(Method(key, f"torch-cam ScoreCAM ({layer})", run_torchcam))
        elif key == "gradcam":
            try:
                import pytorch_grad_cam.score_cam as grad_cam_score_cam
                from pytorch_grad_cam import ScoreCAM as GradCamScoreCAM
                from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
            except ImportError as error:
                notes.append(f"pytorch-grad-cam skipped (pip install grad-cam): {error}")
                continue
            # Silence its per-image tqdm bars (display only; the loop is unchanged). Only that
            # module's own reference is replaced: patching tqdm.tqdm itself would break every
            # other library that imports tqdm afterwards (huggingface_hub, via timm).
            grad_cam_score_cam.tqdm = types.SimpleNamespace(  # type: ignore[assignment]
                tqdm=lambda iterable, *a, **k: iterable
            )
            module = resolve_layers(model, [layer])[0][1]

            def run_gradcam(cls=GradCamScoreCAM, module=module) -> Tensor:
                with cls(model=model, target_layers=[module]) as cam:
                    cam.batch_size = batch
                    grayscale = cam(
                        input_tensor=x,
                        targets=[ClassifierOutputTarget(int(t)) for t in targets.tolist()],
                    )
                return torch.from_numpy(np.asarray(grayscale)).float()

            methods.append(Method(key, f"pytorch-grad-cam ScoreCAM ({layer})", run_gradcam))
        else:
            raise SystemExit(f"unknown method {key!r}: choose from {', '.join(ALL_METHODS)}")
    return methods, notes


def run_method(
    method: Method, device: torch.device, counter: ForwardCounter
) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one explanation."""
    synchronize(device)
    counter.images = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    maps = method.run()
    synchronize(device)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    method.forwards = counter.images
    method.maps = maps.detach().float().cpu()
    return elapsed, cpu


# --- report ---------------------------------------------------------------------------------------


def _fmt_bytes(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB" if value >= 0 else "n/a"


def format_table(methods: list[Method], n_images: int, cpu: bool) -> str:
    """The table; speed-ups are a peer's seconds over the method's, by median and by fastest run.

    ``cpu`` adds the process CPU time (all threads), a second view of the cost on a shared CPU
    (it grows too when OpenMP threads spin while descheduled, so it is no cleaner than wall time).
    """
    peers = [m for m in methods if m.key in PEERS and m.times]
    header = ["method", "s/expl. median", "fastest"]
    header += ["CPU s median"] if cpu else []
    header += ["forwards", "peak memory"]
    for peer in peers:
        short = "torch-cam" if peer.key == "torchcam" else "grad-cam"
        header += [f"vs {short} (median)", f"vs {short} (fastest)"]
    rows = []
    for m in methods:
        median, fastest = statistics.median(m.times), min(m.times)
        row = [m.label, f"{median / n_images:.3f}", f"{fastest / n_images:.3f}"]
        row += [f"{statistics.median(m.cpu_times) / n_images:.3f}"] if cpu else []
        row += [f"{m.forwards / n_images:,.0f}", _fmt_bytes(m.memory)]
        for peer in peers:
            row += [
                f"{statistics.median(peer.times) / median:.2f}x",
                f"{min(peer.times) / fastest:.2f}x",
            ]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append(" | ".join(cells))
    legend = "speed-up = the peer's seconds / this method's seconds (> 1: faster than the peer)"
    return "\n".join([*lines, legend])


def fidelity_lines(methods: list[Method]) -> list[str]:
    by_key = {m.key: m for m in methods}
    lines = []
    for fast_key, ref_key in (("sise-fast", "sise"), ("sise-adaptive-fast", "sise-adaptive")):
        fast, ref = by_key.get(fast_key), by_key.get(ref_key)
        if fast is None or ref is None or fast.maps is None or ref.maps is None:
            continue
        fused = fidelity(fast.maps, ref.maps)
        text = f"fidelity {fast.label} vs {ref.label}: fused maps r = " + ", ".join(
            f"{v:.4f}" for v in fused.tolist()
        )
        if fast.layer_maps is not None and ref.layer_maps is not None:
            layer = fidelity(fast.layer_maps.float().cpu(), ref.layer_maps.float().cpu())
            text += "; layer maps r = " + ", ".join(f"{v:.4f}" for v in layer.flatten().tolist())
        verdict = "PASS" if bool((fused > 0.99).all()) else "BELOW 0.99"
        lines.append(f"{text}  [{verdict}]")
    return lines


def multi_image_check(
    model: nn.Module, x: Tensor, targets: Tensor, batch: int, device: torch.device, repeats: int
) -> list[str]:
    """SISE on N images in one call against N single calls: same maps, and the time saved."""
    explainer = SISE(model, batch_size=batch)
    n = x.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer(x[:1], targets[:1])  # warm-up (and layer discovery)
        together_times, single_times = [], []
        together = singles = None
        for _ in range(max(1, repeats)):
            synchronize(device)
            start = time.perf_counter()
            together = explainer(x, targets).maps
            synchronize(device)
            together_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            singles = torch.cat(
                [explainer(x[i : i + 1], targets[i : i + 1]).maps for i in range(n)]
            )
            synchronize(device)
            single_times.append(time.perf_counter() - start)
    assert together is not None and singles is not None
    t_together, t_single = statistics.median(together_times), statistics.median(single_times)
    diff = float((together - singles).abs().max())
    return [
        f"several images at once (SISE fixed fp32, batch {batch}): {n} images in one call "
        f"{t_together:.3f} s, {n} single calls {t_single:.3f} s, speed-up {t_single / t_together:.2f}x, "
        f"max |map difference| {diff:.2e} [{'PASS' if diff <= 1e-5 else 'FAIL'} at 1e-5]"
    ]


def sync_check(model: nn.Module, x: Tensor, targets: Tensor, batch: int) -> str:
    """Run SISE's masked-scoring loop with CUDA's sync debug mode set to "error".

    Any host synchronisation inside the loop (``.item()``, ``bool(tensor)``, a device-to-host
    copy, a data-dependent shape) raises. Runs fp32 and bf16 + channels-last. CUDA only; on a CPU
    ``tests/test_engine.py`` runs the same loop on the meta device, where any of those raise.
    """
    from sise.engine import ConcatMasks, UpsampledMaps, score_masked
    from sise.hooks import gradient_pass
    from sise.postprocess import is_constant

    explainer = SISE(model)
    layers = explainer.layers_for(x)
    grad = gradient_pass(model, layers, x, targets, "softmax")
    sources = []
    for activation in grad.activations:
        maps = activation[0]
        maps = maps[~is_constant(maps)]  # data-dependent: done before the loop, as SISE does
        owners = torch.zeros(maps.shape[0], dtype=torch.long, device=x.device)
        sources.append(UpsampledMaps(maps, owners, tuple(x.shape[-2:])))
    source = ConcatMasks(sources)
    synchronize(x.device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for dtype, channels_last in ((None, False), (torch.bfloat16, True)):
            score_masked(
                model,
                x[:1],
                targets[:1],
                source,
                batch_size=batch,
                autocast_dtype=dtype,
                channels_last=channels_last,
            )
        result = f"PASS ({len(source)} masks, fp32 and bf16+channels_last)"
    except RuntimeError as error:
        result = f"FAIL: {error}"
    finally:
        torch.cuda.set_sync_debug_mode(0)
    synchronize(x.device)
    return f"host-sync check of the masked-forward loop (torch.cuda.set_sync_debug_mode): {result}"


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="torchvision name (weights=None), demo (EfficientNet-Lite0, real weights), "
        "tf_efficientnet_lite0 or timm:NAME (random init), tiny; default resnet18 (tiny with --quick)",
    )
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per method first")
    parser.add_argument("--batch-size", default="auto", help="masked inputs per forward, or auto")
    parser.add_argument(
        "--fast",
        default="bf16+cl",
        help="fast-path SISE rows: PRECISION[+cl] (fp32, bf16, fp16; cl = channels_last) or none",
    )
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated subset")
    parser.add_argument("--rise-masks", type=int, default=None, help="RISE N (4000 cuda, 1000 cpu)")
    parser.add_argument(
        "--multi-images", type=int, default=0, help="also time N images in one call vs N calls"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the report to this file")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny input, one repeat")
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = "tiny" if args.quick else "resnet18"
    if args.quick:
        args.size = min(args.size, 32)
        args.repeats = 1
        args.rise_masks = args.rise_masks or 32
        args.multi_images = args.multi_images or 2
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    rise_masks = args.rise_masks or (4000 if device.type == "cuda" else 1000)
    if args.fast != "none":
        for part in args.fast.split("+"):
            if part not in ("cl", "channels_last"):
                autocast_dtype_for(part)  # validates

    model, mean, std, weights = build_model(args.model, device)
    x = make_input(args.size, mean, std, device)
    with torch.no_grad():
        targets = model(x).argmax(dim=1)
    layer = discover_layers(model, x[:1])[-1]
    if args.batch_size == "auto":
        batch = auto_batch_size(model, x)
        batch_note = f"{batch} (auto, {device.type})"
    else:
        batch = int(args.batch_size)
        batch_note = str(batch)

    methods, notes = build_methods(keys, model, x, targets, layer, batch, args.fast, rise_masks)
    counter = ForwardCounter(model)
    memory_how = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SISE's "layer kept no map" and the peers' chatter
            for method in methods:
                for _ in range(max(1, args.warmup)):
                    with peak_memory(device) as memory:
                        run_method(method, device, counter)
                    method.memory, memory_how = memory["bytes"], memory["how"]
            for _ in range(args.repeats):
                for method in methods:
                    wall, cpu = run_method(method, device, counter)
                    method.times.append(wall)
                    method.cpu_times.append(cpu)
        multi = []
        if device.type == "cuda":
            multi.append(sync_check(model, x, targets, batch))
        if args.multi_images > 1:
            xs = make_input(args.size, mean, std, device, n=args.multi_images)
            with torch.no_grad():
                many_targets = model(xs).argmax(dim=1)
            multi = multi_image_check(model, xs, many_targets, batch, device, args.repeats)
    finally:
        counter.remove()

    lines = [
        f"sise speed benchmark, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"command: python {' '.join(sys.argv) if argv is None else 'benchmarks/speed.py ' + ' '.join(argv)}",
        f"machine: {socket.gethostname()}, {platform.platform()}, python {platform.python_version()}, "
        f"torch {torch.__version__}",
        f"device: {device_name(device)}"
        + (
            f", cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
            f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
            f"cudnn.benchmark={torch.backends.cudnn.benchmark}"
            if device.type == "cuda"
            else ""
        ),
        f"model: {args.model} ({weights}), input 1x3x{args.size}x{args.size}, target class "
        f"{int(targets[0])} (predicted); Score-CAM layer: {layer} (all three); batch size: "
        f"{batch_note} for every method",
        f"timing: {max(1, args.warmup)} warm-up run(s), then median and fastest of {args.repeats} "
        "round-robin runs per method, seconds per explanation",
        f"peak memory: {memory_how}, in the warm-up run",
    ]
    lines += [f"note: {note}" for note in notes]
    lines += ["", format_table(methods, x.shape[0], cpu=device.type == "cpu"), ""]
    lines += fidelity_lines(methods)
    lines += multi
    if device.type == "cpu":
        lines.append(
            "note: a shared CPU; other processes' load makes these timings noisy (see the fastest column)."
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
