"""Pictures of explanations: a heat map over the photo, SISE's per-layer panel, method comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402


def resize_map(saliency: Tensor | np.ndarray, height: int, width: int) -> np.ndarray:
    """A (h, w) map resized bilinearly to (height, width), as float32 numpy in [0, 1]."""
    t = torch.as_tensor(saliency).detach().float().cpu()
    t = F.interpolate(t[None, None], size=(height, width), mode="bilinear", align_corners=False)
    return t[0, 0].clamp(0, 1).numpy()


def overlay(rgb: np.ndarray, saliency: Tensor | np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [0, 1] map, coloured with the jet colour map, over an (H, W, 3) uint8 photo."""
    heat = resize_map(saliency, rgb.shape[0], rgb.shape[1])
    coloured = plt.get_cmap("jet")(heat)[..., :3]
    blended = (1 - alpha) * rgb.astype(np.float32) / 255 + alpha * coloured
    return (blended.clip(0, 1) * 255).astype(np.uint8)


def save_overlay(path: str | Path, rgb: np.ndarray, saliency: Tensor | np.ndarray) -> Path:
    """Write :func:`overlay` as an image file (PNG/JPEG by extension)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(rgb, saliency)).save(path)
    return path


def save_layer_panel(
    path: str | Path,
    rgb: np.ndarray,
    layer_maps: Tensor,
    layer_names: Sequence[str],
    kept: Sequence[int],
    fused: Tensor,
    title: str = "",
) -> Path:
    """SISE's per-layer view (as the paper's figures 3 and 6): the photo, each layer's
    visualisation map with how many feature maps it kept, and the fused map."""
    count = len(layer_names) + 2
    fig, axes = plt.subplots(1, count, figsize=(2.4 * count, 2.8))
    panels = (
        [("input", None)]
        + [
            (f"{name}\n{k} maps", layer_maps[i])
            for i, (name, k) in enumerate(zip(layer_names, kept, strict=True))
        ]
        + [("SISE (fused)", fused)]
    )
    for axis, (label, saliency) in zip(axes, panels, strict=True):
        if saliency is None:
            axis.imshow(rgb)
        else:
            axis.imshow(overlay(rgb, saliency))
        axis.set_title(label, fontsize=8)
        axis.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_comparison(
    path: str | Path,
    rgb: np.ndarray,
    results: Sequence[tuple[str, Tensor, float]],
    title: str = "",
) -> Path:
    """The photo and one map per method side by side (the paper's figures 7 and 8), each with
    its run time under it. ``results`` holds ``(method name, map, seconds)``."""
    count = len(results) + 1
    fig, axes = plt.subplots(1, count, figsize=(2.4 * count, 2.9))
    axes[0].imshow(rgb)
    axes[0].set_title("input", fontsize=9)
    axes[0].axis("off")
    for axis, (label, saliency, seconds) in zip(axes[1:], results, strict=True):
        axis.imshow(overlay(rgb, saliency))
        axis.set_title(label, fontsize=9)
        axis.set_xlabel(f"{seconds:.2f} s", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
