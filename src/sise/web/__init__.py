"""``sise app``: a web page on this computer to explore the explanation of one photo.

The user picks a bundled photo or uploads one, chooses a model (the offline demo model by
default, or any name :func:`sise.models.loading.load_model` accepts) and a method, and sees the
top-5 prediction, the explanation map over the photo and, for SISE, each layer's visualisation
map ``V_l`` with the number of feature maps it kept and its gate: the region ``V_l > Otsu(V_l)``
that the block-wise fusion ``F ← (F + V_l) ⊙ B(V_l)`` keeps (Sattarzadeh et al., AAAI 2021,
§3.3).

Why this stack: a standard-library :class:`http.server.ThreadingHTTPServer`, one HTML page with
plain JavaScript (``sise/web/static/``), a JSON API and PNG images.

- It adds no dependency and works offline: nothing is fetched from a CDN, and the page needs no
  build step. Gradio, which ML users know, would pull a web framework and a bundled front end
  (hundreds of MB installed) into a package whose core install is being kept light, for one page.
- Explanations are slow on a CPU (SISE on the demo model takes seconds to tens of seconds), so the
  page must show that work is going on. A threaded server lets the page poll ``/api/status``
  (stage, seconds, masked images scored so far) while another thread runs the explanation.
- One lock runs one explanation at a time (:mod:`sise.web.explorer`); under ``sise app``
  (:func:`serve`) the explanations run on the main thread, the requests' threads wait for them
  (:mod:`sise.web.main_thread` says why).

The modules: :mod:`~sise.web.request` (the request body, checked), :mod:`~sise.web.explorer`
(runs the explanations, keeps models loaded), :mod:`~sise.web.pictures` (the PNGs),
:mod:`~sise.web.page` (the page and its options), :mod:`~sise.web.server` (HTTP, and
:func:`serve`), :mod:`~sise.web.guard` (headers, ``Origin``, a page that has gone, draining a
refused upload). The ``sise app`` command itself is :mod:`sise.cli.app`.

HTTP API (all errors come back as JSON ``{"error": message}`` with status 4xx, 503 "busy" with
``Retry-After``, or 500 with the exception's message for a bug; never an HTML traceback):

- ``GET /``: the page; ``GET /favicon.svg`` (and ``/favicon.ico``): its icon.
- ``GET /api/options``: methods, sample photos, input sizes and defaults.
- ``GET /api/sample/NAME``: a bundled photo (JPEG).
- ``POST /api/explain``: a JSON object with ``image`` (the file's bytes, base64) or ``sample``
  (a bundled photo's name), and optionally ``model``, ``method``, ``size`` (input pixels),
  ``selection`` (SISE: ``"fixed"`` or ``"adaptive"``) and ``target`` (class index or name;
  default the top-1). Answers the prediction, the explained class and score, the run time, the
  forward passes and the URLs of the result's PNG images (see :meth:`Explorer.explain`).
- ``GET /api/status``: ``{"busy", "stage", "seconds", "images_scored", "waiting"}``.
- ``GET /api/image/ID/NAME.png``: an image of one of the recent results.
"""

from sise.web.explorer import Explorer
from sise.web.main_thread import MainThreadCalls
from sise.web.page import options, page_html
from sise.web.pictures import LayerView, sise_layer_views
from sise.web.request import ExplainRequest, parse_request
from sise.web.server import DEFAULT_PORT, AppServer, make_server, serve

__all__ = [
    "DEFAULT_PORT",
    "AppServer",
    "ExplainRequest",
    "Explorer",
    "LayerView",
    "MainThreadCalls",
    "make_server",
    "options",
    "page_html",
    "parse_request",
    "serve",
    "sise_layer_views",
]
