"""The objects of the photo set: hand-measured cut-outs of the source photos, one ImageNet class
each, and the source photos themselves (see :mod:`sise.eval.data.photos`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from sise.extras import require

__all__ = [
    "PHOTO_OBJECTS",
    "Cutout",
    "PhotoObject",
    "cut",
    "motorcycle_foreground",
    "source_photos",
]

_Point = tuple[float, float]


@dataclass(frozen=True)
class PhotoObject:
    """A hand-measured cut-out of one object from one source photo.

    Attributes:
        key: a short name (``"cat"``).
        source: the source photo (a key of :func:`source_photos`).
        class_index: its ImageNet class index (the class name is torchvision's).
        polygons: outlines in the source photo's pixel coordinates (x, y).
        ellipses: ``(cx, cy, rx, ry)`` in the same coordinates; the matte is the union of all.
        feather: σ of the Gaussian that softens the matte's edge, as a fraction of the object's
            longest side (plus 1 px).
        depth_matte: also keep only the pixels that the motorcycle photo's ground-truth
            disparity puts in the foreground (:func:`motorcycle_foreground`).
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


def source_photos() -> dict[str, np.ndarray]:
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


@dataclass
class Cutout:
    """An object's pixels and soft matte, cropped to the matte."""

    rgb: Image.Image  # RGB
    alpha: Image.Image  # L, 255 inside the outline, feathered across it


def motorcycle_foreground() -> np.ndarray:
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


def cut(obj: PhotoObject, photo: np.ndarray) -> Cutout:
    height, width = photo.shape[:2]
    outline = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(outline)
    for polygon in obj.polygons:
        draw.polygon([(float(x), float(y)) for x, y in polygon], fill=255)
    for cx, cy, rx, ry in obj.ellipses:
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    hard = np.asarray(outline) > 127
    if obj.depth_matte:
        hard = hard & motorcycle_foreground()
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
    return Cutout(Image.fromarray(photo).crop(box), soft.crop(box))
