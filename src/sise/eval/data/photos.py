"""A real-photo benchmark set that needs no download: objects cut from CC0 / public-domain
photos, pasted onto real textures and blurred photo backgrounds, with exact boxes.

Why: VOC and COCO cannot be downloaded on offline machines, and the synthetic 64-px shapes
saturate the localisation metrics. This set is built from photos that install with the
package's dependencies, so ``sise benchmark`` can rank methods on real ImageNet networks
(``efficientnet_lite0``, ``efficientnet_lite2``) anywhere.

The objects (:data:`PHOTO_OBJECTS`; one ImageNet class each, chosen because both real models
recognise the cut-out on its own):

==============  =====  ============  =================================================
ImageNet class  index  source photo  cut-out
==============  =====  ============  =================================================
Egyptian cat    285    chelsea       the cat's face (an ellipse)
espresso        967    coffee        cup, saucer and spoon (two ellipses and a polygon)
space shuttle   812    astronaut     the shuttle model behind the astronaut (polygon)
moped           665    motorcycle    the motorcycle (polygon ∩ stereo foreground)
spotlight       818    motorcycle    its headlamp (ellipse ∩ stereo foreground)
tripod          872    camera        column, head and three legs (five polygons)
==============  =====  ============  =================================================

ImageNet has no "motorcycle" class; its motorcycles are filed under ``moped`` and ``motor
scooter`` (on the whole photo Lite0 gives moped 0.49, motor scooter 0.34; Lite2 motor scooter
0.19, moped 0.15); ``moped`` is used. Cut-outs that the models did not recognise once pasted (the Summer Palace tower as
``palace``, the Falcon 9 as ``missile``, the flag as ``flagpole``, the wheel as ``disk brake``)
were left out.

How an image is made (everything is drawn from ``numpy.random.default_rng([seed, i])``, so image
``i`` is byte-identical on every run and a larger ``n_images`` only appends images):

1. a background (:func:`_background`): with probability 0.4 a random square crop of one of
   scikit-image's CC0 textures (brick, grass, gravel), tinted and slightly defocused (Gaussian
   σ ≤ 2.5 px); otherwise a crop of an object-free region of a photo (sky, lake, wood,
   out-of-focus leaves), blurred with σ = 3-8 px, never from the photo an object of the image
   comes from;
2. the image's object: the classes take turns (image ``i`` shows ``PHOTO_OBJECTS[i % 6]``).
   The cut-out's matte is its hand-measured outline (polygons and ellipses in the source
   photo's pixels, measured on gridded enlargements), for the motorcycle intersected with the
   foreground of the photo's ground-truth stereo disparity (:func:`_motorcycle_foreground`),
   feathered with a Gaussian (σ = 1 % of the object's longest side + 1 px) so that its edge
   blends like a soft matte. It is scaled so that the geometric mean of its sides is 55-80 % of
   the image side (45-60 % with a distractor), its longest side at most 95 %, flipped
   left-right half of the time, brightness × 0.9-1.1, and placed at a random position with its
   box inside the image;
3. with probability :data:`DISTRACTOR_PROBABILITY` a second object of another class, cut from
   another photo, 25-38 % of the image side (shrunk until it fits), placed so that no pixel of
   either object, feather included, touches the other's. The image then has two (image, class) pairs, each the other's
   distractor.

A box is the bounding box of the pasted object's alpha > 0.5, in image pixels, so it is exact
by construction (objects never overlap, so no object hides part of another or lies in its box). Files are written in
the PASCAL VOC 2007 layout (``VOC2007/JPEGImages``, ``Annotations``, ``ImageSets/Main/test.txt``)
with a ``classes.txt`` that lists the 1,000 ImageNet classes in index order, so the class index
of :class:`~sise.eval.data.datasets.VOCDetection2007` is the ImageNet index. (Older torchvision
versions give two pairs of classes the same name, ``crane`` and ``maillot``; ``classes.txt``
then writes the second of each as ``"crane (517)"`` / ``"maillot (639)"`` because the reader
needs unique names; no object here uses them, and :class:`PhotoDataset` reports torchvision's
names.)

Per-model filter: a pair is kept only if the model it is built for is confident about it: the
softmax probability of the pair's class on the whole image (resized to the model's input, as the
benchmark feeds it) is at least :data:`MIN_PROBABILITY` = 0.25. A class at 0.25 holds at least
a quarter of the model's belief, so it is among its top 4; a top-1 rule would drop every
two-object image's second pair, and split classes (``Egyptian cat`` / ``tabby`` / ``tiger cat``,
``moped`` / ``motor scooter``) often have a top-1 below 0.5. The probabilities are cached per
model (name, input size, normalisation and a digest of the weights).

Sources and their licences (all install offline with scikit-image, scikit-learn and this
package; nothing is downloaded):

=========================  ==================================================  =============
photo                      origin                                              licence
=========================  ==================================================  =============
``chelsea`` (this package) "Chelsea the cat", Stefan van der Walt              CC0
``coffee`` (this package)  "Coffee cup", Rachel Michetti, Pikolo Espresso Bar  CC0
``astronaut`` (skimage)    Eileen Collins, NASA Great Images database          public domain
``camera`` (skimage)       the cameraman, Lav Varshney                         CC0
``motorcycle`` (skimage)   ``stereo_motorcycle`` left view and disparity,      none stated
                           Middlebury 2014 stereo data set [1]
``rocket`` (skimage)       DSCOVR launch on Falcon 9, SpaceX (sky only)        public domain
``brick`` (skimage)        CC0Textures "Bricks25"                              CC0
``grass`` (skimage)        DeviantArt linolafett "Grass 01"                    CC0
``gravel`` (skimage)       CC0Textures "Gravel04"                              CC0
``china`` (scikit-learn)   Summer Palace, Flickr danielbuechele (sky, lake)    CC BY 2.0
``flower`` (scikit-learn)  dahlia, Flickr vultilion (out-of-focus leaves)      CC BY 2.0
=========================  ==================================================  =============

scikit-image states the licence of each of its photos in its ``skimage.data`` docstrings, and
its policy is to ship only CC0 / public-domain images; for ``stereo_motorcycle`` the docstring
names no licence and cites [1], as we do here. The two scikit-learn photos (used only as blurred
backgrounds) are CC BY 2.0 (scikit-learn's ``datasets/images/README.txt``): images generated
from them are derivatives that keep this attribution.

[1] D. Scharstein, H. Hirschmüller, Y. Kitajima, G. Krathwohl, N. Nesic, X. Wang and
P. Westling. High-resolution stereo datasets with subpixel-accurate ground truth. GCPR 2014.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from sise.errors import SiseError
from sise.eval.data.datasets import EvalImage, EvalPair, VOCDetection2007, voc_annotation_xml
from sise.extras import require
from sise.models.loading import LoadedModel, imagenet_class_names

__all__ = [
    "DISTRACTOR_PROBABILITY",
    "MIN_PROBABILITY",
    "PHOTO_OBJECTS",
    "PHOTO_SET",
    "PhotoDataset",
    "PhotoObject",
    "PhotoSetSpec",
    "make_photo_voc",
    "photo_dataset",
    "photo_set",
]

MIN_PROBABILITY = 0.25
"""A pair is kept when the model's softmax probability of its class is at least this."""

DISTRACTOR_PROBABILITY = 0.4
"""Share of images that get a second object of another class (the distractor)."""

_Point = tuple[float, float]


@dataclass(frozen=True)
class PhotoObject:
    """A hand-measured cut-out of one object from one source photo.

    Attributes:
        key: a short name (``"cat"``).
        source: the source photo (a key of :func:`_source_photos`).
        class_index: its ImageNet class index (the class name is torchvision's).
        polygons: outlines in the source photo's pixel coordinates (x, y).
        ellipses: ``(cx, cy, rx, ry)`` in the same coordinates; the matte is the union of all.
        feather: σ of the Gaussian that softens the matte's edge, as a fraction of the object's
            longest side (plus 1 px).
        depth_matte: also keep only the pixels that the motorcycle photo's ground-truth
            disparity puts in the foreground (:func:`_motorcycle_foreground`).
    """

    key: str
    source: str
    class_index: int
    polygons: tuple[tuple[_Point, ...], ...] = ()
    ellipses: tuple[tuple[float, float, float, float], ...] = ()
    feather: float = 0.01
    depth_matte: bool = False


# Outlines measured by hand on gridded enlargements of each photo. Classes were chosen with
# EfficientNet-Lite0 and -Lite2: each cut-out alone is predicted as its class.
# fmt: off
PHOTO_OBJECTS: tuple[PhotoObject, ...] = (
    PhotoObject(
        "cat",
        "chelsea",
        285,  # Egyptian cat
        ellipses=((195, 160, 190, 175),),
    ),
    PhotoObject(
        "espresso",
        "coffee",
        967,  # espresso
        polygons=(((395, 72), (422, 66), (420, 110), (404, 122)),),
        ellipses=((278, 230, 203, 160), (290, 112, 120, 98)),
    ),
    PhotoObject(
        "shuttle",
        "astronaut",
        812,  # space shuttle
        polygons=(
            (
                (396, 0), (432, 0), (436, 30), (446, 40), (452, 60), (452, 200), (460, 215),
                (462, 230), (458, 265), (445, 285), (375, 285), (362, 240), (355, 225),
                (355, 212), (372, 200), (380, 180), (382, 110), (385, 45), (392, 35), (396, 20),
            ),
        ),
    ),
    PhotoObject(
        "motorcycle",
        "motorcycle",
        665,  # moped (ImageNet has no "motorcycle" class; its nearest, and the models' top-1)
        polygons=(
            (
                (92, 195), (140, 150), (200, 158), (290, 185), (345, 175), (340, 120),
                (380, 115), (420, 120), (470, 140), (495, 100), (525, 85), (545, 95),
                (585, 120), (580, 140), (560, 190), (575, 265), (640, 285), (675, 320),
                (688, 370), (675, 425), (640, 450), (590, 455), (545, 430), (515, 380),
                (470, 370), (400, 380), (350, 410), (345, 440), (320, 440), (310, 380),
                (270, 395), (210, 405), (150, 390), (122, 340), (120, 280), (110, 240),
                (92, 225),
            ),
        ),
        depth_matte=True,
    ),
    PhotoObject(
        "headlamp",
        "motorcycle",
        818,  # spotlight
        ellipses=((538, 155, 33, 36),),
        depth_matte=True,
    ),
    PhotoObject(
        "tripod",
        "camera",
        872,  # tripod: its column, head and three legs, without the grass between them
        polygons=(
            ((289, 190), (301, 190), (301, 300), (289, 300)),
            ((272, 298), (340, 298), (345, 332), (272, 332)),
            ((276, 328), (291, 328), (241, 510), (225, 510)),
            ((290, 328), (301, 328), (301, 500), (290, 500)),
            ((311, 328), (327, 328), (413, 511), (398, 511)),
        ),
    ),
)
# fmt: on
"""The objects of the set, one per class, in the order images take them."""


@dataclass(frozen=True)
class PhotoSetSpec:
    """The generator's settings (part of the cache key)."""

    n_images: int = 600
    image_size: int = 256
    seed: int = 0


PHOTO_SET = PhotoSetSpec()
"""The set ``sise benchmark --dataset photos`` uses."""


# --------------------------------------------------------------------------------------------
# source photos


def _source_photos() -> dict[str, np.ndarray]:
    """Every source photo as an (H, W, 3) uint8 array, all from installed packages."""
    # the photo set is cut from scikit-image's and scikit-learn's sample photos
    skimage_data = require("skimage.data", "the photo benchmark set")
    load_sample_image = require("sklearn.datasets", "the photo benchmark set").load_sample_image
    from sise.images import load_image, sample_image_path

    def rgb(gray: np.ndarray) -> np.ndarray:
        return np.repeat(gray[:, :, None], 3, axis=2)

    return {
        "chelsea": load_image(sample_image_path("chelsea")),
        "coffee": load_image(sample_image_path("coffee")),
        "astronaut": skimage_data.astronaut(),
        "rocket": skimage_data.rocket(),
        "camera": rgb(skimage_data.camera()),
        "motorcycle": skimage_data.stereo_motorcycle()[0],
        "brick": rgb(skimage_data.brick()),
        "grass": rgb(skimage_data.grass()),
        "gravel": rgb(skimage_data.gravel()),
        "china": load_sample_image("china.jpg"),
        "flower": load_sample_image("flower.jpg"),
    }


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


# --------------------------------------------------------------------------------------------
# drawing


@dataclass
class _Cutout:
    """An object's pixels and soft matte, cropped to the matte."""

    rgb: Image.Image  # RGB
    alpha: Image.Image  # L, 255 inside the outline, feathered across it


def _motorcycle_foreground() -> np.ndarray:
    """Where the motorcycle photo shows something near the camera, from its true disparity.

    scikit-image's ``stereo_motorcycle`` comes with the Middlebury ground-truth disparity (in
    pixels; larger is nearer; ``inf`` where the right view cannot see the pixel, which on the
    left view is background next to a near object's edge). The motorcycle lies at 40-58 px, the
    shelves, bench and wall behind it at about 20 px, so ``disparity > 32`` separates them. The
    floor under the motorcycle is as near as its wheels, so floor pixels are removed too: those
    within 3 px of a plane ``d = a·y + b·x + c`` fitted (least squares) to three floor-only
    regions. A 5 × 5 median filter removes isolated pixels.

    Returns:
        (500, 741) bool array.
    """
    skimage_data = require("skimage.data", "the photo benchmark set")
    disparity = skimage_data.stereo_motorcycle()[2]
    known = np.isfinite(disparity)
    d = np.where(known, disparity, 0.0)
    rows, cols = np.mgrid[0 : d.shape[0], 0 : d.shape[1]]
    floor_only = np.zeros_like(known)
    floor_only[400:, :110] = True
    floor_only[460:, :] = True
    floor_only[300:, 705:] = True
    floor_only &= known
    design = np.stack([rows[floor_only], cols[floor_only], np.ones(int(floor_only.sum()))], 1)
    (a, b, c), *_ = np.linalg.lstsq(design, d[floor_only], rcond=None)
    floor = np.abs(d - (a * rows + b * cols + c)) < 3.0
    near = (d > 32.0) & ~floor
    cleaned = Image.fromarray(near.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(5))
    return np.asarray(cleaned) > 127


def _cut(obj: PhotoObject, photo: np.ndarray) -> _Cutout:
    height, width = photo.shape[:2]
    outline = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(outline)
    for polygon in obj.polygons:
        draw.polygon([(float(x), float(y)) for x, y in polygon], fill=255)
    for cx, cy, rx, ry in obj.ellipses:
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    hard = np.asarray(outline) > 127
    if obj.depth_matte:
        hard = hard & _motorcycle_foreground()
    matte = Image.fromarray(hard.astype(np.uint8) * 255)
    if not hard.any():  # pragma: no cover - the outlines are fixed
        raise AssertionError(f"the outline of {obj.key} is empty")
    rows, cols = np.nonzero(hard)
    longest = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    # A feather that scales with the object keeps its edge equally soft at every paste size.
    sigma = float(obj.feather * longest + 1.0)
    soft = matte.filter(ImageFilter.GaussianBlur(sigma))
    margin = int(np.ceil(3 * sigma))
    box = (
        max(0, int(cols.min()) - margin),
        max(0, int(rows.min()) - margin),
        min(width, int(cols.max()) + 1 + margin),
        min(height, int(rows.max()) + 1 + margin),
    )
    return _Cutout(Image.fromarray(photo).crop(box), soft.crop(box))


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
    cutout: _Cutout,
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
    cutouts: list[_Cutout],
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


def make_photo_voc(root: str | Path, spec: PhotoSetSpec = PHOTO_SET) -> Path:
    """Write the photo set in the VOC 2007 layout under ``root`` (see the module docstring).

    Files: ``root/VOC2007/JPEGImages/<id>.jpg`` (JPEG quality 95), ``Annotations/<id>.xml``
    (1-based inclusive boxes), ``ImageSets/Main/test.txt`` (every image) and ``classes.txt``
    (the 1,000 ImageNet classes). Image ids are ``000001``, ``000002``, ... Read it back with
    ``VOCDetection2007(root, "test")``; the class index is the ImageNet index.

    Args:
        root: output folder (plays the role of ``VOCdevkit``).
        spec: number of images (at least 1), image side (at least 64 pixels) and seed; the same
            spec writes identical files.

    Returns:
        ``root`` as a Path.
    """
    if spec.n_images < 1:
        raise SiseError(f"n_images must be >= 1, got {spec.n_images}")
    if spec.image_size < 64:
        raise SiseError(f"image_size must be >= 64 pixels, got {spec.image_size}")
    photos = _source_photos()
    cutouts = [_cut(obj, photos[obj.source]) for obj in PHOTO_OBJECTS]
    names = _voc_class_names()
    root = Path(root)
    base = root / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    (base / "classes.txt").write_text("\n".join(names) + "\n")
    ids = [f"{i + 1:06d}" for i in range(spec.n_images)]
    for i, image_id in enumerate(ids):
        # one stream per image: image i is the same whatever n_images is
        rng = np.random.default_rng([spec.seed, i])
        pixels, objects = _render(rng, i, photos, cutouts, spec.image_size)
        Image.fromarray(pixels).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        named = [(names[PHOTO_OBJECTS[k].class_index], box) for k, box in objects]
        (base / "Annotations" / f"{image_id}.xml").write_bytes(
            voc_annotation_xml(image_id, spec.image_size, named, "sise real-photo cut-outs")
        )
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(ids) + "\n")
    return root


# --------------------------------------------------------------------------------------------
# cache


def _generator_key(spec: PhotoSetSpec) -> str:
    """Changes whenever the generated files could: this module's code, the spec, the sources."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    for package in ("scikit-image", "scikit-learn", "pillow", "numpy"):
        try:
            digest.update(f"{package}={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=?".encode())
    return digest.hexdigest()


def _content_digest(base: Path) -> str:
    """SHA-256 over every file of the set (relative path and bytes), in path order."""
    digest = hashlib.sha256()
    files = sorted(p for p in base.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


_MANIFEST = "photoset.json"


def _default_root() -> Path:
    from sise.eval.data.synthetic import default_cache_dir

    return default_cache_dir() / "photos"


def photo_set(root: str | Path | None = None, spec: PhotoSetSpec = PHOTO_SET) -> Path:
    """The folder of the generated photo set (it holds ``VOC2007/``), generated if absent.

    The set lives in ``root/photos-<key>`` where ``key`` digests this module's code, ``spec`` and
    the versions of the packages that provide the photos and encode the files, so a changed
    generator writes a new folder instead of reusing a stale one. Generation goes to a
    temporary folder that is renamed when complete, so concurrent processes (``torchrun``
    ranks) and interrupted runs never see half a set. A folder whose files no longer match the
    digest recorded at generation time is regenerated.

    Args:
        root: where to keep sets (default: ``$SISE_CACHE/photos`` or ``~/.cache/sise/photos``).
        spec: the generator's settings.
    """
    parent = Path(root) if root is not None else _default_root()
    key = _generator_key(spec)
    folder = parent / f"photos-{key[:16]}"
    manifest = folder / _MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        if recorded.get("content") == _content_digest(folder / "VOC2007"):
            return folder
        shutil.rmtree(folder)  # our own folder (it has our manifest), with damaged files
    elif folder.exists():
        raise SiseError(
            f"{folder} exists but holds no finished photo set ({_MANIFEST} is missing): "
            "delete it and run again"
        )
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=parent))
    try:
        make_photo_voc(staging, spec)
        content = _content_digest(staging / "VOC2007")
        (staging / _MANIFEST).write_text(
            json.dumps({"key": key, "content": content, "spec": dataclasses.asdict(spec)}) + "\n"
        )
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / _MANIFEST).is_file():  # not another process that got there first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def set_digest(folder: Path) -> str:
    """The content digest recorded when the set in ``folder`` was generated."""
    return str(json.loads((folder / _MANIFEST).read_text())["content"])


# --------------------------------------------------------------------------------------------
# per-model filter


def _weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def class_probabilities(
    loaded: LoadedModel, pairs: Sequence[EvalPair], *, batch_size: int = 32
) -> np.ndarray:
    """The softmax probability of each pair's class on its whole image, as the benchmark feeds it.

    Args:
        loaded: the model (left in the mode it is in; no gradients are taken).
        pairs: the (image, class) pairs.
        batch_size: images per forward pass.

    Returns:
        (len(pairs),) float64 array.
    """
    from sise.images import load_image

    by_image: dict[Path, list[int]] = {}
    for k, pair in enumerate(pairs):
        by_image.setdefault(pair.image_path, []).append(k)
    paths = list(by_image)
    out = np.zeros(len(pairs))
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            inputs = torch.cat([loaded.preprocess(load_image(p)) for p in chunk])
            probabilities = loaded.model(inputs).float().softmax(dim=1).cpu().numpy()
            for row, path in enumerate(chunk):
                for k in by_image[path]:
                    out[k] = probabilities[row, pairs[k].class_index]
    return out


class PhotoDataset:
    """The photo set's (image, class) pairs that one model is confident about.

    Same protocol as :class:`~sise.eval.data.datasets.VOCDetection2007` (``len``, indexing,
    iteration, ``class_names``, ``images()``, ``root``, ``split``). Its ``class_names`` are the
    1,000 ImageNet names (torchvision's, as :func:`sise.models.loading.imagenet_class_names`), so a class
    index is an ImageNet index.

    Attributes:
        probabilities: the model's softmax probability of each kept pair's class.
        total_pairs: how many pairs the set has before filtering.
    """

    def __init__(
        self,
        voc: VOCDetection2007,
        keep: Sequence[int],
        probabilities: Sequence[float],
    ) -> None:
        names = imagenet_class_names()
        self.root = voc.root
        self.split = voc.split
        self.class_names: list[str] = names
        self.total_pairs = len(voc)
        self._pairs = [
            dataclasses.replace(voc[k], class_name=names[voc[k].class_index]) for k in keep
        ]
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        kept_by_image: dict[str, list[int]] = {}
        for pair in self._pairs:
            kept_by_image.setdefault(pair.image_id, []).append(pair.class_index)
        self._images = [
            EvalImage(image.image_id, image.image_path, tuple(kept_by_image[image.image_id]))
            for image in voc.images()
            if image.image_id in kept_by_image
        ]

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> EvalPair:
        return self._pairs[index]

    def __iter__(self) -> Iterator[EvalPair]:
        return iter(self._pairs)

    def images(self) -> list[EvalImage]:
        """The images with at least one kept pair, in split order, with their kept classes."""
        return list(self._images)


def photo_dataset(
    root: str | Path | None,
    loaded: LoadedModel,
    *,
    min_probability: float = MIN_PROBABILITY,
    spec: PhotoSetSpec = PHOTO_SET,
) -> tuple[PhotoDataset, dict[str, str]]:
    """The photo set, filtered for ``loaded``, and its identity for the benchmark's resume hash.

    The set is generated on first use (:func:`photo_set`); the filter (:func:`class_probabilities`
    ≥ ``min_probability``) runs once per model and is cached next to the set, under a key made of
    the model's name, input size, normalisation and a digest of its weights.

    Args:
        root: where to keep sets (default: the cache, see :func:`photo_set`).
        loaded: an ImageNet classifier (1,000 outputs).
        min_probability: the least softmax probability of a kept pair's class.
        spec: the generator's settings (default: :data:`PHOTO_SET`, the benchmark's set).

    Returns:
        ``(dataset, identity)``: identity holds ``kind`` (``"photos"``), ``content`` (the set's
        content digest), ``split``, ``model``, ``weights``, ``input_size``, ``filter`` and
        ``pairs`` (kept / total), all strings.

    Raises:
        SiseError: the model does not have 1,000 outputs, or it is confident about no pair.
    """
    if len(loaded.class_names) != 1000:
        raise SiseError(
            f"the photo set's classes are ImageNet's, but {loaded.name} has "
            f"{len(loaded.class_names)} outputs: use an ImageNet model such as efficientnet_lite0"
        )
    if not 0.0 < min_probability < 1.0:
        raise SiseError(f"min_probability must lie in (0, 1), got {min_probability}")
    folder = photo_set(root, spec)
    content = set_digest(folder)
    voc = VOCDetection2007(folder, "test")
    weights = _weights_digest(loaded.model)
    model_key = hashlib.sha256(
        json.dumps(
            [loaded.name, list(loaded.input_size), list(loaded.mean), list(loaded.std), weights]
        ).encode()
    ).hexdigest()[:16]
    cache = folder / "filters" / f"{model_key}.json"
    probabilities: list[float] | None = None
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("content") == content and len(cached.get("probabilities", [])) == len(voc):
            probabilities = [float(p) for p in cached["probabilities"]]
    if probabilities is None:
        probabilities = class_probabilities(loaded, list(voc)).tolist()
        cache.parent.mkdir(exist_ok=True)
        staging = cache.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(
            json.dumps({"content": content, "model": loaded.name, "probabilities": probabilities})
        )
        os.replace(staging, cache)
    keep = [k for k, p in enumerate(probabilities) if p >= min_probability]
    if not keep:
        raise SiseError(
            f"{loaded.name} gives no pair of the photo set a probability of at least "
            f"{min_probability}: it does not recognise these ImageNet classes"
        )
    dataset = PhotoDataset(voc, keep, [probabilities[k] for k in keep])
    identity = {
        "kind": "photos",
        "content": content[:16],
        "split": dataset.split,
        "model": loaded.name,
        "weights": weights[:16],
        "input_size": "x".join(map(str, loaded.input_size)),
        "filter": f"softmax>={min_probability:g}",
        "pairs": f"{len(dataset)}/{dataset.total_pairs}",
    }
    return dataset, identity
