"""Methods by name, for the command line and the benchmark."""

from __future__ import annotations

from typing import Any

from torch import nn

from sise.errors import SiseError
from sise.methods.base import Explainer
from sise.methods.extremal_perturbation import ExtremalPerturbation
from sise.methods.fullgrad import FullGrad
from sise.methods.grad_cam import GradCAM
from sise.methods.grad_cam_plus_plus import GradCAMPlusPlus
from sise.methods.integrated_gradients import IntegratedGradients
from sise.methods.rise import RISE
from sise.methods.score_cam import ScoreCAM
from sise.methods.sise import SISE
from sise.runtime import FIELDS as RUNTIME_FIELDS
from sise.runtime import Runtime

MethodFactory = type[Explainer]

METHODS: dict[str, MethodFactory] = {
    "sise": SISE,
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "scorecam": ScoreCAM,
    "rise": RISE,
    "extremal": ExtremalPerturbation,
    "ig": IntegratedGradients,
    "fullgrad": FullGrad,
}

#: Display names, in the paper's column order.
DISPLAY_NAMES: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "extremal": "Extremal Perturbation",
    "rise": "RISE",
    "scorecam": "Score-CAM",
    "ig": "Integrated Gradients",
    "fullgrad": "FullGrad",
    "sise": "SISE",
}


def _normalise(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "").replace("+", "p")


#: Every spelling a method is known by, normalised: its key and its display name.
_ALIASES: dict[str, str] = {
    **{_normalise(key): key for key in METHODS},
    **{_normalise(display): key for key, display in DISPLAY_NAMES.items()},
}


def canonical_name(name: str) -> str:
    """The registry key of a method, however it is spelt: ``"Grad-CAM++"``, ``"grad_cam_pp"``
    and ``"gradcampp"`` all give ``"gradcampp"``; ``"Integrated Gradients"`` gives ``"ig"``.

    Raises:
        SiseError: no method has that name.
    """
    key = _ALIASES.get(_normalise(name)) if isinstance(name, str) else None
    if key is None:
        raise SiseError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return key


def make_explainer(name: str, model: nn.Module, **options: Any) -> Explainer:
    """Build the method called ``name`` (any spelling :func:`canonical_name` takes) for
    ``model``.

    ``options`` are its constructor's options (``runtime`` among them); those named like a :class:`~sise.runtime.Runtime`
    setting (``batch_size=64``, ``precision="fp16"``: how ``--option sise.batch_size=64``
    arrives) change that setting of ``runtime`` for this method only.

    Raises:
        SiseError: a runtime setting the method does not use (``gradcam`` takes no
            ``batch_size``), or a bad value.
    """
    factory = METHODS[canonical_name(name)]
    runtime: Runtime | None = options.pop("runtime", None)
    speed = {key: options.pop(key) for key in list(options) if key in RUNTIME_FIELDS}
    unused = sorted(set(speed) - factory.runtime_settings)
    if unused:
        raise SiseError(
            f"{DISPLAY_NAMES[canonical_name(name)]} does not use the runtime setting(s) "
            f"{', '.join(unused)}"
        )
    base = runtime if runtime is not None else Runtime()
    return factory(model, runtime=base.replace(**speed) if speed else base, **options)
