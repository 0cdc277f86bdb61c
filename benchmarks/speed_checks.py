"""Checks that go with the timings: fidelity of the fast paths, packing, host syncs, targets.

Part of ``benchmarks/speed.py``. Every number is measured in the same run as the table.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from speed_measure import Method
from torch import Tensor, nn

import sise.methods.sise as sise_module
from sise import SISE
from sise.core.postprocess import otsu_threshold
from sise.runtime import Runtime
from sise.runtime.device import exact_fp32, fidelity, synchronize


def gate_flips(layer_maps_a: Tensor, layer_maps_b: Tensor) -> float:
    """Fraction of the fusion's gate pixels ``V_l > Otsu(V_l)`` that differ between two runs.

    Both are (N, L, H, W) layer maps of the same images; every layer of every image counts.
    """
    a, b = layer_maps_a.flatten(0, 1).double(), layer_maps_b.flatten(0, 1).double()
    gates_a = a > otsu_threshold(a).view(-1, 1, 1)
    gates_b = b > otsu_threshold(b).view(-1, 1, 1)
    return float((gates_a != gates_b).double().mean())


@dataclass
class Agreement:
    """How far two SISE results of the same images are apart."""

    fused_r: list[float]
    layer_r: list[float]
    flips: float
    kept_equal: bool
    max_diff: float

    def text(self) -> str:
        return (
            f"fused r = {', '.join(f'{v:.4f}' for v in self.fused_r)} (min {min(self.fused_r):.4f}); "
            f"layer maps r >= {min(self.layer_r):.4f}; flipped gate pixels {self.flips:.2e}; "
            f"kept-map counts {'equal' if self.kept_equal else 'DIFFER'}; "
            f"max |map difference| {self.max_diff:.2e}"
        )


def agreement(
    maps_a: Tensor,
    layers_a: Tensor,
    kept_a: Tensor,
    maps_b: Tensor,
    layers_b: Tensor,
    kept_b: Tensor,
) -> Agreement:
    maps_a, maps_b = maps_a.float().cpu(), maps_b.float().cpu()
    layers_a, layers_b = layers_a.float().cpu(), layers_b.float().cpu()
    return Agreement(
        fused_r=fidelity(maps_a, maps_b).tolist(),
        layer_r=fidelity(layers_a, layers_b).flatten().tolist(),
        flips=gate_flips(layers_a, layers_b),
        kept_equal=bool((kept_a.cpu() == kept_b.cpu()).all()),
        max_diff=float((maps_a - maps_b).abs().max()),
    )


def fidelity_lines(methods: list[Method], threshold: float = 0.99) -> list[str]:
    """Each SISE variant against the fp32 rows of the same selection (default and ``@exact``)."""
    references = [m for m in methods if m.key.split("@")[1:] in ([], ["exact"])]
    lines = []
    for method in methods:
        base = method.key.split("@")[0]
        if "@" not in method.key or base not in ("sise", "sise-adaptive"):
            continue
        for ref in references:
            if ref is method or ref.key.split("@")[0] != base:
                continue
            parts = (
                method.maps,
                method.layer_maps,
                method.kept,
                ref.maps,
                ref.layer_maps,
                ref.kept,
            )
            if any(p is None for p in parts):
                continue
            result = agreement(*parts)  # type: ignore[arg-type]
            verdict = "PASS" if min(result.fused_r) >= threshold else f"BELOW {threshold}"
            lines.append(f"fidelity {method.label} vs {ref.label}: {result.text()}  [{verdict}]")
    return lines


@contextlib.contextmanager
def _tf32_gradient_pass() -> Iterator[None]:
    """Run SISE's gradient pass with the process's TF32 settings (the package before this fix)."""
    saved = sise_module.exact_fp32
    sise_module.exact_fp32 = contextlib.nullcontext  # type: ignore[assignment]
    try:
        yield
    finally:
        sise_module.exact_fp32 = saved


def packing_lines(
    model: nn.Module,
    x: Tensor,
    targets: Tensor,
    batch: int,
    device: torch.device,
    repeats: int,
    threshold: float = 0.999,
) -> list[str]:
    """SISE on N images in one call against N single calls: agreement and the time saved.

    On CUDA it also runs two diagnostics that locate the cause of disagreement: the gradient pass
    with TF32 convolutions (as before this package ran it in exact fp32), and everything in exact
    fp32 (TF32 off for the masked forwards too).
    """
    n = x.shape[0]
    variants: list[tuple[str, Callable[[], contextlib.AbstractContextManager]]] = [
        ("as shipped (gradient pass exact fp32)", contextlib.nullcontext)
    ]
    if device.type == "cuda":
        variants += [
            ("diagnostic: TF32 gradient pass", _tf32_gradient_pass),
            ("diagnostic: exact fp32 everywhere", exact_fp32),
        ]
    lines = []
    for selection in ("fixed", "adaptive"):
        explainer = SISE(model, selection=selection, runtime=Runtime(batch_size=batch))  # type: ignore[arg-type]
        for name, context in variants:
            with warnings.catch_warnings(), context():
                warnings.simplefilter("ignore")
                explainer(x[:1], targets[:1])  # warm-up (layer discovery, kernels)
                together_times, single_times = [], []
                for _ in range(max(1, repeats) if name.startswith("as shipped") else 1):
                    synchronize(device)
                    start = time.perf_counter()
                    together = explainer(x, targets)
                    synchronize(device)
                    together_times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    singles = [explainer(x[i : i + 1], targets[i : i + 1]) for i in range(n)]
                    synchronize(device)
                    single_times.append(time.perf_counter() - start)
            result = agreement(
                together.maps,
                together.layer_maps,
                together.kept_maps,
                torch.cat([s.maps for s in singles]),
                torch.cat([s.layer_maps for s in singles]),
                torch.cat([s.kept_maps for s in singles]),
            )
            t_together = statistics.median(together_times)
            t_single = statistics.median(single_times)
            verdict = "PASS" if min(result.fused_r) >= threshold else f"BELOW {threshold}"
            lines.append(
                f"packing, SISE {selection} fp32, {name}: {n} images in one call "
                f"{t_together:.3f} s, {n} single calls {t_single:.3f} s "
                f"({t_single / t_together:.2f}x); {result.text()}  [{verdict}]"
            )
    return lines


def sync_lines(model: nn.Module, x: Tensor, targets: Tensor, batch: int) -> list[str]:
    """Host syncs in one SISE call, counted by CUDA's sync debug mode (CUDA only).

    A sync stalls Python until the GPU has caught up, so the GPU idles while Python queues the
    next work. SISE needs one per call (how many masks each layer keeps decides the loop);
    before this package batched Ada-SISE's selection it needed a few per image and layer.
    """
    lines = []
    for selection in ("fixed", "adaptive"):
        for precision, channels_last in (("fp32", False), ("bf16", True)):
            explainer = SISE(
                model,
                selection=selection,
                runtime=Runtime(batch_size=batch, precision=precision, channels_last=channels_last),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                explainer(x[:1], targets[:1])
            synchronize(x.device)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    explainer(x, targets)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            syncs = sum("synchroniz" in str(w.message) for w in caught)
            lines.append(
                f"host syncs in one SISE call ({selection}, {precision}"
                f"{'+channels_last' if channels_last else ''}, {x.shape[0]} image(s)): {syncs}"
            )
    return lines


def target_lines(methods: list[Method], n_images: int, kind: str, size: int) -> list[str]:
    """The issue's targets, met or missed, from this run's table."""
    by_key = {m.key: m for m in methods if m.times}
    peer = by_key.get("torchcam")
    lines = []

    def seconds(m: Method) -> str:
        return f"{m.median / n_images:.3f} s median, {m.fastest / n_images:.3f} s fastest"

    def check(label: str, ok: bool, detail: str) -> None:
        lines.append(f"target {label}: {'MET' if ok else 'MISSED'} ({detail})")

    if kind == "cpu":
        sise = by_key.get("sise")
        if sise is not None and peer is not None:
            need = 1.3 if size >= 224 else 1.0
            speedup = peer.median / sise.median
            check(
                f"CPU {size} px, SISE >= {need}x torch-cam",
                speedup >= need,
                f"{speedup:.2f}x by median, {peer.fastest / sise.fastest:.2f}x by fastest",
            )
    if kind == "gpu":
        fixed = [m for m in methods if m.key.startswith("sise@") and m.times]
        adaptive = [m for m in methods if m.key.startswith("sise-adaptive@") and m.times]
        if fixed:
            best = min(fixed, key=lambda m: m.median)
            check(
                "SISE <= 0.10 s (stretch 0.08)",
                best.median / n_images <= 0.10,
                f"{best.label}: {seconds(best)}",
            )
            if peer is not None:
                speedup = peer.median / best.median
                check("SISE >= 3.5x torch-cam", speedup >= 3.5, f"{best.label}: {speedup:.2f}x")
        if adaptive:
            best = min(adaptive, key=lambda m: m.median)
            check(
                "Ada-SISE <= 0.04 s (stretch 0.03)",
                best.median / n_images <= 0.04,
                f"{best.label}: {seconds(best)}",
            )
    return lines
