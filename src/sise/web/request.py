"""What the page asks for: the JSON body of ``POST /api/explain``, checked.

An uploaded photo is only measured here, from its header (PIL reads the size without decoding):
one above the pixel budget is refused before it costs memory. It is decoded later, by
:meth:`ExplainRequest.decoded`, inside the explorer's one-at-a-time section, so that many
uploads at once hold only their compressed bytes (a 34 kB PNG of 36 Mpx decodes to 660 MB).
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sise.errors import SiseError
from sise.images import (
    MAX_PIXELS_VARIABLE,
    SAMPLE_IMAGES,
    decode_image,
    load_image,
    pixel_budget,
    sample_image_path,
)
from sise.methods.registry import METHODS
from sise.models.loading import DEMO_MODEL

#: Input sizes (square, pixels) the API accepts; the page offers a few (:data:`sise.web.page.SIZES`).
SIZE_RANGE = (32, 1024)

REQUEST_KEYS = frozenset({"image", "sample", "model", "method", "size", "selection", "target"})


def check_upload_size(data: bytes) -> None:
    """Refuse an uploaded photo whose header gives more pixels than
    :func:`sise.images.pixel_budget` (the one budget of files and uploads), without
    decoding it (an unreadable header is left for :func:`sise.images.decode_image` to name).

    Raises:
        SiseError: the photo is larger than the budget; the message says how to raise it.
    """
    limit = pixel_budget()
    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the budget below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
    except Image.DecompressionBombError as error:  # over twice PIL's limit: refused at open
        raise SiseError(
            f"the uploaded photo is too large ({error}); the page decodes at most "
            f"{limit / 1e6:g} Mpx: upload a smaller copy"
        ) from error
    except Exception:  # decode_image words every unreadable file; nothing was decoded here
        return
    if width * height > limit:
        raise SiseError(
            f"the uploaded photo is {width} x {height} = {width * height / 1e6:.0f} Mpx, more than "
            f"the page decodes ({limit / 1e6:g} Mpx): upload a smaller copy, or start `sise app` "
            f"with {MAX_PIXELS_VARIABLE} set higher"
        )


@dataclass
class ExplainRequest:
    """What the page asks for; :func:`parse_request` builds it from the JSON body.

    ``model`` is any name :func:`sise.models.loading.load_model` takes: that function is the one
    place that reads model names. ``rgb`` is ``None`` for an upload until :meth:`decoded`.
    """

    rgb: np.ndarray | None
    photo: str
    model: str = DEMO_MODEL
    method: str = "sise"
    size: int = 224
    selection: str = "fixed"
    target: str | None = None
    #: an uploaded photo's file bytes, until :meth:`decoded` decodes them
    upload: bytes | None = None

    def decoded(self) -> np.ndarray:
        """The photo as an (H, W, 3) uint8 RGB array, an upload decoded on the first call.

        Raises:
            SiseError: the upload is not an image, is corrupt, or is too large.
        """
        if self.rgb is None:
            if self.upload is None:
                raise SiseError("the request holds no photo")
            self.rgb, self.upload = decode_image(self.upload), None
        return self.rgb


def parse_request(payload: object) -> ExplainRequest:
    """Check the JSON body of ``POST /api/explain``; a bundled photo is read, an upload only
    measured (:func:`check_upload_size`).

    Raises:
        SiseError: a missing or unknown field, a bad value, or a photo over the pixel budget.
    """
    if not isinstance(payload, dict):
        raise SiseError("the request body must be a JSON object")
    unknown = sorted(set(payload) - REQUEST_KEYS)
    if unknown:
        raise SiseError(f"unknown request fields {unknown}: use {sorted(REQUEST_KEYS)}")
    image, sample = payload.get("image"), payload.get("sample")
    if (image is None) == (sample is None):
        raise SiseError("give exactly one of 'image' (base64 file bytes) and 'sample'")
    if image is not None:
        if not isinstance(image, str):
            raise SiseError("'image' must be the file's bytes as a base64 string")
        try:
            data = base64.b64decode(image.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError) as error:
            raise SiseError(f"'image' is not valid base64: {error}") from error
        if not data:
            raise SiseError("the uploaded file is empty: choose a photo (JPEG, PNG, ...)")
        check_upload_size(data)
        rgb, photo, upload = None, "uploaded photo", data
    else:
        if not isinstance(sample, str) or sample not in SAMPLE_IMAGES:
            raise SiseError(
                f"no sample photo {_shown(sample)}: choose one of {', '.join(SAMPLE_IMAGES)}"
            )
        # a bundled photo is small (600 x 400): read now, so a missing file shows at once
        rgb, photo, upload = load_image(sample_image_path(sample)), sample, None
    for key in ("model", "method", "selection"):
        if not isinstance(payload.get(key) or "", str):
            raise SiseError(f"'{key}' must be a string, got {type(payload[key]).__name__}")
    if not isinstance(payload.get("target") or "", str | int) or isinstance(
        payload.get("target"), bool
    ):
        raise SiseError("'target' must be a class index or a class name")

    # a text field: blank means the default, as an empty --model does
    model = str(payload.get("model") or DEMO_MODEL).strip() or DEMO_MODEL
    method = str(payload.get("method") or "sise")
    if method not in METHODS:
        raise SiseError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    size = payload.get("size", 224)
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool):
        raise SiseError(f"'size' must be a whole number of pixels, got {_shown(size)}")
    if not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise SiseError(f"input size {size} is out of range: use {SIZE_RANGE[0]}..{SIZE_RANGE[1]}")
    selection = str(payload.get("selection") or "fixed")
    if selection not in ("fixed", "adaptive"):
        raise SiseError(f"unknown selection {selection!r}: use 'fixed' or 'adaptive'")
    target = payload.get("target")
    target = None if target is None or str(target).strip() == "" else str(target).strip()
    return ExplainRequest(rgb, photo, model, method, size, selection, target, upload)


def _shown(value: object) -> str:
    """A value for an error message: a scalar's repr (cut short), a container's type only (the
    repr of a deeply nested list would overflow the stack)."""
    if isinstance(value, list | dict):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
