"""A small synthetic detection dataset in the PASCAL VOC 2007 on-disk format.

VOC, COCO and their fine-tuned checkpoints cannot be downloaded on offline machines, so the
benchmark is exercised on a dataset generated here: a few object classes drawn at known boxes on
cluttered backgrounds, written exactly like VOC 2007 so that
:class:`~sise.eval.data.voc.VOCDetection2007` reads it.

Design choices that keep the explanation benchmark meaningful:

* each class is a shape with its own texture (a classifier must look at the object);
* each class has a typical hue, but hues are jittered and the clutter (lines, elongated blobs,
  colour gradients) uses every hue, so colour alone neither identifies nor localises a class;
* objects never overlap, so every box is exactly the object's tight bounding box;
* image ``i`` depends only on ``(seed, i)``: the same seed gives byte-identical files, and a
  larger ``n_images`` only appends images.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sise.errors import SiseError
from sise.eval.data.voc import voc_annotation_xml

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_DATA",
    "SyntheticData",
    "default_cache_dir",
    "make_synthetic_voc",
    "synthetic_dataset",
]

SYNTHETIC_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star")
"""Class names of the synthetic dataset, in class-index order (also written to classes.txt)."""

_Point = tuple[float, float]


def _polygon(
    center: _Point, radii: list[float], angle: float, *, half_turn_offset: bool = False
) -> list[_Point]:
    """Vertices at the given radii, evenly spaced in angle, rotated by ``angle``."""
    cx, cy = center
    count = len(radii)
    offset = math.pi / count if half_turn_offset else 0.0
    return [
        (
            cx + radius * math.cos(angle + offset + 2 * math.pi * i / count),
            cy + radius * math.sin(angle + offset + 2 * math.pi * i / count),
        )
        for i, radius in enumerate(radii)
    ]


def _draw_shape(
    draw: ImageDraw.ImageDraw, name: str, center: _Point, r: float, angle: float
) -> None:
    cx, cy = center
    if name == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        inner = 0.55 * r
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif name == "square":
        draw.polygon(_polygon(center, [r] * 4, angle), fill=255)
    elif name == "triangle":
        draw.polygon(_polygon(center, [r] * 3, angle), fill=255)
    elif name == "star":
        draw.polygon(_polygon(center, [r, 0.42 * r] * 5, angle), fill=255)
    elif name == "cross":
        w = 0.3 * r
        arm = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w)]
        arm += [(w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
        cos, sin = math.cos(angle), math.sin(angle)
        draw.polygon([(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in arm], fill=255)
    else:  # pragma: no cover - the class list is fixed
        raise AssertionError(name)


def _textures(size: int, period: float) -> dict[str, np.ndarray]:
    """One two-tone pattern per class over the whole image, 1 where the dark tone goes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    half = period / 2
    cell_x, cell_y = xx % period - half, yy % period - half
    texture: dict[str, Callable[[], np.ndarray]] = {
        "circle": lambda: np.floor(yy / half) % 2,
        "square": lambda: (np.floor(xx / half) + np.floor(yy / half)) % 2,
        "triangle": lambda: (cell_x**2 + cell_y**2 < (0.3 * period) ** 2).astype(np.float64),
        "cross": lambda: np.floor((xx + yy) / half) % 2,
        "ring": lambda: np.zeros((size, size)),
        "star": lambda: np.floor(xx / half) % 2,
    }
    return {name: make().astype(bool) for name, make in texture.items()}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth colour gradients plus clutter (lines, elongated blobs) that is no class."""
    coarse = rng.uniform(30, 225, size=(4, 4, 3)).astype(np.uint8)
    canvas = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 9))):
        ends = rng.uniform(0, size, size=4)
        colour = tuple(
            int(c) for c in _hsv(rng.uniform(), rng.uniform(0.3, 1), rng.uniform(0.3, 1))
        )
        draw.line([float(e) for e in ends], fill=colour, width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(1, 4))):
        short = rng.uniform(0.03, 0.07) * size
        long = short * rng.uniform(2.5, 4.0)  # elongated, so never mistaken for a circle
        half_w, half_h = (long, short) if rng.uniform() < 0.5 else (short, long)
        cx, cy = rng.uniform(0, size, size=2)
        colour = tuple(
            int(c) for c in _hsv(rng.uniform(), rng.uniform(0.3, 1), rng.uniform(0.3, 1))
        )
        draw.ellipse([cx - half_w, cy - half_h, cx + half_w, cy + half_h], fill=colour)
    return canvas


def _render(
    rng: np.random.Generator, size: int, max_objects: int
) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """One image and its objects as (class index, (col0, row0, col1, row1) inclusive, 0-based)."""
    image = np.asarray(_background(rng, size), dtype=np.float64).copy()
    textures = _textures(size, float(rng.integers(4, 7)))
    placed: list[tuple[int, int, int]] = []  # (x, y, side) of the square each shape lives in
    objects: list[tuple[int, tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        class_index = int(rng.integers(len(SYNTHETIC_CLASSES)))
        side = int(rng.integers(round(0.24 * size), round(0.42 * size) + 1))
        for _attempt in range(30):
            x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            # a 2-pixel gap keeps shapes (and so their tight boxes) apart
            if all(
                x + side + 2 <= px or px + ps + 2 <= x or y + side + 2 <= py or py + ps + 2 <= y
                for px, py, ps in placed
            ):
                break
        else:
            continue
        placed.append((x, y, side))
        name = SYNTHETIC_CLASSES[class_index]
        shape = Image.new("L", (size, size), 0)
        centre = (x + side / 2, y + side / 2)
        _draw_shape(
            ImageDraw.Draw(shape), name, centre, side / 2 - 0.5, rng.uniform(0, 2 * math.pi)
        )
        inside = np.asarray(shape) > 127
        hue = class_index / len(SYNTHETIC_CLASSES) + rng.uniform(-0.05, 0.05)
        light = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.7, 1.0))
        dark = light * rng.uniform(0.2, 0.45)
        image[inside] = np.where(textures[name][inside][:, None], dark, light)
        rows, cols = np.nonzero(inside)
        objects.append(
            (class_index, (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())))
        )
    image += rng.normal(0.0, 6.0, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), objects


def make_synthetic_voc(
    root: str | Path,
    n_images: int,
    *,
    image_size: int = 96,
    seed: int = 0,
    test_fraction: float = 0.25,
    max_objects: int = 3,
) -> Path:
    """Write a synthetic detection dataset in the VOC 2007 layout under ``root``.

    Files: ``root/VOC2007/JPEGImages/<id>.jpg`` (JPEG quality 95), ``Annotations/<id>.xml``
    (1-based inclusive boxes, all ``difficult=0``), ``ImageSets/Main/{train,trainval,test}.txt``
    (``trainval`` equals ``train``) and ``classes.txt`` with :data:`SYNTHETIC_CLASSES`. Image ids
    are ``000001``, ``000002``, ... Existing files of the same names are overwritten.

    Each image has 1 to ``max_objects`` non-overlapping objects of random classes, at random
    positions and rotations, each inscribed in a square whose side is 24-42 % of the image
    side; the box is the object's tight box. Read it back with
    ``VOCDetection2007(root, split="test")``.

    Args:
        root: output folder (plays the role of ``VOCdevkit``).
        n_images: number of images, at least 2 (both splits get at least one).
        image_size: side of the square images in pixels, at least 32.
        seed: generator seed; the same seed writes identical files.
        test_fraction: share of images in the test split.
        max_objects: most objects per image (fewer when they do not fit).

    Returns:
        ``root`` as a Path.
    """
    if n_images < 2:
        raise SiseError(f"n_images must be >= 2 so that both splits have images, got {n_images}")
    if image_size < 32:
        raise SiseError(
            f"image_size must be >= 32 pixels for the shapes to be legible, got {image_size}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise SiseError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if max_objects < 1:
        raise SiseError(f"max_objects must be >= 1, got {max_objects}")
    root = Path(root)
    base = root / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    (base / "classes.txt").write_text("\n".join(SYNTHETIC_CLASSES) + "\n")

    ids = [f"{i + 1:06d}" for i in range(n_images)]
    for i, image_id in enumerate(ids):
        # one stream per image: image i is the same whatever n_images is
        rng = np.random.default_rng([seed, i])
        pixels, objects = _render(rng, image_size, max_objects)
        Image.fromarray(pixels).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (base / "Annotations" / f"{image_id}.xml").write_bytes(
            voc_annotation_xml(
                image_id,
                image_size,
                [(SYNTHETIC_CLASSES[c], box) for c, box in objects],
                "sise synthetic shapes",
            )
        )

    order = np.random.default_rng(seed).permutation(n_images)
    n_test = min(n_images - 1, max(1, round(n_images * test_fraction)))
    test = sorted(ids[j] for j in order[:n_test])
    train = sorted(ids[j] for j in order[n_test:])
    for split, members in (("train", train), ("trainval", train), ("test", test)):
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(members) + "\n")
    return root


# --------------------------------------------------------------------------------------------
# the dataset the shipped synthetic models were trained on


@dataclass(frozen=True)
class SyntheticData:
    """The synthetic dataset the shipped models were trained on (``make_synthetic_voc`` args).

    Its ``train`` split trained the models, its ``test`` split (held out) is what their test mAP
    and the synthetic benchmark are measured on.
    """

    n_images: int = 6000
    image_size: int = 64
    seed: int = 0
    test_fraction: float = 0.2
    max_objects: int = 3

    @property
    def folder_name(self) -> str:
        return (
            f"synthetic-voc-{self.image_size}px-{self.n_images}-seed{self.seed}"
            f"-test{self.test_fraction:g}-max{self.max_objects}"
        )


SYNTHETIC_DATA = SyntheticData()


def default_cache_dir() -> Path:
    """``$SISE_CACHE`` or ``$XDG_CACHE_HOME/sise`` or ``~/.cache/sise``."""
    if os.environ.get("SISE_CACHE"):
        return Path(os.environ["SISE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sise"


def synthetic_dataset(root: str | Path | None = None, spec: SyntheticData = SYNTHETIC_DATA) -> Path:
    """The synthetic dataset of ``spec`` at ``root`` (default: the cache), generated if absent.

    Generation is deterministic (seeded) and takes seconds; a ``.complete`` marker tells a
    finished folder from an interrupted one.
    """
    root = Path(root) if root is not None else default_cache_dir() / spec.folder_name
    marker = root / ".complete"
    if not marker.is_file():
        make_synthetic_voc(
            root,
            spec.n_images,
            image_size=spec.image_size,
            seed=spec.seed,
            test_fraction=spec.test_fraction,
            max_objects=spec.max_objects,
        )
        marker.write_text(spec.folder_name + "\n")
    return root
