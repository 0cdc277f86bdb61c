"""The page's explanations: one at a time, the two most recent models kept loaded.

One lock runs one explanation at a time: a second one would only halve the speed of both, and
the methods hook the model's layers for the duration of a call. Uploaded photos are decoded
inside that section, so only one decoded photo is in memory at a time. At most
:attr:`Explorer.max_waiting` requests wait for it; another is refused at once as :class:`Busy`
(the server answers 503 with ``Retry-After``). A request whose page has gone away is dropped
before it starts, and an explanation running for it stops at its next forward pass
(:class:`~sise.web.main_thread.Cancelled`). Loaded models (the two most recent) and their
explainers are kept between requests, so only the first request pays for loading the weights.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.methods.base import Explainer, Explanation
from sise.methods.registry import (
    DISPLAY_NAMES,
    Budget,
    device_budget,
    display_name,
    make_explainer,
)
from sise.models.loading import DEMO_MODEL, LoadedModel, load_model
from sise.runtime import Runtime
from sise.web.main_thread import Cancelled, MainThreadCalls
from sise.web.pictures import result_pictures
from sise.web.request import ExplainRequest

#: Loaded models and result images kept in memory.
MAX_MODELS = 2
MAX_RESULTS = 8
#: Requests that may wait while an explanation runs; more are refused as busy.
MAX_WAITING = 4
#: Seconds between two checks that the page is still there, during an explanation.
GONE_CHECK_SECONDS = 0.25


class Busy(SiseError):
    """Too many explanations are waiting already; ``retry_after`` seconds is a fair wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


class Explorer:
    """Runs the page's explanations: one at a time, models kept loaded between requests.

    Args:
        device: where models run (``"cpu"``, ``"cuda"``, ...).

    Set :attr:`calls` to run each explanation through a :class:`MainThreadCalls` (on the thread
    that runs it) instead of on the request's own thread, as :func:`sise.web.server.serve` does.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = str(device)
        #: How the page's explanations run: on its device, each method's own batch size.
        self.runtime = Runtime(device=self.device)
        #: The methods' budget (:func:`sise.methods.registry.budget_options`): the published
        #: settings on a CUDA GPU, the quick ones elsewhere, as ``sise explain`` chooses (on a CPU
        #: the published RISE and Extremal Perturbation take minutes).
        self.budget: Budget = device_budget(self.device)
        self.calls: MainThreadCalls | None = None
        #: Requests that may wait for the running explanation before another is refused.
        self.max_waiting = MAX_WAITING
        self.cancelled = 0
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

    def explain(
        self, request: ExplainRequest, gone: Callable[[], bool] | None = None
    ) -> dict[str, object]:
        """Explain the request's photo; waits while another explanation runs.

        ``gone()`` says whether the asker has left: then the request is dropped before it starts,
        or its explanation stops at its next forward pass, with :class:`Cancelled`.

        Returns:
            A JSON-ready dict: ``model``, ``method``, ``method_name``, ``size``, ``photo``,
            ``device``, ``top5`` (``index``, ``name``, ``probability``), ``target`` (``index``,
            ``name``, ``score``), ``seconds``, ``forward_passes``, ``images`` (URLs of the
            photo and of the map over it) and ``layers`` (SISE: per layer ``name``, ``kept``,
            ``threshold``, ``gate_share``, ``role`` and the URLs of its ``map`` and ``gate``
            pictures; ``None`` for the other methods).

        Raises:
            Busy: :attr:`max_waiting` requests are waiting already.
            SiseError: the photo cannot be decoded, the model cannot be loaded, the class is
                unknown, or the method refuses the model; the message says why.
            Cancelled: ``gone()`` said the asker has left.
        """
        with self._state_lock:
            self._check_room()
            self._waiting += 1
        try:
            self._run_lock.acquire()
        finally:
            with self._state_lock:
                self._waiting -= 1
        try:
            check = _Throttled(gone, GONE_CHECK_SECONDS)
            check.now()  # queued work for a closed page is dropped, not computed
            self._progress = _Progress("loading model", request.method, time.perf_counter())
            if self.calls is not None:
                return self.calls.call(lambda: self._explain(request, check))
            return self._explain(request, check)
        except Cancelled:
            self.cancelled += 1
            raise
        finally:
            self._progress = _Progress()
            self._run_lock.release()

    def check_room(self) -> None:
        """Raise :class:`Busy` if a request now would find :attr:`max_waiting` waiting already."""
        with self._state_lock:
            self._check_room()

    def _check_room(self) -> None:
        if self._waiting >= self.max_waiting:
            raise Busy(
                f"the page is busy: one explanation is running and {self._waiting} are "
                "waiting; try again when they are done",
                retry_after=10,
            )

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
            # each method explains its own default score (the logit for the gradient methods)
            options: dict[str, object] = {"runtime": self.runtime, "budget": self.budget}
            if method == "sise":
                options.update(selection=selection)
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

    def _explain(
        self, request: ExplainRequest, check: _Throttled | None = None
    ) -> dict[str, object]:
        check = check or _Throttled(None, 0)
        rgb = request.decoded()  # here, one at a time: see the module docstring
        entry = self._model(request.model, request.size)
        loaded = entry.loaded
        target = loaded.class_index(request.target) if request.target is not None else None
        explainer = self._explainer(entry, request.method, request.selection)
        check.now()
        inputs = loaded.preprocess(rgb)
        with torch.no_grad():
            probabilities = loaded.model(inputs)[0].float().softmax(dim=0)
        top = probabilities.topk(min(5, probabilities.numel()))

        self._progress.stage = "explaining"
        start = time.perf_counter()
        with _counting_forwards(loaded.model, self._progress, check):
            explanation = explainer(inputs, target)
        seconds = time.perf_counter() - start
        self._progress.stage = "drawing"

        result_id = f"{self._token}-{next(self._counter)}"
        images, layers = self._pictures(rgb, explanation, result_id)
        index = int(explanation.targets[0])
        return {
            "id": result_id,
            "model": loaded.name,
            "method": request.method,
            "method_name": display_name(request.method, {"selection": request.selection}),
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
        files: dict[str, bytes] = {}

        def url(name: str, picture: bytes) -> str:
            files[name] = picture
            return f"/api/image/{result_id}/{name}.png"

        images, layers = result_pictures(rgb, explanation, url)
        with self._state_lock:
            self._results[result_id] = files
            while len(self._results) > MAX_RESULTS:
                self._results.popitem(last=False)
        return images, layers


class _Throttled:
    """``gone()`` asked at most every ``seconds`` (it polls a socket), raising :class:`Cancelled`."""

    def __init__(self, gone: Callable[[], bool] | None, seconds: float) -> None:
        self.gone, self.seconds, self.last = gone, seconds, -float("inf")

    def now(self) -> None:
        if self.gone is not None and self.gone():
            raise Cancelled("the page that asked for this explanation has gone")
        self.last = time.perf_counter()

    def __call__(self) -> None:
        if time.perf_counter() - self.last >= self.seconds:
            self.now()


@contextmanager
def _counting_forwards(
    model: nn.Module, progress: _Progress, check: Callable[[], None]
) -> Iterator[None]:
    """Count the images the model sees inside the block (the page's progress) and stop if the page
    has gone, at the next forward pass (between batches); hook removed after."""

    def count(module: nn.Module, args: tuple[object, ...]) -> None:
        check()
        if args and isinstance(args[0], Tensor) and args[0].ndim > 0:
            progress.images += int(args[0].shape[0])

    handle = model.register_forward_pre_hook(count)
    try:
        yield
    finally:
        handle.remove()
