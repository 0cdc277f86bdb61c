"""FullGrad: the score decomposed into input-gradient and bias-gradient terms, summed as maps."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from sise.core.feature_layout import candidate_layouts, is_channels_first, model_prefix_tokens
from sise.core.hooks import LayerCapture, gradient_pass
from sise.core.layers import norm_act_parts, split_call
from sise.core.postprocess import minmax_normalize, upsample
from sise.core.scores import ScoreKind
from sise.errors import check_choice
from sise.methods.base import Explainer, Explanation, Targets
from sise.runtime import Runtime


def effective_bias(module: nn.Module) -> Tensor | None:
    """The bias a layer adds to its output, or ``None`` if it adds none FullGrad can use.

    Convolutions and linear layers: their ``bias``. Batch normalisation in eval mode is the
    affine map ``γ (x − μ) / √(σ² + ε) + β``, whose bias is ``β − μ γ / √(σ² + ε)`` (γ = 1 and
    β = 0 without affine parameters). Batch norm without running statistics, and input-dependent
    normalisations (LayerNorm, GroupNorm), add no fixed bias and are left out.
    """
    if isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
        return module.bias.detach() if module.bias is not None else None
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.running_mean is None or module.running_var is None:
            return None
        scale = torch.rsqrt(module.running_var.detach() + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.detach()
        bias = -module.running_mean.detach() * scale
        if module.bias is not None:
            bias = bias + module.bias.detach()
        return bias
    return None


def biased_output(name: str, module: nn.Module) -> tuple[str, nn.Module]:
    """Where the bias of layer ``name`` is added: the output to differentiate for its term.

    The layer's own output, except for timm's ``BatchNormAct2d`` (:func:`sise.core.layers.norm_act_parts`),
    which applies its activation itself: its bias is added before the activation, so the
    gradient is taken at the output of its ``drop`` module (``"name.drop"``, the same call
    ``@k``). Taken at the layer's output it would miss the activation's derivative, and the
    decomposition would no longer sum to the score.
    """
    parts = norm_act_parts(module)
    if parts is None:
        return name, module
    drop = parts[0]
    child = next(child_name for child_name, child in module.named_children() if child is drop)
    base, call = split_call(name)
    return f"{base}.{child}" + ("" if call is None else f"@{call}"), drop


def bias_term(module: nn.Module, gradient: Tensor, bias: Tensor) -> Tensor:
    """``∂Ψ/∂y ⊙ b`` for a layer's output gradient: the bias broadcast along the channel
    dimension, the second for convolutions and batch norms (N, C, ...) and the last for linear
    layers, whose output is (N, C), (N, tokens, C) or (N, h, w, C) in a transformer."""
    if isinstance(module, nn.Linear) or gradient.ndim == 2:
        return gradient * bias.to(gradient.dtype)
    shape = [1, -1] + [1] * (gradient.ndim - 2)
    return gradient * bias.to(gradient.dtype).view(shape)


def term_maps(
    term: Tensor, module: nn.Module, size: tuple[int, int], n: int, prefix: int | None
) -> Tensor | None:
    """A bias term as (N, C, h, w) maps (:mod:`sise.core.feature_layout`: token sequences and
    channels-last grids are converted), or ``None`` when it is no map of the image: a linear
    layer's (N, C) output, or the (N·windows, tokens, C) of a Swin window attention, whose
    term counts in the decomposition but not in the saliency map."""
    layouts = candidate_layouts(
        tuple(term.shape),
        size,
        batch=n,
        prefix=prefix,
        channels_first=is_channels_first(module),
    )
    return layouts[0].to_maps(term) if len(layouts) == 1 else None


def _postprocess_sum(
    term: Tensor, size: tuple[int, int], normalization: str = "layer", chunk: int = 64
) -> Tensor:
    """FullGrad's ψ on one layer's term, summed over channels.

    ``"layer"`` (the authors' reference code): |term| min-max normalised per sample over all its
    channels and positions at once, up-sampled, summed over channels. ``"channel"`` (the paper's
    Eq. 5 read literally, and pytorch-grad-cam): each channel map up-sampled and min-max
    normalised on its own, then summed.

    Args:
        term: (N, C, h, w) gradient ⊙ bias (or ⊙ input) maps.
        size: (H, W) input size.
        normalization: ``"layer"`` or ``"channel"``.
        chunk: channels up-sampled at once (bounds memory for wide layers).

    Returns:
        (N, H, W).
    """
    magnitude = term.abs().float()
    if normalization == "layer":
        flat = magnitude.flatten(1)
        low = flat.amin(dim=1).view(-1, 1, 1, 1)
        span = (flat.amax(dim=1).view(-1, 1, 1, 1) - low).clamp_min(1e-12)
        magnitude = (magnitude - low) / span
    total = torch.zeros(term.shape[0], *size, device=term.device, dtype=torch.float32)
    for start in range(0, term.shape[1], chunk):
        part = upsample(magnitude[:, start : start + chunk], size)
        if normalization == "channel":
            part = minmax_normalize(part)
        total += part.sum(dim=1)
    return total


class FullGrad(Explainer):
    """FullGrad (Srinivas and Fleuret, "Full-Gradient Representation for Neural Network
    Visualization", NeurIPS 2019).

    The full-gradient decomposition of the explained score is
    ``Ψ_c(x) = ∇_x Ψ_c · x + Σ_l Σ_c ∇_{b_l} Ψ_c · b_l`` (exact for the logit of a
    piecewise-linear network, e.g. ReLU with batch norm in eval mode; the sum is
    ``extras["full_gradient_sum"]``). The saliency map (the paper's Eq. 5) is::

        S(x) = ψ(∇_x Ψ_c ⊙ x) + Σ_l Σ_c ψ(∇_{b_l} Ψ_c ⊙ b_l)

    where the bias-gradient of a layer is the gradient with respect to its output times its
    (broadcast) bias (:func:`effective_bias`: convolutions, linear layers, batch norm's
    ``β − μ γ / √(σ² + ε)``), and ψ post-processes a term: absolute value, min-max to [0, 1],
    bilinear up-sampling to the input size (``align_corners=False``). The paper's Eq. 5 writes ψ
    per channel; the authors' reference code min-max normalises each layer's whole
    (C, h, w) term at once, so that channels keep their relative weight. That is the default
    (``normalization="layer"``); ``"channel"`` normalises every channel map on its own (as
    pytorch-grad-cam does), which lets hundreds of near-zero channels weigh as much as the
    important ones. The terms are summed over channels and layers and the result is min-max
    normalised. Non-spatial terms (a
    linear layer's output, one value per unit) are constant maps that min-max to zero: they count
    in the decomposition but not in the map.

    Gradients are taken with respect to the layers' outputs (and the input) by hooks
    (:func:`sise.core.hooks.gradient_pass`), never through parameter ``.grad``. A layer that applies
    its activation itself (timm's ``BatchNormAct2d``, in EfficientNets, RegNets, MobileNetV3s of
    timm) is differentiated where its bias is added, before the activation
    (:func:`biased_output`): the decomposition of a ReLU network built from them is exact (pinned
    on timm's RegNetX-200MF). The authors' code and pytorch-grad-cam differ there: the first
    takes the gradient at such a layer's output, after the activation (on that RegNetX the terms
    then summed to 5.85 for a logit of 5.30); the second keeps only exact ``Conv2d`` and
    ``BatchNorm2d`` types and so leaves those layers out altogether: on the real
    EfficientNet-Lite0 it finds none of the 50 bias layers, its map is the input term alone, and
    it correlates with ``normalization="channel"`` at r = 0.22 and 0.39 on the two packaged
    photos. On the real Lite0 and Lite2, whose ReLU6 makes the decomposition inexact anyway,
    this changed the maps little (r = 0.996-0.999 to the maps taken after the activation).

    Transformers: a linear layer adds its bias along its output's last dimension, and its
    terms on token sequences (N, P + h·w, C) and channels-last grids (N, h, w, C) become maps
    like any layer's (:func:`term_maps`, :mod:`sise.core.feature_layout`); a term that is no
    map of the image (a Swin window attention's (N·windows, tokens, C)) counts in the sum only.
    The decomposition is not exact there: attention's softmax, LayerNorm's division by the
    token's spread and GELU are not piecewise linear, and the class token and position
    embeddings are constants that are no layer's bias; the map is FullGrad's saliency form,
    not a complete decomposition (it is exact for a ReLU network of linear layers on tokens,
    which the tests pin).

    Layers with a bias are found once per input shape; a layer called several times per forward
    pass adds its bias at each call and contributes one term per call (``"name@k"``), so the
    decomposition stays exact.

    Cost: one forward and one backward pass.

    Against pytorch-grad-cam's ``FullGrad``: it takes only ``Conv2d`` and ``BatchNorm2d`` biases
    (the linear layers' terms vanish from the map anyway) and normalises each channel map with
    ``(m − min) / (max + 1e-7)`` before resizing it. With ``normalization="channel"`` this class
    up-samples first, then takes an exact min-max; on maps at the input's size the two agree.

    Against the authors' code (``idiap/fullgrad-saliency``): it up-samples with
    ``align_corners=True`` and adds 1e-6 to the normalisation's denominator; this class keeps the
    package's ``align_corners=False`` (as SPEC's masks do). On the real EfficientNet-Lite0 the two
    maps correlated at r = 0.992 (coffee photo) and 0.984 (cat photo) before the
    ``BatchNormAct2d`` change below (which moved this class's maps by r = 0.996-0.999); with
    equal up-sampling, on layers without a built-in activation, they agree exactly (pinned by a
    test).

    Args:
        model: a classifier returning (N, K) class scores.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``; default: the logit
            (the paper explains the network output, as the authors' code does; the
            decomposition is exact for the logit).
        normalization: ``"layer"`` (authors' code, default) or ``"channel"`` (see above).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> x = torch.randn(2, 3, 32, 32)  # two model-ready images
        >>> from sise import FullGrad
        >>> explanation = FullGrad(model, score="logit")(x, targets=[1, 3])
        >>> explanation.maps.shape, explanation.extras["layer_names"]
        (torch.Size([2, 32, 32]), ['0', '3', '7'])
    """

    name = "fullgrad"
    default_score = "logit"
    revision = 2  # 2: timm's BatchNormAct2d differentiated before its activation

    def __init__(
        self,
        model: nn.Module,
        *,
        score: ScoreKind | None = None,
        normalization: Literal["layer", "channel"] = "layer",
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(model, score=score, runtime=runtime)
        self.normalization = check_choice("normalization", normalization, ("layer", "channel"))

    def bias_layers_for(self, inputs: Tensor) -> list[tuple[str, nn.Module]]:
        """The layers with a usable bias that the model runs on inputs of this shape, one entry
        per call (``"name@k"``) for a layer that runs several times."""

        def find(example: Tensor) -> list[tuple[str, nn.Module]]:
            candidates = [
                (name, module)
                for name, module in self.model.named_modules()
                if effective_bias(module) is not None
            ]
            with (
                torch.no_grad(),
                LayerCapture(candidates, detach_downstream=False, warn_repeated=False) as capture,
            ):
                self.model(example)
            calls = capture.calls
            found: list[tuple[str, nn.Module]] = []
            for name, module in candidates:
                count = calls[name]
                if count == 1:
                    found.append((name, module))
                else:  # each call adds its own bias: one term per call keeps the sum exact
                    found.extend((f"{name}@{k}", module) for k in range(count))
            return found

        return self.per_input_shape(inputs, find)

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        n, _, height, width = inputs.shape
        layers = self.bias_layers_for(inputs)
        grad = gradient_pass(
            self.model,
            [biased_output(name, module) for name, module in layers],
            inputs,
            targets,
            self.score,
            with_input_gradient=True,
        )
        assert grad.input_gradient is not None
        input_term = (grad.input_gradient * inputs.detach()).float()
        saliency = _postprocess_sum(input_term, (height, width), self.normalization)
        total = input_term.flatten(1).sum(dim=1)
        prefix = model_prefix_tokens(self.model)
        for (_, module), gradient in zip(layers, grad.gradients, strict=True):
            bias = effective_bias(module)
            assert bias is not None
            term = bias_term(module, gradient, bias).float()
            # (N·windows, ...) for a window attention: each image's windows are consecutive
            total = total + term.reshape(n, -1).sum(dim=1)
            maps = term_maps(term, module, (height, width), n, prefix)
            if maps is not None:
                saliency = saliency + _postprocess_sum(maps, (height, width), self.normalization)
        return Explanation(
            maps=minmax_normalize(saliency),
            targets=grad.targets,
            scores=grad.scores,
            forward_passes=torch.ones(n, dtype=torch.long, device=inputs.device),
            method=self.name,
            extras={
                "layer_names": [name for name, _ in layers],
                "full_gradient_sum": total,
                "saliency": saliency,
            },
        )
