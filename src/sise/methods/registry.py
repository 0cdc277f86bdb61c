"""Methods by name, for the command line and the benchmark."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

import torch
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


Budget = Literal["quick", "paper"]
#: The named budgets (see :func:`budget_options`).
BUDGETS: tuple[str, ...] = get_args(Budget)

#: Extremal Perturbation's area weight grows ``λ_t = 300 · g^t`` from 300 to 300 · 1.0035^800 ≈
#: 4,900 over the paper's 800 iterations; the quick budget's 300 iterations reach the same end
#: weight with ``g = 1.0035^(800/300)``, so the area is enforced as firmly at the end.
_QUICK_EXTREMAL_ITERATIONS = 300
_QUICK_AREA_WEIGHT_GROWTH = 1.0035 ** (800 / _QUICK_EXTREMAL_ITERATIONS)


def device_budget(device: str | torch.device) -> Budget:
    """The budget that suits ``device``: the published settings on a CUDA GPU, the quick ones
    elsewhere (a CPU takes minutes per method on the published ones)."""
    return "paper" if torch.device(device).type == "cuda" else "quick"


def display_name(method: str, options: Mapping[str, object]) -> str:
    """The method's name in figures and messages: ``"Ada-SISE"`` for SISE with the adaptive
    selection (``--adaptive`` or ``--option sise.selection=adaptive``)."""
    if method == "sise" and options.get("selection") == "adaptive":
        return "Ada-SISE"
    return DISPLAY_NAMES.get(method, method)


def budget_options(method: str, budget: Budget, model: nn.Module | None = None) -> dict[str, Any]:
    """The options of a named budget for ``method``: what makes it slow, set to the published
    values (``"paper"``) or reduced to finish in seconds on a CPU (``"quick"``).

    ``"paper"``: RISE 4,000 masks (8,000 for a VGG ``model``: Petsiuk et al. use N = 4,000 for
    ResNet-50 and 8,000 for VGG16), Extremal Perturbation 800 iterations over the areas 2.5, 5,
    10 and 20 % (Fong et al.'s VOC benchmark, TorchRay's 800 iterations), Integrated Gradients
    50 steps (Captum's default, as the SISE paper's comparison); these are also the methods'
    defaults. ``"quick"``: RISE 1,000 masks; Extremal Perturbation 300 iterations on the single
    area 10 % (TorchRay's default area), its area weight growing faster so that it ends where
    800 iterations end; Integrated Gradients 20 steps (a 20-point Gauss-Legendre rule). SISE,
    Grad-CAM, Grad-CAM++, Score-CAM and FullGrad have no budget: they run as published in both.

    Example:
        >>> from sise.methods.registry import budget_options
        >>> budget_options("rise", "quick"), budget_options("rise", "paper")
        ({'n_masks': 1000}, {'n_masks': 4000})
        >>> budget_options("gradcam", "quick")
        {}
    """
    if budget not in BUDGETS:
        raise SiseError(f"unknown budget {budget!r}: use {' or '.join(BUDGETS)}")
    key = canonical_name(method)
    if budget == "paper":
        vgg = model is not None and type(model).__name__.lower().startswith("vgg")
        options: dict[str, dict[str, Any]] = {
            "rise": {"n_masks": 8000 if vgg else 4000},
            "extremal": {
                "iterations": 800,
                "areas": (0.025, 0.05, 0.1, 0.2),
                "area_weight_growth": 1.0035,
            },
            "ig": {"n_steps": 50},
        }
    else:
        options = {
            "rise": {"n_masks": 1000},
            "extremal": {
                "iterations": _QUICK_EXTREMAL_ITERATIONS,
                "areas": (0.1,),
                "area_weight_growth": _QUICK_AREA_WEIGHT_GROWTH,
            },
            "ig": {"n_steps": 20},
        }
    return dict(options.get(key, {}))


def make_explainer(name: str, model: nn.Module, **options: Any) -> Explainer:
    """Build the method called ``name`` (any spelling :func:`canonical_name` takes) for
    ``model``.

    ``options`` are its constructor's options (``runtime`` among them); those named like a :class:`~sise.runtime.Runtime`
    setting (``batch_size=64``, ``precision="fp16"``: how ``--option sise.batch_size=64``
    arrives) change that setting of ``runtime`` for this method only. The option ``budget``
    (``"quick"`` or ``"paper"``, :func:`budget_options`) sets the options that make a method
    slow; an option given with it wins over the budget's: ``make_explainer("rise", model,
    budget="quick")`` draws 1,000 masks, with ``n_masks=2000`` too 2,000.

    Raises:
        SiseError: a runtime setting the method does not use (``gradcam`` takes no
            ``batch_size``), or a bad value.
    """
    factory = METHODS[canonical_name(name)]
    budget = options.pop("budget", None)
    if budget is not None:
        options = {**budget_options(name, budget, model), **options}
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
