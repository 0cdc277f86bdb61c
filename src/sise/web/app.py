"""``sise app``: a web page on this computer to explore the explanation of one photo.

The user picks a bundled photo or uploads one, chooses a model (the offline demo model by
default, or any name :func:`sise.models.loading.load_model` accepts) and a method, and sees the top-5
prediction, the explanation map over the photo and, for SISE, each layer's visualisation map
``V_l`` with the number of feature maps it kept and its gate: the region ``V_l > Otsu(V_l)`` that
the block-wise fusion ``F ← (F + V_l) ⊙ B(V_l)`` keeps (Sattarzadeh et al., AAAI 2021, §3.3).

Why this stack: a standard-library :class:`http.server.ThreadingHTTPServer`, one HTML page with
plain JavaScript (in :data:`PAGE` below), a JSON API and PNG images.

- It adds no dependency and works offline: nothing is fetched from a CDN, and the page needs no
  build step. Gradio, which ML users know, would pull a web framework and a bundled front end
  (hundreds of MB installed) into a package whose core install is being kept light, for one page.
- Explanations are slow on a CPU (SISE on the demo model takes seconds to tens of seconds), so the
  page must show that work is going on. A threaded server lets the page poll ``/api/status``
  (stage, seconds, masked images scored so far) while another thread runs the explanation.
- One lock runs one explanation at a time: a second one would only halve the speed of both, and
  the methods hook the model's layers for the duration of a call. Under ``sise app``
  (:func:`serve`) the explanations run on the main thread, the requests' threads wait for them:
  glibc gives other threads heaps that map large blocks afresh every time, so there an
  explanation pays the page faults :mod:`sise.runtime.allocator` saves (SISE on the demo model at
  224 px, the coffee photo, as the page times it: 2.7-2.9 s in a request's thread against
  1.9-2.1 s on the main one). Loaded models (the two most
  recent) and their explainers are kept between requests, so only the first request pays for
  loading the weights.

The server listens on 127.0.0.1 only: the page can load any model name and run long computations,
which is for the person at this computer, not for the network. For the same reason it answers
only requests addressed to ``127.0.0.1`` or ``localhost`` (not another site renamed to this
address) and takes only ``application/json`` posts (which a browser lets another site's script
send only after asking, and this server never says yes).

HTTP API (all errors come back as JSON ``{"error": message}`` with status 4xx, or 500 with the
exception's message for a bug; never an HTML traceback):

- ``GET /``: the page.
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

from __future__ import annotations

import argparse
import base64
import binascii
import io
import itertools
import json
import queue
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from sise.core.postprocess import otsu_threshold
from sise.errors import SiseError
from sise.images import SAMPLE_IMAGES, load_image, sample_image_path, to_rgb_array
from sise.methods.base import Explainer, Explanation
from sise.methods.registry import DISPLAY_NAMES, METHODS, make_explainer
from sise.methods.sise import SISEExplanation
from sise.models.loading import DEMO_MODEL, LoadedModel, load_model

T = TypeVar("T")

DEFAULT_PORT = 8765
#: Input sizes the page offers (square, pixels); any size in ``SIZE_RANGE`` is accepted by the API.
SIZES = (128, 160, 224, 256, 320)
SIZE_RANGE = (32, 1024)
#: Largest request body (an uploaded photo, base64-encoded) the server reads.
MAX_BODY_BYTES = 40 * 1024 * 1024
#: Longest side of the photo as the page shows it, and of the smaller per-layer pictures.
DISPLAY_SIDE = 480
LAYER_SIDE = 256
#: Loaded models and result images kept in memory.
MAX_MODELS = 2
MAX_RESULTS = 8

_REQUEST_KEYS = {"image", "sample", "model", "method", "size", "selection", "target"}


@dataclass
class ExplainRequest:
    """What the page asks for; :func:`parse_request` builds it from the JSON body."""

    rgb: np.ndarray
    photo: str
    model: str = DEMO_MODEL
    method: str = "sise"
    size: int = 224
    selection: str = "fixed"
    target: str | None = None


def decode_image(data: bytes) -> np.ndarray:
    """An uploaded image file's bytes as an (H, W, 3) uint8 RGB array.

    Raises:
        SiseError: the bytes are empty, not an image, corrupt, or too large to decode safely.
    """
    if not data:
        raise SiseError("the uploaded file is empty: choose a photo (JPEG, PNG, ...)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return to_rgb_array(image)
    except UnidentifiedImageError as error:
        raise SiseError(
            "the uploaded file is not an image PIL can read (JPEG, PNG, BMP, TIFF, WebP ...)"
        ) from error
    except Image.DecompressionBombError as error:
        raise SiseError(f"the uploaded image is too large to decode safely: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise SiseError(f"the uploaded image is corrupt or truncated: {error}") from error


def parse_request(payload: object) -> ExplainRequest:
    """Check the JSON body of ``POST /api/explain`` and decode its photo.

    Raises:
        SiseError: a missing or unknown field, a bad value, or an unreadable photo.
    """
    if not isinstance(payload, dict):
        raise SiseError("the request body must be a JSON object")
    unknown = sorted(set(payload) - _REQUEST_KEYS)
    if unknown:
        raise SiseError(f"unknown request fields {unknown}: use {sorted(_REQUEST_KEYS)}")
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


@dataclass(frozen=True)
class LayerView:
    """One SISE layer as the page shows it.

    Attributes:
        name: the layer's module name.
        kept: feature maps kept by the selection (the attribution masks scored for this layer).
        saliency: (H, W) visualisation map ``V_l`` in [0, 1], at input resolution, on the CPU.
        threshold: Otsu's threshold ``t_l`` of ``V_l``.
        gate: (H, W) bool, ``V_l > t_l``: the region the binary gate keeps.
        role: ``"start"``: the first layer with kept maps, which starts the fusion ungated;
            ``"gate"``: a deeper layer, fused as ``F ← (F + V_l) ⊙ B(V_l)``; ``"skipped"``: no
            kept map, so it takes no part in the fusion.
    """

    name: str
    kept: int
    saliency: Tensor
    threshold: float
    gate: Tensor
    role: str


def sise_layer_views(explanation: Explanation, index: int = 0) -> list[LayerView] | None:
    """SISE's per-layer results for sample ``index``, or ``None`` for a method without layers.

    This is the one place that reads SISE's per-layer results
    (:class:`sise.methods.sise.SISEExplanation`). The gate is recomputed with the
    same Otsu threshold :func:`sise.methods.sise.fuse` uses (binary gate, the paper's).
    """
    if not isinstance(explanation, SISEExplanation):
        return None
    layer_maps = explanation.layer_maps[index].detach().float().cpu()
    kept = explanation.kept_maps[index].tolist()
    names = [str(name) for name in explanation.layer_names]
    thresholds = otsu_threshold(layer_maps).tolist()
    views, started = [], False
    for name, saliency, count, threshold in zip(names, layer_maps, kept, thresholds, strict=True):
        role = "skipped" if count == 0 else ("gate" if started else "start")
        started |= count > 0
        views.append(
            LayerView(name, int(count), saliency, float(threshold), saliency > threshold, role)
        )
    return views


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """The photo shrunk (never enlarged) so that its longer side is at most ``side`` pixels."""
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _gate_picture(rgb: np.ndarray, gate: Tensor) -> np.ndarray:
    """The photo with what the gate cuts away darkened, so the kept region stands out."""
    from sise.viz import resize_map

    inside = resize_map(gate.float(), rgb.shape[0], rgb.shape[1])[..., None]
    photo = rgb.astype(np.float32)
    shaded = photo * inside + (0.25 * photo + 30) * (1 - inside)
    return shaded.clip(0, 255).astype(np.uint8)


@dataclass
class _Progress:
    stage: str = "idle"
    method: str = ""
    started: float = 0.0
    images: int = 0


@dataclass
class _ModelEntry:
    loaded: LoadedModel
    explainers: dict[tuple[str, str], Explainer] = field(default_factory=dict)


class MainThreadCalls:
    """Runs functions that other threads hand over on the thread that runs :meth:`run`."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue()

    def call(self, function: Callable[[], T]) -> T:
        """``function()``, run on the thread in :meth:`run`; waits for it, raises what it raised."""
        done: Future = Future()
        self._jobs.put((function, done))
        return done.result()

    def stop(self) -> None:
        """Make :meth:`run` return once the calls handed over before are done."""
        self._jobs.put(None)

    def run(self) -> None:
        """Run the handed-over calls until :meth:`stop` (or Ctrl+C, which propagates)."""
        while True:
            try:
                job = self._jobs.get(timeout=0.5)  # a timeout, so that Ctrl+C gets through
            except queue.Empty:
                continue
            if job is None:
                return
            function, done = job
            try:
                done.set_result(function())
            except Exception as error:
                done.set_exception(error)
            except BaseException:
                done.set_exception(SiseError("the app was stopped during this explanation"))
                raise


class Explorer:
    """Runs the page's explanations: one at a time, models kept loaded between requests.

    Args:
        device: where models run (``"cpu"``, ``"cuda"``, ...).

    Set :attr:`calls` to run each explanation through a :class:`MainThreadCalls` (on the thread
    that runs it) instead of on the request's own thread, as :func:`serve` does.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = str(device)
        self.calls: MainThreadCalls | None = None
        self._run_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._waiting = 0
        self._progress = _Progress()
        self._models: OrderedDict[tuple[str, int], _ModelEntry] = OrderedDict()
        self._results: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        # Result ids differ between server runs, so a browser never shows a cached old image.
        self._token = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)
        self.models_loaded = 0

    def status(self) -> dict[str, object]:
        """What is going on now, for the page's wait indicator."""
        progress = self._progress
        busy = progress.stage != "idle"
        return {
            "busy": busy,
            "stage": progress.stage,
            "method": progress.method,
            "seconds": round(time.perf_counter() - progress.started, 1) if busy else 0.0,
            "images_scored": progress.images,
            "waiting": self._waiting,
        }

    def image(self, result_id: str, name: str) -> bytes | None:
        """A PNG of a recent result, or ``None`` if there is none by that name."""
        with self._state_lock:
            return self._results.get(result_id, {}).get(name)

    def explain(self, request: ExplainRequest) -> dict[str, object]:
        """Explain the request's photo; waits while another explanation runs.

        Returns:
            A JSON-ready dict: ``model``, ``method``, ``method_name``, ``size``, ``photo``,
            ``device``, ``top5`` (``index``, ``name``, ``probability``), ``target`` (``index``,
            ``name``, ``score``), ``seconds``, ``forward_passes``, ``images`` (URLs of the
            photo and of the map over it) and ``layers`` (SISE: per layer ``name``, ``kept``,
            ``threshold``, ``gate_share``, ``role`` and the URLs of its ``map`` and ``gate``
            pictures; ``None`` for the other methods).

        Raises:
            SiseError: the model cannot be loaded, the class is unknown, or the method refuses
                the model; the message says why.
        """
        with self._state_lock:
            self._waiting += 1
        try:
            self._run_lock.acquire()
        finally:
            with self._state_lock:
                self._waiting -= 1
        try:
            self._progress = _Progress("loading model", request.method, time.perf_counter())
            if self.calls is not None:
                return self.calls.call(lambda: self._explain(request))
            return self._explain(request)
        finally:
            self._progress = _Progress()
            self._run_lock.release()

    def _model(self, name: str, size: int) -> _ModelEntry:
        key = (name, size)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        try:
            loaded = load_model(name, device=self.device, input_size=(size, size))
        except SiseError:
            raise
        except Exception as error:  # downloads, timm and torch raise many kinds
            raise SiseError(
                f"could not load model {name!r}: {type(error).__name__}: {error}. torchvision and "
                f"timm models download their pretrained weights, which needs internet; "
                f"{DEMO_MODEL!r} (the demo model) works offline"
            ) from error
        self.models_loaded += 1
        self._models[key] = _ModelEntry(loaded)
        while len(self._models) > MAX_MODELS:
            self._models.popitem(last=False)
        return self._models[key]

    def _explainer(self, entry: _ModelEntry, method: str, selection: str) -> Explainer:
        key = (method, selection if method == "sise" else "")
        if key not in entry.explainers:
            options: dict[str, object] = {"score": "softmax"}
            if method == "sise":
                options.update(selection=selection, batch_size="auto")
            try:
                entry.explainers[key] = make_explainer(method, entry.loaded.model, **options)
            except SiseError:
                raise
            except Exception as error:
                raise SiseError(
                    f"{DISPLAY_NAMES.get(method, method)} cannot explain {entry.loaded.name}: "
                    f"{type(error).__name__}: {error}"
                ) from error
        return entry.explainers[key]

    def _explain(self, request: ExplainRequest) -> dict[str, object]:
        entry = self._model(request.model, request.size)
        loaded = entry.loaded
        target = loaded.class_index(request.target) if request.target is not None else None
        explainer = self._explainer(entry, request.method, request.selection)
        inputs = loaded.preprocess(request.rgb)
        with torch.no_grad():
            probabilities = loaded.model(inputs)[0].float().softmax(dim=0)
        top = probabilities.topk(min(5, probabilities.numel()))

        self._progress.stage = "explaining"
        start = time.perf_counter()
        with _counting_forwards(loaded.model, self._progress):
            explanation = explainer(inputs, target)
        seconds = time.perf_counter() - start
        self._progress.stage = "drawing"

        result_id = f"{self._token}-{next(self._counter)}"
        images, layers = self._pictures(request.rgb, explanation, result_id)
        index = int(explanation.targets[0])
        return {
            "id": result_id,
            "model": loaded.name,
            "method": request.method,
            "method_name": DISPLAY_NAMES.get(request.method, request.method),
            "size": request.size,
            "photo": request.photo,
            "device": str(loaded.device),
            "top5": [
                {"index": i, "name": loaded.class_names[i], "probability": round(p, 4)}
                for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ],
            "target": {
                "index": index,
                "name": loaded.class_names[index],
                "score": round(float(explanation.scores[0]), 4),
            },
            "seconds": round(seconds, 2),
            "forward_passes": int(explanation.forward_passes[0]),
            "images": images,
            "layers": layers,
        }

    def _pictures(
        self, rgb: np.ndarray, explanation: Explanation, result_id: str
    ) -> tuple[dict[str, str], list[dict[str, object]] | None]:
        from sise.viz import overlay

        files: dict[str, bytes] = {}

        def url(name: str, picture: np.ndarray) -> str:
            files[name] = _png(picture)
            return f"/api/image/{result_id}/{name}.png"

        photo = _fit(rgb, DISPLAY_SIDE)
        images = {
            "photo": url("photo", photo),
            "overlay": url("overlay", overlay(photo, explanation.maps[0].detach().float().cpu())),
        }
        views = sise_layer_views(explanation)
        layers = None
        if views is not None:
            small = _fit(rgb, LAYER_SIDE)
            layers = [
                {
                    "name": view.name,
                    "kept": view.kept,
                    "threshold": round(view.threshold, 4),
                    "gate_share": round(float(view.gate.float().mean()), 4),
                    "role": view.role,
                    "map": url(f"layer{i}", overlay(small, view.saliency)),
                    "gate": url(f"gate{i}", _gate_picture(small, view.gate)),
                }
                for i, view in enumerate(views)
            ]
        with self._state_lock:
            self._results[result_id] = files
            while len(self._results) > MAX_RESULTS:
                self._results.popitem(last=False)
        return images, layers


@contextmanager
def _counting_forwards(model: nn.Module, progress: _Progress) -> Iterator[None]:
    """Count the images the model sees inside the block (the page's progress), hook removed after."""

    def count(module: nn.Module, args: tuple[object, ...]) -> None:
        if args and isinstance(args[0], Tensor) and args[0].ndim > 0:
            progress.images += int(args[0].shape[0])

    handle = model.register_forward_pre_hook(count)
    try:
        yield
    finally:
        handle.remove()


def options() -> dict[str, object]:
    """What the page offers: methods in the paper's order, sample photos, sizes, defaults."""
    return {
        "methods": [{"key": key, "name": name} for key, name in DISPLAY_NAMES.items()],
        "samples": list(SAMPLE_IMAGES),
        "sizes": list(SIZES),
        "models": [DEMO_MODEL, "resnet50", "vgg16", "timm:resnet18"],
        "defaults": {"model": DEMO_MODEL, "method": "sise", "size": 224, "sample": "chelsea"},
    }


class AppServer(ThreadingHTTPServer):
    """The page's HTTP server; ``explorer`` runs the explanations."""

    daemon_threads = True

    def __init__(self, port: int, explorer: Explorer, quiet: bool = False) -> None:
        self.explorer = explorer
        self.quiet = quiet
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: AppServer
    server_version = "sise-app"

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _from_this_computer(self) -> bool:
        """Whether the request names this server as the page does.

        Another web site open in the same browser can send requests to 127.0.0.1 too; one that
        renames itself to this address (DNS rebinding) shows in the ``Host`` header.
        """
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost")

    def _answer(self, route: Callable[[], None]) -> None:
        """Run a route; turn every failure into a JSON error the page can show."""
        try:
            if not self._from_this_computer():
                self._json({"error": "this page answers only at 127.0.0.1"}, 403)
                return
            route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away; nobody is left to answer
        except SiseError as error:
            self._json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            self._json(
                {"error": f"internal error ({type(error).__name__}: {error}); see the server log"},
                HTTPStatus.INTERNAL_SERVER_ERROR,
            )

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/api/options":
            self._json(options())
        elif path == "/api/status":
            self._json(self.server.explorer.status())
        elif path.startswith("/api/sample/"):
            name = path.removeprefix("/api/sample/").removesuffix(".jpg")
            if name not in SAMPLE_IMAGES:
                self._json({"error": f"no sample photo {name!r}"}, HTTPStatus.NOT_FOUND)
                return
            self._send(sample_image_path(name).read_bytes(), "image/jpeg")
        elif path.startswith("/api/image/") and path.endswith(".png"):
            result_id, _, name = (
                path.removeprefix("/api/image/").removesuffix(".png").partition("/")
            )
            data = self.server.explorer.image(result_id, name)
            if data is None:
                self._json(
                    {"error": "no such image: results older than the last few are dropped"},
                    HTTPStatus.NOT_FOUND,
                )
                return
            self._send(data, "image/png")
        else:
            self._json({"error": f"no page {path!r}"}, HTTPStatus.NOT_FOUND)

    def _post(self) -> None:
        if self.path.split("?", 1)[0] != "/api/explain":
            self._json({"error": f"no API {self.path!r}: POST to /api/explain"}, 404)
            return
        # A JSON content type makes a browser ask before another web site's script may post.
        if self.headers.get_content_type() != "application/json":
            self._json({"error": "send the request as application/json"}, 415)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._json({"error": "send the request with a Content-Length"}, 411)
            return
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            self._json(
                {"error": f"the photo is too large: at most {MAX_BODY_BYTES // 2**20} MiB"}, 413
            )
            return
        body = self.rfile.read(int(length))
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise SiseError(f"the request body is not valid JSON: {error}") from error
        request = parse_request(payload)
        self._json(self.server.explorer.explain(request))

    def _json(self, payload: object, status: int = HTTPStatus.OK) -> None:
        self._send(json.dumps(payload).encode(), "application/json", status)

    def _send(self, body: bytes, content_type: str, status: int = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def make_server(port: int = DEFAULT_PORT, device: str = "cpu", quiet: bool = False) -> AppServer:
    """The page's server on 127.0.0.1:``port`` (0: a free port), not yet serving.

    Raises:
        SiseError: the port is taken or not allowed.
    """
    try:
        return AppServer(port, Explorer(device), quiet=quiet)
    except OSError as error:
        raise SiseError(
            f"cannot listen on 127.0.0.1:{port} ({error.strerror or error}): pick another port "
            "with --port (0 picks a free one)"
        ) from error


def serve(port: int = DEFAULT_PORT, device: str = "cpu", open_browser: bool = False) -> None:
    """Serve the page until Ctrl+C; prints its address."""
    server = make_server(port, device)
    # the requests' threads hand their explanations to this (the main) thread
    calls = MainThreadCalls()
    server.explorer.calls = calls
    threading.Thread(target=server.serve_forever, name="sise-app-server", daemon=True).start()
    print(f"sise app: open {server.url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        calls.run()
    except KeyboardInterrupt:
        print("sise app: stopped", flush=True)
    finally:
        server.shutdown()
        server.server_close()


def command_app(args: argparse.Namespace) -> int:
    """``sise app``: serve the page."""
    serve(args.port, args.device, args.open)
    return 0


def add_app_command(commands: argparse._SubParsersAction) -> None:
    """Add ``sise app`` to the command line's sub-commands."""
    app = commands.add_parser(
        "app",
        help="a page on this computer to explore one photo's explanation",
        description="Serve a page on http://127.0.0.1:PORT/ to pick or upload a photo, choose a "
        "model and a method, and see the prediction, the map over the photo and SISE's "
        "per-layer maps and gates. Works offline with the demo model.",
    )
    app.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: free)"
    )
    app.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    app.add_argument("--open", action="store_true", help="open the page in the default browser")
    app.set_defaults(handler=command_app)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sise: explore one photo</title>
<style>
  :root { --ink: #1d2733; --muted: #5b6b7c; --line: #d8dee6; --accent: #1f6feb; --bg: #f5f7fa; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
         color: var(--ink); background: var(--bg); }
  header { padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 19px; }
  header p { margin: 2px 0 0; color: var(--muted); font-size: 13px; }
  main { display: grid; grid-template-columns: 300px 1fr; gap: 20px; padding: 20px 24px; }
  aside, section.card { background: #fff; border: 1px solid var(--line); border-radius: 8px;
                        padding: 16px; }
  aside { align-self: start; }
  label { display: block; font-weight: 600; font-size: 13px; margin: 14px 0 4px; }
  label:first-child { margin-top: 0; }
  select, input[type=text] { width: 100%; padding: 6px 8px; font: inherit;
                             border: 1px solid var(--line); border-radius: 6px; }
  .hint { color: var(--muted); font-size: 12px; margin: 3px 0 0; }
  .photos { display: flex; gap: 8px; flex-wrap: wrap; }
  .photos button { padding: 0; border: 2px solid transparent; border-radius: 6px;
                   background: none; cursor: pointer; }
  .photos button.chosen { border-color: var(--accent); }
  .photos img { display: block; height: 58px; border-radius: 4px; }
  #explain { margin-top: 18px; width: 100%; padding: 9px; font: inherit; font-weight: 600;
             color: #fff; background: var(--accent); border: 0; border-radius: 6px;
             cursor: pointer; }
  #explain:disabled { background: #8fb3ee; cursor: wait; }
  #status { min-height: 22px; margin-bottom: 10px; color: var(--muted); }
  #status.busy::before { content: ""; display: inline-block; width: 12px; height: 12px;
    margin-right: 8px; border: 2px solid var(--accent); border-right-color: transparent;
    border-radius: 50%; animation: spin .8s linear infinite; vertical-align: -1px; }
  @keyframes spin { to { transform: rotate(360deg); } }
  #error { display: none; padding: 10px 12px; margin-bottom: 12px; color: #8b1a1a;
           background: #fdecec; border: 1px solid #f2b8b8; border-radius: 6px; }
  #result { display: none; }
  .top { display: grid; grid-template-columns: minmax(0, 1fr) 300px; gap: 20px; }
  .pair { display: flex; gap: 10px; }
  .pair figure { flex: 1 1 0; min-width: 0; }
  figure { margin: 0; }
  figure img { display: block; width: 100%; height: auto; border-radius: 4px; }
  figcaption { font-size: 12px; color: var(--muted); margin-top: 3px; }
  h2 { font-size: 16px; margin: 0 0 10px; }
  h3 { font-size: 15px; margin: 22px 0 4px; }
  #prediction ol { margin: 0; padding: 0; list-style: none; }
  #prediction li { position: relative; padding: 4px 6px; margin-bottom: 3px; cursor: pointer;
                   border-radius: 4px; overflow: hidden; }
  #prediction li:hover { outline: 1px solid var(--line); }
  #prediction li .bar { position: absolute; inset: 0 auto 0 0; background: #dbe8fd;
                        z-index: 0; }
  #prediction li span { position: relative; z-index: 1; }
  #prediction li .p { float: right; color: var(--muted); }
  #prediction li.explained { font-weight: 600; }
  #summary { margin: 10px 0 0; font-size: 13px; color: var(--muted); }
  #layers { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr));
            gap: 12px; margin-top: 8px; }
  .layer { border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
  .layer h4 { margin: 0 0 6px; font-size: 14px; }
  .layer p { margin: 6px 0 0; font-size: 12px; color: var(--muted); }
  .layer.skipped { opacity: .6; }
  @media (max-width: 900px) { main, .top { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>sise: explore one photo</h1>
  <p>Explanation maps of a CNN's prediction, computed on this computer. SISE shows what each
     network block sees and how its gate cuts the fused map.</p>
</header>
<main>
<aside>
  <label>Photo</label>
  <div class="photos" id="samples"></div>
  <input type="file" id="photo-file" accept="image/*" style="margin-top:8px; max-width:100%">
  <p class="hint" id="photo-name"></p>

  <label for="model">Model</label>
  <input type="text" id="model" list="model-names" spellcheck="false">
  <datalist id="model-names"></datalist>
  <p class="hint">The demo model works offline; torchvision names (resnet50, vgg16, ...) and
     timm:NAME download their weights.</p>

  <label for="method">Method</label>
  <select id="method"></select>

  <div id="sise-options">
    <label for="selection">SISE feature-map selection</label>
    <select id="selection">
      <option value="fixed">positive gradient (paper)</option>
      <option value="adaptive">adaptive (Ada-SISE, faster)</option>
    </select>
  </div>

  <label for="size">Input size</label>
  <select id="size"></select>

  <label for="target">Class to explain</label>
  <input type="text" id="target" placeholder="top-1 (or an index or a name)">
  <p class="hint">Click a prediction to explain that class.</p>

  <button id="explain">Explain</button>
  <p class="hint">On a CPU, SISE, Score-CAM and RISE take seconds to a minute; Extremal
     Perturbation takes minutes.</p>
</aside>
<div>
  <div id="status">Pick a photo, a model and a method, then press Explain.</div>
  <div id="error" role="alert"></div>
  <div id="result">
    <section class="card top">
      <div>
        <h2 id="map-title"></h2>
        <div class="pair">
          <figure><img id="photo" alt="photo"><figcaption>photo</figcaption>
          </figure>
          <figure><img id="overlay" alt="explanation map">
            <figcaption id="overlay-caption"></figcaption></figure>
        </div>
        <p id="summary"></p>
      </div>
      <div id="prediction"><h2>Prediction (top 5)</h2><ol></ol></div>
    </section>
    <section class="card" id="layer-section" style="margin-top:16px">
      <h2>SISE layers, shallow to deep</h2>
      <p class="hint">Each block's visualisation map, the feature maps it kept, and its gate:
        the region above the map's Otsu threshold. Fusion runs shallow to deep:
        F &larr; (F + V) &times; gate, so a deeper block keeps only what it also sees.</p>
      <div id="layers"></div>
    </section>
  </div>
</div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let photo = null;      // {sample: name} or {image: base64, name: file name}
let poller = null;

function element(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function choose(choice, button) {
  photo = choice;
  for (const b of document.querySelectorAll(".photos button")) b.classList.remove("chosen");
  if (button) button.classList.add("chosen");
  $("photo-name").textContent = choice.sample ? "bundled photo: " + choice.sample
                                               : "uploaded: " + choice.name;
}

async function init() {
  const options = await (await fetch("/api/options")).json();
  for (const m of options.methods) $("method").add(new Option(m.name, m.key));
  $("method").value = options.defaults.method;
  for (const s of options.sizes) $("size").add(new Option(s + " px", s));
  $("size").value = options.defaults.size;
  $("model").value = options.defaults.model;
  for (const name of options.models) $("model-names").appendChild(element("option", {value: name}));
  for (const name of options.samples) {
    const button = element("button", {type: "button", title: name, "data-sample": name});
    button.appendChild(element("img", {src: "/api/sample/" + name + ".jpg", alt: name}));
    button.addEventListener("click", () => { $("photo-file").value = ""; choose({sample: name}, button); });
    $("samples").appendChild(button);
    if (name === options.defaults.sample) choose({sample: name}, button);
  }
  $("method").addEventListener("change", showOptions);
  showOptions();
}

function showOptions() {
  $("sise-options").style.display = $("method").value === "sise" ? "" : "none";
}

$("photo-file").addEventListener("change", () => {
  const file = $("photo-file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => choose({image: String(reader.result).split(",", 2)[1] || "", name: file.name});
  reader.onerror = () => showError("could not read " + file.name + " in the browser");
  reader.readAsDataURL(file);
});

function showError(message) {
  $("error").textContent = message;
  $("error").style.display = "block";
  $("result").dataset.state = "error";
}

async function poll() {
  try {
    const s = await (await fetch("/api/status")).json();
    if (!s.busy) return;
    let text = s.stage === "loading model" ? "Loading the model" :
               s.stage === "drawing" ? "Drawing the maps" : "Explaining";
    text += " … " + s.seconds.toFixed(0) + " s";
    if (s.images_scored) text += ", " + s.images_scored.toLocaleString() + " images through the model";
    $("status").textContent = text;
  } catch (e) { /* the next poll will tell */ }
}

async function explain() {
  if (!photo) { showError("Pick a bundled photo or upload one first."); return; }
  const body = {model: $("model").value, method: $("method").value,
                size: Number($("size").value), selection: $("selection").value,
                target: $("target").value || null};
  if (photo.sample) body.sample = photo.sample; else body.image = photo.image;
  $("error").style.display = "none";
  $("explain").disabled = true;
  $("result").dataset.state = "running";
  $("status").className = "busy";
  $("status").textContent = "Starting …";
  const started = performance.now();
  poller = setInterval(poll, 500);
  try {
    const response = await fetch("/api/explain", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    let answer;
    try { answer = await response.json(); }
    catch (e) { answer = {error: "the server answered " + response.status + " without a message"}; }
    if (!response.ok || answer.error) {
      showError(answer.error || ("the server answered " + response.status));
      $("status").textContent = "Failed after " + ((performance.now() - started) / 1000).toFixed(1) + " s.";
    } else {
      render(answer);
      $("status").textContent = answer.method_name + " on " + answer.model + " (" + answer.device +
        "): " + answer.seconds.toFixed(1) + " s, " + answer.forward_passes + " forward passes.";
    }
  } catch (e) {
    showError("no answer from the server: is `sise app` still running? (" + e + ")");
    $("status").textContent = "";
  } finally {
    clearInterval(poller);
    $("status").className = "";
    $("explain").disabled = false;
  }
}

function render(r) {
  $("map-title").textContent = r.method_name + ": " + r.target.name;
  $("photo").src = r.images.photo;
  $("overlay").src = r.images.overlay;
  $("overlay-caption").textContent = r.method_name + " map (red: most important)";
  $("summary").textContent = "Explained class " + r.target.index + " \u201c" + r.target.name +
    "\u201d, softmax score " + r.target.score.toFixed(3) + "; " + r.photo + ", " + r.size +
    " px input.";
  const list = document.querySelector("#prediction ol");
  list.replaceChildren();
  for (const p of r.top5) {
    const item = element("li", {title: "explain class " + p.index, "data-index": p.index});
    if (p.index === r.target.index) item.className = "explained";
    const bar = element("div", {class: "bar"});
    bar.style.width = (100 * p.probability).toFixed(1) + "%";
    item.append(bar, element("span", {}, p.name), element("span", {class: "p"},
                (100 * p.probability).toFixed(1) + " %"));
    item.addEventListener("click", () => { $("target").value = String(p.index); explain(); });
    list.appendChild(item);
  }
  const layers = $("layers");
  layers.replaceChildren();
  $("layer-section").style.display = r.layers ? "" : "none";
  (r.layers || []).forEach((layer, i) => {
    const card = element("div", {class: "layer " + layer.role});
    card.appendChild(element("h4", {}, (i + 1) + ". " + layer.name));
    const pair = element("div", {class: "pair"});
    for (const [src, caption] of [[layer.map, "layer map"], [layer.gate, "gate"]]) {
      const figure = element("figure");
      figure.append(element("img", {src: src, alt: caption + " of " + layer.name}),
                    element("figcaption", {}, caption));
      pair.appendChild(figure);
    }
    card.appendChild(pair);
    const kept = layer.kept + (layer.kept === 1 ? " feature map kept" : " feature maps kept");
    const gate = layer.role === "skipped" ? "no map kept: not part of the fusion" :
      "gate keeps " + (100 * layer.gate_share).toFixed(0) + " % (Otsu t = " +
      layer.threshold.toFixed(2) + ")" + (layer.role === "start" ? "; starts the fusion, ungated" : "");
    card.appendChild(element("p", {class: "kept"}, kept + " \u00b7 " + gate));
    layers.appendChild(card);
  });
  $("result").style.display = "block";
  $("result").dataset.state = "done";
}

$("explain").addEventListener("click", explain);
init().catch((e) => showError("could not load the page's options: " + e));
</script>
</body>
</html>
"""
