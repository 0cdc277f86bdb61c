"""Pictures of explanations: a heat map over the photo, SISE's per-layer panel, method comparisons.

Every file is written to a temporary file beside its destination, then renamed onto it, so a
failed write (a full disk, an interrupt) never leaves a truncated picture in place of a good one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sise.errors import SiseError

#: File types both Pillow (the overlay) and matplotlib (the panels) can write.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".pdf")


def check_output_path(path: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> Path:
    """``path`` if a file can be written there, else a :class:`SiseError` saying why.

    It must name a file (not a folder) with one of ``suffixes`` (by default a picture's,
    :data:`IMAGE_SUFFIXES`), in a folder that exists or can be created, and that is writable.
    """
    path = Path(path)
    if path.is_dir():
        raise SiseError(
            f"{str(path)!r} is a folder: give a file name, e.g. {str(path / 'map.png')!r}"
        )
    if path.suffix.lower() not in suffixes:
        found = f"extension {path.suffix!r}" if path.suffix else "no extension"
        what = "a picture" if suffixes == IMAGE_SUFFIXES else "this file"
        raise SiseError(
            f"cannot write {what} to {str(path)!r} ({found}): use one of {', '.join(suffixes)}"
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folder that will hold the new ones
    if not folder.is_dir():
        raise SiseError(f"cannot write {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SiseError(f"cannot write {str(path)!r}: the folder {str(folder)!r} is not writable")
    return path


def write_atomically(
    path: str | Path,
    write: Callable[[Path], object],
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
) -> Path:
    """Call ``write(temporary)`` for a file beside ``path``, then rename it onto ``path``.

    The rename is atomic on one file system: ``path`` holds either its old content or the whole
    new file. The temporary file keeps ``path``'s extension, which tells the writer the format.
    """
    path = check_output_path(path, suffixes)
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise SiseError(f"could not write {str(path)!r}: {error}") from error
    finally:
        temporary.unlink(missing_ok=True)
    return path


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
    """Write :func:`overlay` as an image file (PNG, JPEG, ... by extension), atomically."""
    from PIL import Image

    picture = Image.fromarray(overlay(rgb, saliency))
    return write_atomically(path, picture.save)


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
    try:
        return write_atomically(path, lambda temporary: fig.savefig(temporary, dpi=110))
    finally:
        plt.close(fig)
