"""The page itself, and what it offers (methods, sample photos, input sizes, models).

The page is plain HTML, CSS and JavaScript in ``sise/web/static/`` (package data, read with
:mod:`importlib.resources`): no build step, nothing fetched from a CDN. ``index.html`` links
``style.css`` and ``app.js`` so that it can be opened from the folder while it is edited; the
server inlines both, so the browser gets the page in one response, and names them by their
SHA-256 in its Content-Security-Policy (:func:`inline_hashes`), which runs no other script.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import textwrap
from importlib import resources

from sise.images import SAMPLE_IMAGES
from sise.methods.registry import DISPLAY_NAMES
from sise.models.loading import DEMO_MODEL

#: Input sizes the page offers (square, pixels); the API takes any size in
#: :data:`sise.web.request.SIZE_RANGE`.
SIZES = (128, 160, 224, 256, 320)

_STYLE_LINK = '<link rel="stylesheet" href="style.css">'
_SCRIPT_LINK = '<script src="app.js"></script>'


def _static(name: str) -> str:
    return (resources.files("sise.web") / "static" / name).read_text(encoding="utf-8")


def _inline_style() -> str:
    return "\n" + textwrap.indent(_static("style.css"), "  ")


def _inline_script() -> str:
    return "\n" + _static("app.js")


@functools.cache
def page_html() -> bytes:
    """``index.html`` with ``style.css`` and ``app.js`` inlined, as UTF-8 bytes."""
    html = _static("index.html")
    for link in (_STYLE_LINK, _SCRIPT_LINK):
        if html.count(link) != 1:
            raise RuntimeError(f"sise/web/static/index.html must hold {link} exactly once")
    style = "<style>" + _inline_style() + "</style>"
    script = "<script>" + _inline_script() + "</script>"
    return html.replace(_STYLE_LINK, style).replace(_SCRIPT_LINK, script).encode("utf-8")


@functools.cache
def inline_hashes() -> tuple[str, str]:
    """The Content-Security-Policy sources of the page's inline script and style:
    ``sha256-`` and the base64 SHA-256 of each element's text, as CSP Level 2 defines them."""

    def source(text: str) -> str:
        return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    return source(_inline_script()), source(_inline_style())


@functools.cache
def favicon_svg() -> bytes:
    """The page's icon (``static/favicon.svg``)."""
    return _static("favicon.svg").encode("utf-8")


def options() -> dict[str, object]:
    """What the page offers: methods in the paper's order, sample photos, sizes, defaults."""
    return {
        "methods": [{"key": key, "name": name} for key, name in DISPLAY_NAMES.items()],
        "samples": list(SAMPLE_IMAGES),
        "sizes": list(SIZES),
        "models": [DEMO_MODEL, "resnet50", "vgg16", "timm:resnet18"],
        "defaults": {"model": DEMO_MODEL, "method": "sise", "size": 224, "sample": "chelsea"},
    }
