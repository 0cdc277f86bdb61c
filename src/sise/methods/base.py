"""The interface every explanation method shares: build with a model, call with inputs and targets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar, cast

import torch
from torch import Tensor, nn

from sise.core.hooks import explaining
from sise.core.layers import LayerSpec, discover_layers, resolve_layers
from sise.core.masks import BaselineSpec
from sise.core.scores import ScoreKind, check_score_kind
from sise.errors import SiseError
from sise.methods.diagnosis import input_shape_problem, warn_blank_maps
from sise.runtime import ModelRuntime, Runtime
from sise.targets import TargetSpec, names_to_indices

#: What every method's ``targets`` argument takes (see :mod:`sise.targets`).
Targets = TargetSpec
T = TypeVar("T")


@dataclass
class Explanation:
    """What a method returns for a batch.

    Attributes:
        maps: (N, H, W) explanation maps in [0, 1], at input resolution, on the model's device.
        targets: (N,) the explained class of each sample (-1 for a target that is not one
            class, e.g. a custom callable).
        scores: (N,) the explained score Ψ(x) of each sample (the target's value).
        forward_passes: (N,) model evaluations spent per sample (a forward+backward counts as one).
        method: the method's name.
        extras: method-specific results (e.g. Grad-CAM's channel weights); a method with a typed
            result holds its own results as attributes instead (:class:`sise.methods.sise.SISEExplanation`).
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


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter or buffer (``None``: it has none)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def check_baseline(baseline: object) -> BaselineSpec:
    """A masking baseline, checked where a method takes it: ``"zero"``, ``"blur"``, ``None`` or
    a finite floating-point tensor (a NaN baseline turns every masked input into NaN and every
    map blank)."""
    if baseline is None or (isinstance(baseline, str) and baseline in ("zero", "blur")):
        return baseline
    if isinstance(baseline, Tensor):
        if not baseline.is_floating_point():
            raise SiseError(
                f"a baseline tensor must be floating point, got {baseline.dtype}: pass it as a "
                "model-ready (normalised) image"
            )
        if not bool(torch.isfinite(baseline).all()):
            raise SiseError("the baseline tensor holds NaN or Inf values: give finite values")
        return baseline
    raise SiseError(f"unknown baseline {baseline!r}: use 'zero', 'blur' or a tensor")


def check_inputs(model: nn.Module, inputs: object) -> Tensor:
    """Validate a batch of model-ready images: a finite floating (N, C, H, W) tensor on the
    model's device, in the model's dtype (unless autocast is on)."""
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
    weights = model_dtype(model)
    if (
        weights is not None
        and inputs.dtype != weights
        and not torch.is_autocast_enabled(inputs.device.type)
    ):
        raise SiseError(
            f"inputs are {inputs.dtype} but the model's weights are {weights}: pass "
            f"inputs.to({weights}) (SISE runs its masked forwards in reduced precision itself "
            "with precision='bf16' or 'fp16'), or convert the model to the inputs' dtype"
        )
    if not bool(torch.isfinite(inputs).all()):
        raise SiseError(
            "inputs contain NaN or Inf values: check how the images were loaded and normalised"
        )
    return inputs


class Explainer(ABC):
    """Base class of all methods.

    Subclasses implement :meth:`_explain`; this class validates inputs, resolves targets and runs
    the method with the model in eval mode, restoring every module's mode afterwards.

    Args:
        model: the network: a classifier returning (N, K) class scores, or any model whose
            output a callable target reduces to one score per input.
        score: the explained score of class-index targets: ``"softmax"``, ``"sigmoid"`` or
            ``"logit"`` (a callable target carries its own); ``None``: the method's
            :attr:`default_score`, the one its authors explain.
        runtime: how the model evaluations run (batch size, precision, memory format,
            compilation, progress bars: :class:`sise.Runtime`); ``None``: the defaults. It never
            changes what the method computes.
    """

    name: str = "explainer"
    #: Raised by one when a fix changes the method's maps, so that ``sise benchmark`` does not
    #: resume onto results the old code made (it is part of the results' configuration).
    revision: int = 1
    #: The :class:`~sise.runtime.Runtime` settings this method's evaluations use (the command
    #: line accepts ``--option METHOD.KEY=VALUE`` for these keys); the others do not apply to it.
    runtime_settings: ClassVar[frozenset[str]] = frozenset()
    #: The score its authors and its reference library explain when ``score`` is not given:
    #: the class logit for the gradient methods (Grad-CAM, Grad-CAM++, FullGrad, Integrated
    #: Gradients, as pytorch-grad-cam, torch-cam, the FullGrad code and Captum do), the softmax
    #: probability for the masked-scoring methods (Score-CAM's and RISE's code score
    #: probabilities; SISE's paper explains the class probability).
    default_score: ClassVar[ScoreKind] = "softmax"

    def __init__(
        self,
        model: nn.Module,
        *,
        score: ScoreKind | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise SiseError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.score: ScoreKind = check_score_kind(score if score is not None else self.default_score)
        if runtime is not None and not isinstance(runtime, Runtime):
            raise SiseError(
                f"runtime must be a sise.Runtime, got {type(runtime).__name__}: build one with "
                "sise.Runtime(batch_size=..., precision=...)"
            )
        self.runtime = runtime if runtime is not None else Runtime()
        #: The runtime bound to the model: what the method calls to evaluate it.
        self.model_runtime = ModelRuntime(model, self.runtime)
        # What a method finds by tracing the model (its layers), once per input shape (C, H, W).
        self._discovered: dict[tuple[int, ...], object] = {}

    def __call__(self, inputs: Tensor, targets: Targets = None) -> Explanation:
        """Explain ``inputs`` for ``targets``.

        ``targets``: ``None`` (the predicted class), a class index for every sample, one per
        sample, or a callable ``target(output) -> (N,)`` score (:mod:`sise.targets`: the
        contract, and ready-made targets such as :class:`~sise.targets.Margin` and
        :class:`~sise.targets.SegmentationRegion`). A class name (``"tabby"``, or
        :class:`~sise.targets.ClassName`) is looked up in the model's class list (see
        :mod:`sise.targets.class_names`). A call inside ``torch.inference_mode()``
        works: the methods need autograd, so they run with inference mode switched off, on a
        normal copy of inputs made in inference mode. The runtime wraps the call
        (:meth:`sise.runtime.ModelRuntime.call`: on a CPU, freed memory is reused).

        Raises:
            SiseError: bad inputs, including those the model itself refuses (channels it does
                not take, a size its layers shrink to nothing).

        Warns:
            UserWarning: a map is all zero (it shows nothing), with the likely reason, e.g. a
                saturated softmax.
        """
        targets = names_to_indices(self.model, targets)  # type: ignore[assignment]
        with torch.inference_mode(False):
            if isinstance(inputs, Tensor) and inputs.is_inference():
                inputs = inputs.clone()
            inputs = check_inputs(self.model, inputs)
            with explaining(self.model), self.model_runtime.call(inputs):
                try:
                    explanation = self._explain(inputs, targets)
                except RuntimeError as error:
                    # the model's own message for inputs it cannot take, in the package's words;
                    # any other error inside the model is the model's, and stays as it is
                    problem = input_shape_problem(self.model, inputs, error)
                    if problem is None:
                        raise
                    raise SiseError(problem) from error
        warn_blank_maps(
            type(self).__name__,
            explanation.maps,
            explanation.scores,
            explanation.targets,
            self.score,
            stacklevel=3 if type(self).__call__ is not Explainer.__call__ else 2,
        )
        return explanation

    explain = __call__

    def per_input_shape(self, inputs: Tensor, compute: Callable[[Tensor], T]) -> T:
        """``compute(example)`` for one example of these inputs, cached per input shape.

        The one cache of what a method finds by tracing the model (layer discovery costs two
        forward passes): a model can take several input sizes, and its layers can differ with
        the size (a map that shrinks to 1x1).
        """
        key = tuple(inputs.shape[1:])
        if key not in self._discovered:
            self._discovered[key] = compute(inputs[:1].detach())
        return cast(T, self._discovered[key])

    @abstractmethod
    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        """Compute the explanation; the model is already in eval mode."""


class LayerExplainer(Explainer):
    """Base of the methods that explain through one convolutional layer.

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the layer, as a name or module; ``None`` uses the last spatial feature map of the
            network (the last layer :func:`sise.core.layers.discover_layers` finds), discovered once
            per input shape.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(model, score=score, runtime=runtime)
        if isinstance(layer, Sequence) and not isinstance(layer, str):
            raise SiseError(f"{type(self).__name__} explains one layer: pass a name or a module")
        self.layer = resolve_layers(model, [layer])[0] if layer is not None else None

    def layer_for(self, inputs: Tensor) -> tuple[str, nn.Module]:
        """The ``(name, module)`` explained for inputs of this shape."""
        if self.layer is not None:
            return self.layer

        def last_map(example: Tensor) -> tuple[str, nn.Module]:
            names = discover_layers(self.model, example, require_stage=False)
            return resolve_layers(self.model, [names[-1]])[0]

        return self.per_input_shape(inputs, last_map)
