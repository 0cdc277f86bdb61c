"""The interface every explanation method shares: build with a model, call with inputs and targets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.hooks import explaining
from sise.layers import LayerSpec, discover_layers, resolve_layers
from sise.scores import ScoreKind, check_score_kind

Targets = int | Sequence[int] | Tensor | None


@dataclass
class Explanation:
    """What a method returns for a batch.

    Attributes:
        maps: (N, H, W) explanation maps in [0, 1], at input resolution, on the model's device.
        targets: (N,) the explained class of each sample.
        scores: (N,) the explained score Ψ_c(x) of each sample.
        forward_passes: (N,) model evaluations spent per sample (a forward+backward counts as one).
        method: the method's name.
        extras: method-specific results (e.g. SISE's per-layer maps).
    """

    maps: Tensor
    targets: Tensor
    scores: Tensor
    forward_passes: Tensor
    method: str
    extras: dict[str, object] = field(default_factory=dict)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def check_inputs(model: nn.Module, inputs: object) -> Tensor:
    """Validate a batch of model-ready images: a floating (N, C, H, W) tensor on the model's device."""
    if not isinstance(inputs, Tensor):
        raise SiseError(
            f"inputs must be a torch.Tensor of shape (N, C, H, W), got {type(inputs).__name__}; "
            "load images with sise.images.load_image and a model's preprocessing"
        )
    if inputs.ndim == 3:
        raise SiseError(
            f"inputs have shape {tuple(inputs.shape)}: add the batch dimension with inputs[None]"
        )
    if inputs.ndim != 4:
        raise SiseError(f"inputs must have shape (N, C, H, W), got {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise SiseError(
            f"inputs must be floating point (normalised images), got {inputs.dtype}: "
            "convert with inputs.float() and apply the model's normalisation"
        )
    if inputs.shape[0] == 0:
        raise SiseError("inputs hold no image (batch size 0)")
    device = model_device(model)
    if inputs.device != device:
        raise SiseError(
            f"inputs are on {inputs.device} but the model is on {device}: move them with "
            f"inputs.to({str(device)!r})"
        )
    return inputs


class Explainer(ABC):
    """Base class of all methods.

    Subclasses implement :meth:`_explain`; this class validates inputs, resolves targets and runs
    the method with the model in eval mode, restoring every module's mode afterwards.

    Args:
        model: the classifier; it must return (N, K) class scores.
        score: the explained score: ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
    """

    name: str = "explainer"

    def __init__(self, model: nn.Module, *, score: ScoreKind = "softmax") -> None:
        if not isinstance(model, nn.Module):
            raise SiseError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.score: ScoreKind = check_score_kind(score)

    def __call__(self, inputs: Tensor, targets: Targets = None) -> Explanation:
        """Explain ``inputs`` for ``targets`` (one class per sample; ``None``: the predicted class)."""
        inputs = check_inputs(self.model, inputs)
        with explaining(self.model):
            return self._explain(inputs, targets)

    explain = __call__

    @abstractmethod
    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        """Compute the explanation; the model is already in eval mode."""


class LayerExplainer(Explainer):
    """Base of the methods that explain through one convolutional layer.

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the layer, as a name or module; ``None`` uses the last spatial feature map of the
            network (the last layer :func:`sise.layers.discover_layers` finds), discovered once
            per input shape.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
    """

    def __init__(
        self, model: nn.Module, layer: LayerSpec | None = None, *, score: ScoreKind = "softmax"
    ) -> None:
        super().__init__(model, score=score)
        if isinstance(layer, Sequence) and not isinstance(layer, str):
            raise SiseError(f"{type(self).__name__} explains one layer: pass a name or a module")
        self.layer = resolve_layers(model, [layer])[0] if layer is not None else None
        self._discovered: dict[tuple[int, ...], tuple[str, nn.Module]] = {}

    def layer_for(self, inputs: Tensor) -> tuple[str, nn.Module]:
        """The ``(name, module)`` explained for inputs of this shape."""
        if self.layer is not None:
            return self.layer
        key = tuple(inputs.shape[1:])
        if key not in self._discovered:
            names = discover_layers(self.model, inputs[:1].detach())
            self._discovered[key] = resolve_layers(self.model, [names[-1]])[0]
        return self._discovered[key]
