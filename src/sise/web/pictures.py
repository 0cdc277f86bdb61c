"""The pictures the page shows: the photo, the map over it and, for SISE, each layer's map and
gate, as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch import Tensor

from sise.core.postprocess import otsu_threshold
from sise.methods.base import Explanation
from sise.methods.sise import SISEExplanation

#: Longest side of the photo as the page shows it, and of the smaller per-layer pictures.
DISPLAY_SIDE = 480
LAYER_SIDE = 256


@dataclass(frozen=True)
class LayerView:
    """One SISE layer as the page shows it.

    Attributes:
        name: the layer's module name.
        kept: feature maps kept by the selection (the attribution masks scored for this layer).
        saliency: (H, W) visualisation map ``V_l`` in [0, 1], at input resolution, on the CPU.
        threshold: Otsu's threshold ``t_l`` of ``V_l``.
        gate: (H, W) bool, ``V_l > t_l``: the region the binary gate keeps.
        role: ``"start"``: the first layer with kept maps, which starts the fusion ungated;
            ``"gate"``: a deeper layer, fused as ``F ← (F + V_l) ⊙ B(V_l)``; ``"skipped"``: no
            kept map, so it takes no part in the fusion.
    """

    name: str
    kept: int
    saliency: Tensor
    threshold: float
    gate: Tensor
    role: str


def sise_layer_views(explanation: Explanation, index: int = 0) -> list[LayerView] | None:
    """SISE's per-layer results for sample ``index``, or ``None`` for a method without layers.

    This is the one place that reads SISE's per-layer results
    (:class:`sise.methods.sise.SISEExplanation`). The gate is recomputed with the
    same Otsu threshold :func:`sise.methods.sise.fuse` uses (binary gate, the paper's).
    """
    if not isinstance(explanation, SISEExplanation):
        return None
    layer_maps = explanation.layer_maps[index].detach().float().cpu()
    kept = explanation.kept_maps[index].tolist()
    names = [str(name) for name in explanation.layer_names]
    thresholds = otsu_threshold(layer_maps).tolist()
    views, started = [], False
    for name, saliency, count, threshold in zip(names, layer_maps, kept, thresholds, strict=True):
        role = "skipped" if count == 0 else ("gate" if started else "start")
        started |= count > 0
        views.append(
            LayerView(name, int(count), saliency, float(threshold), saliency > threshold, role)
        )
    return views


def result_pictures(
    rgb: np.ndarray, explanation: Explanation, url: Callable[[str, bytes], str]
) -> tuple[dict[str, str], list[dict[str, object]] | None]:
    """The pictures of one result, each handed to ``url(name, png)``, which keeps it and gives
    its address.

    Returns:
        ``images`` (``photo`` and ``overlay`` URLs) and ``layers`` (SISE: per layer ``name``,
        ``kept``, ``threshold``, ``gate_share``, ``role`` and the URLs of its ``map`` and
        ``gate`` pictures; ``None`` for the other methods).
    """
    # matplotlib (under sise.viz) loads when the first picture is drawn, not with the command line
    from sise.viz import overlay

    photo = fit(rgb, DISPLAY_SIDE)
    images = {
        "photo": url("photo", png(photo)),
        "overlay": url("overlay", png(overlay(photo, explanation.maps[0].detach().float().cpu()))),
    }
    views = sise_layer_views(explanation)
    if views is None:
        return images, None
    small = fit(rgb, LAYER_SIDE)
    layers: list[dict[str, object]] = [
        {
            "name": view.name,
            "kept": view.kept,
            "threshold": round(view.threshold, 4),
            "gate_share": round(float(view.gate.float().mean()), 4),
            "role": view.role,
            "map": url(f"layer{i}", png(overlay(small, view.saliency))),
            "gate": url(f"gate{i}", png(gate_picture(small, view.gate))),
        }
        for i, view in enumerate(views)
    ]
    return images, layers


def fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """The photo shrunk (never enlarged) so that its longer side is at most ``side`` pixels."""
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def gate_picture(rgb: np.ndarray, gate: Tensor) -> np.ndarray:
    """The photo with what the gate cuts away darkened, so the kept region stands out."""
    from sise.viz import resize_map

    inside = resize_map(gate.float(), rgb.shape[0], rgb.shape[1])[..., None]
    photo = rgb.astype(np.float32)
    shaded = photo * inside + (0.25 * photo + 30) * (1 - inside)
    return shaded.clip(0, 255).astype(np.uint8)
