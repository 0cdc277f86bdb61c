"""Reading photos (files on disk, uploaded bytes) into RGB arrays, with errors that say what is
wrong."""

from __future__ import annotations

import io
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from sise.errors import SiseError

#: Photos shipped with the package (CC0; see ``sise/data/README.md``).
SAMPLE_IMAGES = {"chelsea": "chelsea.jpg", "coffee": "coffee.jpg"}


def sample_image_path(name: str = "chelsea") -> Path:
    """Path of a photo that ships with the package: ``"chelsea"`` (a cat) or ``"coffee"``."""
    if name not in SAMPLE_IMAGES:
        raise SiseError(f"no sample image {name!r}: choose one of {', '.join(SAMPLE_IMAGES)}")
    return Path(str(resources.files("sise") / "data" / SAMPLE_IMAGES[name]))


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    Grayscale, palette, 16-bit, floating-point and RGBA images are converted to RGB (alpha is
    composited onto white, so transparent regions do not turn black and attract attention).

    Raises:
        SiseError: the file is missing, is a folder, is not an image, is corrupt, has more pixels
            than PIL's decompression-bomb limit, or is a float image with values outside
            [0, 1] and [0, 255] or NaN.
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
        too_large=lambda error: (
            f"{name} is too large to open safely ({error}); if you trust the file, raise "
            "PIL.Image.MAX_IMAGE_PIXELS, or save a smaller copy of the image"
        ),
    )


def decode_image(data: bytes) -> np.ndarray:
    """An uploaded image file's bytes as an (H, W, 3) uint8 RGB array (converted as
    :func:`load_image` converts).

    Raises:
        SiseError: the bytes are empty, not an image, corrupt, or too large to decode safely.
    """
    if not data:
        raise SiseError("the uploaded file is empty: choose a photo (JPEG, PNG, ...)")
    return _decode(
        io.BytesIO(data),
        unreadable="the uploaded file is not an image PIL can read (JPEG, PNG, BMP, TIFF, WebP ...)",
        corrupt="the uploaded image is corrupt or truncated",
        too_large=lambda error: f"the uploaded image is too large to decode safely: {error}",
    )


def _decode(
    source: Path | IO[bytes],
    *,
    unreadable: str,
    corrupt: str,
    too_large: Callable[[Exception], str],
) -> np.ndarray:
    """Open and convert an image; PIL's failures become :class:`SiseError` messages worded by
    the caller (a file on disk is named by its path, an upload is not)."""
    try:
        with Image.open(source) as image:
            image.load()
            return to_rgb_array(image)
    except SiseError:  # to_rgb_array's own message (a SiseError is also a ValueError)
        raise
    except Image.DecompressionBombError as error:
        raise SiseError(too_large(error)) from error
    except UnidentifiedImageError as error:
        raise SiseError(unreadable) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SiseError(f"{corrupt}: {error}") from error


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
