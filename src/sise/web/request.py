"""What the page asks for: the JSON body of ``POST /api/explain``, checked, its photo decoded."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from sise.errors import SiseError
from sise.images import SAMPLE_IMAGES, decode_image, load_image, sample_image_path
from sise.methods.registry import METHODS
from sise.models.loading import DEMO_MODEL

#: Input sizes (square, pixels) the API accepts; the page offers a few (:data:`sise.web.page.SIZES`).
SIZE_RANGE = (32, 1024)

REQUEST_KEYS = frozenset({"image", "sample", "model", "method", "size", "selection", "target"})


@dataclass
class ExplainRequest:
    """What the page asks for; :func:`parse_request` builds it from the JSON body.

    ``model`` is any name :func:`sise.models.loading.load_model` takes: that function is the one
    place that reads model names.
    """

    rgb: np.ndarray
    photo: str
    model: str = DEMO_MODEL
    method: str = "sise"
    size: int = 224
    selection: str = "fixed"
    target: str | None = None


def parse_request(payload: object) -> ExplainRequest:
    """Check the JSON body of ``POST /api/explain`` and decode its photo.

    Raises:
        SiseError: a missing or unknown field, a bad value, or an unreadable photo.
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
        rgb, photo = decode_image(data), "uploaded photo"
    else:
        if sample not in SAMPLE_IMAGES:
            raise SiseError(f"no sample photo {sample!r}: choose one of {', '.join(SAMPLE_IMAGES)}")
        rgb, photo = load_image(sample_image_path(str(sample))), str(sample)

    # a text field: blank means the default, as an empty --model does
    model = str(payload.get("model") or DEMO_MODEL).strip() or DEMO_MODEL
    method = str(payload.get("method") or "sise")
    if method not in METHODS:
        raise SiseError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    size = payload.get("size", 224)
    if isinstance(size, str) and size.strip().isdigit():
        size = int(size)
    if not isinstance(size, int) or isinstance(size, bool):
        raise SiseError(f"'size' must be a whole number of pixels, got {size!r}")
    if not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise SiseError(f"input size {size} is out of range: use {SIZE_RANGE[0]}..{SIZE_RANGE[1]}")
    selection = str(payload.get("selection") or "fixed")
    if selection not in ("fixed", "adaptive"):
        raise SiseError(f"unknown selection {selection!r}: use 'fixed' or 'adaptive'")
    target = payload.get("target")
    target = None if target is None or str(target).strip() == "" else str(target).strip()
    return ExplainRequest(rgb, photo, model, method, size, selection, target)
