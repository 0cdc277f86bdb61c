"""Drawing the photo set's images and writing them as a VOC 2007 folder (see
:mod:`sise.eval.data.photos` for how an image is made)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from sise.errors import SiseError
from sise.eval.data.photos.objects import PHOTO_OBJECTS, Cutout, cut, source_photos
from sise.eval.data.voc import voc_annotation_xml
from sise.models.loading import imagenet_class_names
from sise.runtime import progress_bar

__all__ = ["DISTRACTOR_PROBABILITY", "PHOTO_SET", "PhotoSetSpec", "make_photo_voc"]

DISTRACTOR_PROBABILITY = 0.4
"""Share of images that get a second object of another class (the distractor)."""


@dataclass(frozen=True)
class PhotoSetSpec:
    """The generator's settings (part of the cache key)."""

    n_images: int = 600
    image_size: int = 256
    seed: int = 0


PHOTO_SET = PhotoSetSpec()
"""The set ``sise benchmark --dataset photos`` uses."""


_TEXTURE_TINTS: dict[str, tuple[float, float, float]] = {
    "brick": (1.0, 0.62, 0.50),
    "grass": (0.60, 0.90, 0.42),
    "gravel": (0.88, 0.82, 0.72),
}
# Regions (x0, y0, x1, y1) of the photos that hold none of the objects: sky, water, wood, grass,
# out-of-focus leaves.
_BACKGROUND_WINDOWS: tuple[tuple[str, tuple[int, int, int, int]], ...] = (
    ("china", (380, 0, 640, 250)),
    ("flower", (0, 0, 165, 427)),
    ("flower", (460, 0, 640, 330)),
    ("coffee", (480, 0, 600, 400)),
    ("rocket", (210, 0, 435, 120)),
)


def _background(
    rng: np.random.Generator, photos: dict[str, np.ndarray], size: int, avoid: set[str]
) -> np.ndarray:
    """A (size, size, 3) float32 background: a tinted texture or a blurred object-free crop."""
    if rng.uniform() < 0.4:
        name = sorted(_TEXTURE_TINTS)[int(rng.integers(len(_TEXTURE_TINTS)))]
        window = (0, 0, photos[name].shape[1], photos[name].shape[0])
        tint = np.array(_TEXTURE_TINTS[name]) * rng.uniform(0.85, 1.15, size=3)
        # a little defocus, as behind a photographed object, so the texture does not dominate
        blur = float(rng.uniform(0.0, 2.5))
    else:
        choices = [(n, w) for n, w in _BACKGROUND_WINDOWS if n not in avoid]
        name, window = choices[int(rng.integers(len(choices)))]
        tint = np.ones(3)
        blur = float(rng.uniform(3.0, 8.0))
    x0, y0, x1, y1 = window
    shortest = min(x1 - x0, y1 - y0)
    side = int(rng.integers(shortest // 2, shortest + 1))
    top = y0 + int(rng.integers(0, y1 - y0 - side + 1))
    left = x0 + int(rng.integers(0, x1 - x0 - side + 1))
    crop = Image.fromarray(photos[name][top : top + side, left : left + side]).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    if blur > 0:
        crop = crop.filter(ImageFilter.GaussianBlur(blur * size / 256))
    if rng.uniform() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(crop, dtype=np.float32) / 255.0 * tint.astype(np.float32)
    return np.clip(pixels, 0.0, 1.0)


_Box = tuple[int, int, int, int]  # (col0, row0, col1, row1), 0-based inclusive

# Size of a pasted object: the geometric mean of its cut-out's sides as a fraction of the image
# side (so wide, tall and round objects get similar areas), its longest side at most 95 % of the
# image. The real ImageNet models stop recognising most cut-outs below about half the image, so
# single objects are large; with a distractor, the main object stays recognisable and the
# distractor is smaller.
_SINGLE_SIZE = (0.55, 0.8)
_MAIN_SIZE = (0.45, 0.6)
_DISTRACTOR_SIZE = (0.25, 0.38)
_LONGEST_SIDE = 0.95


def _paste(
    rng: np.random.Generator,
    canvas: np.ndarray,
    cutout: Cutout,
    size_fraction: float,
    taken: list[_Box],
) -> tuple[_Box, _Box] | None:
    """Paste a scaled, jittered cut-out where it touches no region in ``taken``.

    Its scale makes ``sqrt(h · w) = size_fraction · image side`` for the cut-out's ``h × w``,
    unless that makes its longest side over ``_LONGEST_SIDE`` of the image side.

    Returns:
        ``(box, extent)``: the bounding boxes of its alpha > 0.5 (the annotation) and of its
        alpha ≥ 1/255 (every pixel it changes, feather included), or None when 50 random
        positions all touched ``taken``.
    """
    size = canvas.shape[0]
    w, h = cutout.alpha.size
    scale = min(size_fraction * size / np.sqrt(h * w), _LONGEST_SIDE * size / max(h, w))
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resample = Image.Resampling.BICUBIC
    rgb = np.asarray(cutout.rgb.resize((new_w, new_h), resample), dtype=np.float32) / 255.0
    alpha = np.asarray(cutout.alpha.resize((new_w, new_h), resample), dtype=np.float32) / 255.0
    alpha = np.clip(alpha, 0.0, 1.0)
    if rng.uniform() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    rgb = np.clip(rgb * np.float32(rng.uniform(0.9, 1.1)), 0.0, 1.0)

    def bounds(mask: np.ndarray) -> _Box:
        rows, cols = np.nonzero(mask)
        return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())

    # both relative to the cut-out's corner
    inner = bounds(alpha > 0.5)
    outer = bounds(alpha >= 1 / 255)
    for _ in range(50):
        # keep the whole box inside the image; the faint feather may be clipped
        x = int(rng.integers(-inner[0], size - inner[2]))
        y = int(rng.integers(-inner[1], size - inner[3]))
        extent = (x + outer[0], y + outer[1], x + outer[2], y + outer[3])
        if all(
            extent[2] < t[0] or t[2] < extent[0] or extent[3] < t[1] or t[3] < extent[1]
            for t in taken
        ):
            break
    else:
        return None
    # the part of the cut-out that lands on the canvas
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(size, y + new_h), min(size, x + new_w)
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    region = canvas[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1] = a * rgb[y0 - y : y1 - y, x0 - x : x1 - x] + (1 - a) * region
    box = (x + inner[0], y + inner[1], x + inner[2], y + inner[3])
    clipped = (
        max(0, extent[0]),
        max(0, extent[1]),
        min(size - 1, extent[2]),
        min(size - 1, extent[3]),
    )
    return box, clipped


def _render(
    rng: np.random.Generator,
    index: int,
    photos: dict[str, np.ndarray],
    cutouts: list[Cutout],
    size: int,
) -> tuple[np.ndarray, list[tuple[int, _Box]]]:
    """Image ``index``: its pixels and its objects as (position in PHOTO_OBJECTS, box)."""
    main = index % len(PHOTO_OBJECTS)
    distractor: int | None = None
    if rng.uniform() < DISTRACTOR_PROBABILITY:
        others = [
            k
            for k, obj in enumerate(PHOTO_OBJECTS)
            if obj.source != PHOTO_OBJECTS[main].source
            and obj.class_index != PHOTO_OBJECTS[main].class_index
        ]
        distractor = others[int(rng.integers(len(others)))]
    chosen = [main] if distractor is None else [main, distractor]
    canvas = _background(rng, photos, size, {PHOTO_OBJECTS[k].source for k in chosen})
    objects: list[tuple[int, _Box]] = []
    fraction = float(rng.uniform(*(_SINGLE_SIZE if distractor is None else _MAIN_SIZE)))
    first = _paste(rng, canvas, cutouts[main], fraction, [])
    assert first is not None  # nothing to touch
    objects.append((main, first[0]))
    if distractor is not None:
        fraction = float(rng.uniform(*_DISTRACTOR_SIZE))
        for _ in range(4):  # smaller and smaller until it fits beside the main object
            second = _paste(rng, canvas, cutouts[distractor], fraction, [first[1]])
            if second is not None:
                objects.append((distractor, second[0]))
                break
            fraction *= 0.85
    pixels = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    return pixels, objects


# --------------------------------------------------------------------------------------------
# VOC files


def _voc_class_names() -> list[str]:
    """ImageNet's names in index order, the repeated ones made unique for the VOC reader."""
    names: list[str] = []
    for index, name in enumerate(imagenet_class_names()):
        names.append(name if name not in names else f"{name} ({index})")
    return names


def make_photo_voc(
    root: str | Path, spec: PhotoSetSpec = PHOTO_SET, progress: bool = False
) -> Path:
    """Write the photo set in the VOC 2007 layout under ``root`` (see the module docstring).

    Files: ``root/VOC2007/JPEGImages/<id>.jpg`` (JPEG quality 95), ``Annotations/<id>.xml``
    (1-based inclusive boxes), ``ImageSets/Main/test.txt`` (every image) and ``classes.txt``
    (the 1,000 ImageNet classes). Image ids are ``000001``, ``000002``, ... Read it back with
    ``VOCDetection2007(root, "test")``; the class index is the ImageNet index.

    Args:
        root: output folder (plays the role of ``VOCdevkit``).
        spec: number of images (at least 1), image side (at least 64 pixels) and seed; the same
            spec writes identical files.
        progress: draw a progress bar over the images (the benchmark's set takes about a
            minute on a CPU).

    Returns:
        ``root`` as a Path.
    """
    if spec.n_images < 1:
        raise SiseError(f"n_images must be >= 1, got {spec.n_images}")
    if spec.image_size < 64:
        raise SiseError(f"image_size must be >= 64 pixels, got {spec.image_size}")
    photos = source_photos()
    cutouts = [cut(obj, photos[obj.source]) for obj in PHOTO_OBJECTS]
    names = _voc_class_names()
    root = Path(root)
    base = root / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    (base / "classes.txt").write_text("\n".join(names) + "\n")
    ids = [f"{i + 1:06d}" for i in range(spec.n_images)]
    with progress_bar(len(ids), "generating the photo set", progress, unit="image") as advance:
        for i, image_id in enumerate(ids):
            # one stream per image: image i is the same whatever n_images is
            rng = np.random.default_rng([spec.seed, i])
            pixels, objects = _render(rng, i, photos, cutouts, spec.image_size)
            Image.fromarray(pixels).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
            named = [(names[PHOTO_OBJECTS[k].class_index], box) for k, box in objects]
            (base / "Annotations" / f"{image_id}.xml").write_bytes(
                voc_annotation_xml(image_id, spec.image_size, named, "sise real-photo cut-outs")
            )
            advance(1)
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    return root
