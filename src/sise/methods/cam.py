"""The class activation map (CAM) family's base: one small extension point, :class:`CAMExplainer`.

Every CAM weights the K feature maps ``A_k`` of one convolutional layer (by default the last
spatial feature map of the network, the last layer :func:`sise.core.layers.discover_layers` finds) and
forms ``L = ReLU(Σ_k w_k A_k)``, which is bilinearly up-sampled to the input size
(``align_corners=False``) and min-max normalised to [0, 1]. Only the weights ``w_k`` differ:

* Grad-CAM (:mod:`sise.methods.grad_cam`): the spatial mean of the gradient of the explained
  score.
* Grad-CAM++ (:mod:`sise.methods.grad_cam_plus_plus`): a pixel-weighted sum of the positive
  gradients, with the paper's closed-form weights.
* Score-CAM (:mod:`sise.methods.score_cam`): the score of the input masked by each (up-sampled,
  normalised) map, computed with the batched masked-scoring engine.

What they share lives in :class:`CAMExplainer`: the layer, the pass that captures ``A`` (with the
gradient ``∂Ψ_c/∂A`` when the CAM needs it), the combination, up-sampling, normalisation and the
:class:`~sise.methods.base.Explanation`. A CAM subclasses it and implements only
:meth:`CAMExplainer.channel_weights` (the role of torch-cam's ``_get_weights``). For example,
XGrad-CAM (Fu et al., BMVC 2020, ``w_k = Σ_ij (A_k^{ij} / Σ_ab A_k^{ab}) ∂Ψ_c/∂A_k^{ij}``) is::

    class XGradCAM(CAMExplainer):
        name = "xgradcam"

        def channel_weights(self, context: CAMContext) -> ChannelWeights:
            a, g = context.activation, context.gradient
            share = a / a.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
            return ChannelWeights((share * g).sum(dim=(2, 3)))

The explained score Ψ_c is the one chosen with ``score=`` (softmax, sigmoid or logit), as for every
method of the package.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from sise.core.feature_layout import FeatureLayout, Reshape, custom_layout
from sise.core.hooks import LayerCapture, forward_scores, gradient_pass
from sise.core.layers import (
    LayerSpec,
    check_feature_map,
    discover_layers,
    discover_with_layouts,
    layer_layouts,
    resolve_layers,
)
from sise.core.postprocess import minmax_normalize, upsample
from sise.core.scores import ScoreKind
from sise.errors import SiseError
from sise.methods.base import Explanation, LayerExplainer, Targets
from sise.runtime import Runtime
from sise.targets import Target


def cam_to_maps(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """``L`` (N, h, w) → explanation maps: bilinear up-sampling to ``size``, then min-max."""
    return minmax_normalize(upsample(cam.float(), size))


# ------------------------------------------------------------------------- the extension point


@dataclass(frozen=True)
class CAMContext:
    """What a CAM computes its channel weights from, for a batch of N images.

    Attributes:
        layer: the explained layer's name.
        inputs: (N, C, H, W) the explained images, as given.
        activation: (N, K, h, w) float32 feature maps ``A_k`` of the layer.
        targets: (N,) the explained class of each image.
        scores: (N,) the explained score Ψ_c(x).
        maybe_gradient: (N, K, h, w) float32 ``∂Ψ_c/∂A``, or ``None`` for a CAM whose
            ``uses_gradients`` is False (read it as :attr:`gradient`).
        target: the resolved target (:mod:`sise.targets`), to score masked inputs with.
    """

    layer: str
    inputs: Tensor
    activation: Tensor
    targets: Tensor
    scores: Tensor
    maybe_gradient: Tensor | None = None
    target: Target | None = None

    @property
    def gradient(self) -> Tensor:
        """(N, K, h, w) ``∂Ψ_c/∂A``; only for CAMs with ``uses_gradients = True``."""
        if self.maybe_gradient is None:
            raise SiseError(
                "no gradient was computed for this CAM: set the class attribute "
                "uses_gradients = True to get one"
            )
        return self.maybe_gradient


@dataclass
class ChannelWeights:
    """What :meth:`CAMExplainer.channel_weights` returns.

    Attributes:
        weights: (N, K) the weight ``w_k`` of each feature map, per image.
        extra_forward_passes: (N,) model evaluations spent per image beyond the one that captured
            ``A`` (e.g. Score-CAM's masked forwards); ``None``: none.
        extras: method-specific results, added to the explanation's ``extras``.
    """

    weights: Tensor
    extra_forward_passes: Tensor | None = None
    extras: dict[str, object] = field(default_factory=dict)


class CAMExplainer(LayerExplainer):
    """Base of the class activation maps: ``L = ReLU(Σ_k w_k A_k)`` for weights a subclass gives.

    The base class runs one pass over the inputs that captures the layer's maps ``A`` (a forward
    and backward pass giving ``∂Ψ_c/∂A`` too when ``uses_gradients`` is True, a plain forward pass
    otherwise), asks :meth:`channel_weights` for ``w``, and returns ``L`` up-sampled bilinearly to
    the input size (``align_corners=False``) and min-max normalised. ``extras`` holds ``layer``,
    ``weights``, ``cam`` (``L`` before up-sampling) and what the subclass adds.

    Transformers: a layer whose output is a token sequence (N, P + h·w, C) (ViT, DeiT) or a
    channels-last grid (N, h, w, C) (Swin) is read as (N, C, h, w) maps, activations and
    gradients alike (:mod:`sise.core.feature_layout`); ``reshape=`` gives the conversion where
    it cannot be read from the shapes. The default layer of a plain ViT is the input of its last
    block (:func:`sise.core.layers.plain_block_indices`).

    Args:
        model: a CNN or vision transformer returning (N, K) class scores.
        layer: the explained layer (name or module); ``None``: the last spatial feature map.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
        reshape: a function from the layer's output to its (N, C, h, w) maps (as
            pytorch-grad-cam's ``reshape_transform``), applied to activations and gradients;
            ``None``: read the layout from the traced shapes.
    """

    #: Whether :meth:`channel_weights` needs ``context.gradient``.
    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind | None = None,
        runtime: Runtime | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, score=score, runtime=runtime)
        self.reshape = reshape
        if reshape is not None:
            custom_layout(reshape)  # checked now, not at the first call

    def layer_for(self, inputs: Tensor) -> tuple[str, nn.Module]:
        """The ``(name, module)`` explained for inputs of this shape."""
        name, module, _ = self.layer_and_layout(inputs)
        return name, module

    def layer_and_layout(self, inputs: Tensor) -> tuple[str, nn.Module, FeatureLayout]:
        """The explained layer for inputs of this shape and the layout of its maps, found
        once per input shape."""

        def choose(example: Tensor) -> tuple[str, nn.Module, FeatureLayout]:
            if self.layer is not None:
                layout = layer_layouts(self.model, [self.layer], example, self.reshape)[0]
                return (*self.layer, layout)
            if self.reshape is not None:
                name = discover_layers(self.model, example, require_stage=False)[-1]
                return (*resolve_layers(self.model, [name])[0], custom_layout(self.reshape))
            name, layout = discover_with_layouts(self.model, example, require_stage=False)[-1]
            return (*resolve_layers(self.model, [name])[0], layout)

        return self.per_input_shape(inputs, choose)

    @abstractmethod
    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        """The (N, K) weights of the maps ``context.activation``."""

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        name, module, layout = self.layer_and_layout(inputs)
        context = self._capture(name, module, layout, inputs, targets)
        result = self.channel_weights(context)
        n, channels = context.activation.shape[:2]
        weights = result.weights
        if tuple(weights.shape) != (n, channels):
            raise SiseError(
                f"{type(self).__name__}.channel_weights returned weights of shape "
                f"{tuple(weights.shape)}; expected (images, channels) = {(n, channels)}"
            )
        if not bool(torch.isfinite(weights).all()):
            raise SiseError(
                f"{type(self).__name__} got NaN or infinite channel weights: check the inputs and "
                "the model's outputs for NaN or Inf values"
            )
        cam = torch.relu((weights[:, :, None, None] * context.activation).sum(dim=1))
        forward_passes = torch.ones(n, dtype=torch.long, device=inputs.device)
        if result.extra_forward_passes is not None:
            forward_passes = forward_passes + result.extra_forward_passes
        return Explanation(
            maps=cam_to_maps(cam, (inputs.shape[-2], inputs.shape[-1])),
            targets=context.targets,
            scores=context.scores,
            forward_passes=forward_passes,
            method=self.name,
            extras={"layer": name, "weights": weights, **result.extras, "cam": cam},
        )

    def _capture(
        self,
        name: str,
        module: nn.Module,
        layout: FeatureLayout,
        inputs: Tensor,
        targets: Targets,
    ) -> CAMContext:
        gradient: Tensor | None = None
        if self.uses_gradients:
            grad = gradient_pass(self.model, [(name, module)], inputs, targets, self.score)
            # captured in the layer's own layout, both converted the same way
            activation = layout.to_maps(grad.activations[0], name).float()
            gradient = layout.to_maps(grad.gradients[0], name).float()
            resolved, scores, target = grad.targets, grad.scores, grad.target
        else:
            with LayerCapture([(name, module)]) as capture:
                target, resolved, scores = forward_scores(self.model, inputs, targets, self.score)
            if name not in capture.outputs:
                raise SiseError(f"layer {name!r} was not run by the model's forward pass")
            activation = layout.to_maps(capture.outputs[name].detach(), name).float()
        check_feature_map(name, activation)
        return CAMContext(name, inputs, activation, resolved, scores, gradient, target)
