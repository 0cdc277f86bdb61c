"""Reading photos (files on disk, uploaded bytes) into RGB arrays, with errors that say what is
wrong."""

from __future__ import annotations

import io
import os
import re
import warnings
from importlib import resources
from pathlib import Path
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from sise.errors import SiseError, check_integer

#: Photos shipped with the package (CC0; see ``sise/data/README.md``).
SAMPLE_IMAGES = {"chelsea": "chelsea.jpg", "coffee": "coffee.jpg"}


#: The most pixels :func:`load_image` and :func:`decode_image` decode by default: 50 Mpx holds
#: a 50-megapixel phone photo (8160 × 6120) and costs about 150 MB as RGB; a file above it is
#: refused before its pixels are decoded (a small PNG can claim 12000 × 12000 and take gigabytes).
DEFAULT_MAX_PIXELS = 50_000_000
#: The environment variable that raises (or lowers) :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS_VARIABLE = "SISE_MAX_PIXELS"
#: EXIF orientations that swap width and height (a photo stored on its side).
_SIDEWAYS = (5, 6, 7, 8)

#: A caller's smallest useful size: one side for both, or (height, width).
MinSize = int | tuple[int, int]


def pixel_budget(max_pixels: int | None = None) -> int:
    """The most pixels an image may have: ``max_pixels`` if given, else the environment
    variable ``SISE_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        SiseError: ``max_pixels`` or the variable is not a positive integer.
    """
    if max_pixels is not None:
        return check_integer("max_pixels", max_pixels, low=1)
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise SiseError(
            f"{MAX_PIXELS_VARIABLE}={text!r} is not a positive whole number of pixels: set it "
            f"like {MAX_PIXELS_VARIABLE}=100000000, or unset it for the default "
            f"{DEFAULT_MAX_PIXELS:,}"
        )
    return value


def sample_image_path(name: str = "chelsea") -> Path:
    """Path of a photo that ships with the package: ``"chelsea"`` (a cat) or ``"coffee"``."""
    if name not in SAMPLE_IMAGES:
        raise SiseError(f"no sample image {name!r}: choose one of {', '.join(SAMPLE_IMAGES)}")
    return Path(str(resources.files("sise") / "data" / SAMPLE_IMAGES[name]))


def load_image(
    path: str | Path, *, max_pixels: int | None = None, min_size: MinSize | None = None
) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array, upright.

    The EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): a phone photo stored on
    its side with an orientation tag comes out as it was taken. Grayscale, palette, 16-bit,
    floating-point and RGBA images are converted to RGB (alpha is composited onto white, so
    transparent regions do not turn black and attract attention).

    Args:
        path: the image file.
        max_pixels: the most pixels decoded (see :func:`pixel_budget`: default the environment
            variable ``SISE_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`); a larger image is
            refused before its pixels are decoded.
        min_size: the smallest size the caller needs, one side or (height, width) of the
            upright image; a JPEG is then decoded at 1/2, 1/4 or 1/8 of its size (PIL's draft
            mode) as long as both sides stay at least this big. ``None``: full size.

    Raises:
        SiseError: the file is missing, is a folder, is not an image, is corrupt, has more pixels
            than the budget, or is a float image with values outside [0, 1] and [0, 255] or NaN.
    """
    path = Path(path)
    if not path.exists():
        raise SiseError(f"image file {str(path)!r} does not exist: check the path")
    if path.is_dir():
        raise SiseError(f"{str(path)!r} is a folder: give the path of an image file")
    name = repr(str(path))
    return _decode(
        path,
        unreadable=f"{name} is not an image PIL can read (JPEG, PNG, BMP, TIFF, WebP ...)",
        corrupt=f"{name} is corrupt or truncated",
        what=name,
        max_pixels=pixel_budget(max_pixels),
        min_size=min_size,
    )


def decode_image(
    data: bytes, *, max_pixels: int | None = None, min_size: MinSize | None = None
) -> np.ndarray:
    """An uploaded image file's bytes as an (H, W, 3) uint8 RGB array (upright and converted as
    :func:`load_image` does, with the same ``max_pixels`` and ``min_size``).

    Raises:
        SiseError: the bytes are empty, not an image, corrupt, or hold more pixels than the
            budget.
    """
    if not data:
        raise SiseError("the uploaded file is empty: choose a photo (JPEG, PNG, ...)")
    return _decode(
        io.BytesIO(data),
        unreadable="the uploaded file is not an image PIL can read (JPEG, PNG, BMP, TIFF, WebP ...)",
        corrupt="the uploaded image is corrupt or truncated",
        what="the uploaded image",
        max_pixels=pixel_budget(max_pixels),
        min_size=min_size,
    )


def _too_many_pixels(what: str, size: tuple[int, int] | None, limit: int, pixels: int) -> str:
    """The refusal of an image above the pixel budget: its size, the limit, how to raise it."""
    if size is not None:
        pixels = size[0] * size[1]
        described = f"{size[0]} × {size[1]} = {pixels / 1e6:.1f} Mpx"
    else:
        described = f"{pixels / 1e6:.1f} Mpx" if pixels else "more pixels than PIL opens"
    needed = max(pixels, limit + 1)
    return (
        f"{what} has {described}, more than the limit of {limit:,} pixels ({limit / 1e6:g} Mpx) "
        "that sise decodes, to keep a small file from taking gigabytes of memory: save a "
        f"smaller copy of the image, or, if you trust the file, raise the limit with the "
        f"environment variable {MAX_PIXELS_VARIABLE}={needed} (in Python: max_pixels={needed})"
    )


def _decode(
    source: Path | IO[bytes],
    *,
    unreadable: str,
    corrupt: str,
    what: str,
    max_pixels: int,
    min_size: MinSize | None,
) -> np.ndarray:
    """Open, check the size, decode (no more than needed), turn upright and convert an image;
    PIL's failures become :class:`SiseError` messages worded by the caller (a file on disk is
    named by its path, an upload is not)."""
    try:
        # PIL warns above 89 Mpx and refuses above 179 Mpx when opening; the budget below is
        # the package's own limit, checked before any pixel is decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(source)
        with opened as image:
            if min_size is not None and image.format == "JPEG":
                # a JPEG's EXIF is read with its header (a PNG's getexif decodes the pixels)
                sideways = _orientation(image) in _SIDEWAYS
                height, width = _min_size(min_size)
                # the file's own axes: a photo stored on its side has them swapped
                image.draft(None, (height, width) if sideways else (width, height))
            if image.size[0] * image.size[1] > max_pixels:
                raise SiseError(_too_many_pixels(what, image.size, max_pixels, 0))
            image.load()
            if _orientation(image) != 1:
                ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the pixels
            return to_rgb_array(image)
    except SiseError:  # our own messages (a SiseError is also a ValueError)
        raise
    except Image.DecompressionBombError as error:
        # raised by Image.open above 2 × PIL.Image.MAX_IMAGE_PIXELS, before our check
        found = re.search(r"\((\d+) pixels\)", str(error))
        pixels = int(found.group(1)) if found else 0
        if pixels > max_pixels or not found:
            raise SiseError(_too_many_pixels(what, None, max_pixels, pixels)) from error
        raise SiseError(
            f"{what} is too large to open safely: {pixels:,} pixels, more than PIL opens "
            f"({error}); if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from error
    except UnidentifiedImageError as error:
        raise SiseError(unreadable) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SiseError(f"{corrupt}: {error}") from error


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: as stored); 1 also when the EXIF cannot be parsed (a broken tag
    does not make the picture unreadable)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # PIL's EXIF parser raises many types for a damaged block
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _min_size(min_size: MinSize) -> tuple[int, int]:
    """``min_size`` as (height, width), checked."""
    if isinstance(min_size, tuple) and len(min_size) == 2:
        return (
            check_integer("min_size height", min_size[0], low=1),
            check_integer("min_size width", min_size[1], low=1),
        )
    side = check_integer("min_size", min_size, low=1)
    return side, side


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any PIL image as an (H, W, 3) uint8 RGB array."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    elif image.mode == "F":
        image = Image.fromarray(_float_to_uint8(np.asarray(image, dtype=np.float64)))
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        span = max(float(array.max() - array.min()), 1.0)
        image = Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _float_to_uint8(array: np.ndarray) -> np.ndarray:
    """A single-channel float image (TIFF) as 8 bits: [0, 1] values are scaled by 255, [0, 255]
    values kept. PIL's own conversion clips to [0, 255], which makes a [0, 1] image black."""
    if not np.isfinite(array).all():
        raise SiseError("the float image holds NaN or Inf pixels: save it with finite values")
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1:
        array = array * 255
    elif low < 0 or high > 255:
        raise SiseError(
            f"the float image has values in [{low:g}, {high:g}]: save it scaled to [0, 1] or "
            "[0, 255]"
        )
    return np.round(array).astype(np.uint8)
