"""Methods by name, for the command line and the benchmark."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sise.errors import SiseError
from sise.methods.base import Explainer
from sise.methods.cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from sise.methods.gradient import FullGrad, IntegratedGradients
from sise.methods.perturbation import RISE, ExtremalPerturbation
from sise.methods.sise import SISE

MethodFactory = Callable[..., Explainer]

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


def make_explainer(name: str, model: nn.Module, **options: object) -> Explainer:
    """Build the method called ``name`` for ``model``; options go to its constructor."""
    key = name.lower().replace("-", "").replace("_", "").replace("+", "p")
    if key not in METHODS:
        raise SiseError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[key](model, **options)
