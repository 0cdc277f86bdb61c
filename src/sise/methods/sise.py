"""SISE: Semantic Input Sampling for Explanation.

Sattarzadeh et al., "Explaining Convolutional Neural Networks through Attribution-Based Input
Sampling and Block-Wise Feature Aggregation", AAAI 2021. Ada-SISE: Sudhakar et al., "Ada-SISE:
Adaptive Semantic Input Sampling for Efficient Explanation of Convolutional Neural Networks",
ICASSP 2021.

For an input x and class c, with Ψ_c the explained score:

1. Layers: the feature map entering each down-sampling stage (see :mod:`sise.core.layers`).
2. Feature-map selection (:mod:`sise.methods.feature_selection`): ``α_k = Σ_λ ∂Ψ_c/∂A_k(λ)``,
   ``β = max_k α_k``; keep ``α_k > μ·β``.
3. Attribution masks ``m = Ω(A_k)`` (bilinear up-sampling, min-max to [0, 1]) score the masked
   inputs, giving the layer visualisation map
   ``V_l(λ) = Σ_m Ψ_c(x ⊙ m) · m(λ) / Σ_λ' m(λ')``, min-max normalised. Maps that give equal
   masks (equal after min-max normalisation) are scored once and counted as often as they occur.
4. Fusion, shallow to deep (:mod:`sise.methods.fusion`): ``F ← V_1``, then
   ``F ← (F + V_l) ⊙ B(V_l)`` with ``B(V_l)`` the binary mask ``V_l > Otsu(V_l)``; the result is
   min-max normalised.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast, get_args

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from sise.core.feature_layout import FeatureLayout, Reshape, custom_layout
from sise.core.layers import (
    LayerSpec,
    check_feature_map,
    discover_layers,
    discover_with_layouts,
    layer_layouts,
    resolve_layers,
)
from sise.core.masks import BaselineSpec, ConcatMasks, MaskSums, UpsampledMaps, repeated_maps
from sise.core.postprocess import is_constant, minmax_normalize
from sise.core.scores import ScoreKind
from sise.core.smoothing import check_smoothing
from sise.errors import check_choice, check_number
from sise.methods.base import Explainer, Explanation, Targets
from sise.methods.feature_selection import Selection, select_layers_maps
from sise.methods.fusion import Gate, fuse
from sise.methods.masked import MaskedScoring
from sise.runtime import Runtime


def _indices(keep: Tensor, count: int) -> Tensor:
    """``keep.nonzero()`` when its length ``count`` is already known: no wait on the device.

    ``torch.nonzero_static`` gives the same indices in the same order; a build without it for
    this device falls back to ``nonzero`` (which waits for the device to learn the length).
    """
    try:
        return torch.nonzero_static(keep, size=count)
    except (NotImplementedError, RuntimeError):
        return keep.nonzero()


@dataclass(kw_only=True)
class SISEExplanation(Explanation):
    """SISE's result: the fused maps (``maps``) and what they were fused from.

    Attributes:
        layer_names: the L layers visualised, shallow to deep.
        layer_maps: (N, L, H, W) each layer's visualisation map ``V_l`` in [0, 1] (zeros for a
            layer that kept no feature map).
        kept_maps: (N, L) how many feature maps each layer kept per sample. Kept maps that give
            equal masks are scored once (:func:`sise.core.masks.repeated_maps`), so
            ``forward_passes`` can be less than ``1 + kept_maps.sum(dim=1)``.
    """

    layer_names: list[str]
    layer_maps: Tensor
    kept_maps: Tensor


class SISE(MaskedScoring, Explainer):
    """Semantic Input Sampling for Explanation (Sattarzadeh et al., AAAI 2021).

    Calling it returns a :class:`SISEExplanation`, which holds the per-layer maps.

    Args:
        model: a CNN returning (N, K) class scores.
        layers: layers to visualise, shallow to deep, as names or modules; ``None`` discovers
            them from a traced forward pass (:func:`sise.core.layers.discover_layers`), once per input
            shape. A module that runs several times per forward pass is named with the call to
            use, ``"name@k"`` (:func:`sise.core.layers.split_call`). Transformers: the stages
            of Swin, PVT, MaxViT and ConvNeXt are found like a CNN's; a plain ViT, which has no
            stage, gets 4 evenly spaced blocks (:func:`sise.core.layers.plain_block_indices`).
        mu: feature-map selection threshold ``α_k > μ·β`` (fixed selection), in [0, 1).
        selection: ``"fixed"`` (paper) or ``"adaptive"`` (Ada-SISE, fewer masked forwards).
        score: explained score ``"softmax"``, ``"sigmoid"`` (multi-label) or ``"logit"``.
        baseline: what masked-out pixels become: ``"zero"`` (the model's input-space zero),
            ``"blur"``, or a tensor.
        gate: fusion gate, ``"binary"`` (paper) or ``"soft"`` (sigmoid, teaching code).
        soft_gate_sharpness: slope of the soft gate, > 0.
        smoothing: ``σ`` of a Gaussian applied to the fused map, as a fraction of the image
            size; 0 (default) is the paper's fusion, exactly; 0.1 trades EBPG for Drop% and
            Increase% (see :func:`fuse`).
        reshape: a function from a layer's output to its (N, C, h, w) maps, applied to every
            layer's activations and gradients (pytorch-grad-cam's ``reshape_transform``), for
            transformer layers whose layout cannot be read from their shapes; ``None``: read it
            (:mod:`sise.core.feature_layout`).
        runtime: how the masked forwards run (:class:`sise.Runtime`: batch size, precision,
            memory format, compilation, progress bar); ``None``: the defaults. The gradient pass
            (feature-map selection) always runs in the model's own precision, and on CUDA
            without TF32, so that the maps an image keeps do not depend on the other images of
            the call; with ``compile`` it is compiled on CUDA too.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> x = torch.randn(2, 3, 32, 32)  # two model-ready images
        >>> from sise import SISE
        >>> result = SISE(model)(x, targets=[1, 3])  # one class per image; None: the top class
        >>> result.maps.shape, result.layer_names
        (torch.Size([2, 32, 32]), ['1', '4'])
        >>> result.layer_maps.shape  # (N, L, H, W): what each layer sees
        torch.Size([2, 2, 32, 32])
        >>> bool((result.forward_passes <= 1 + result.kept_maps.sum(dim=1)).all())
        True
    """

    name = "sise"
    progress_label = "SISE masked forwards"

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[LayerSpec] | None = None,
        *,
        mu: float = 0.0,
        selection: Selection = "fixed",
        score: ScoreKind | None = None,
        baseline: BaselineSpec = "zero",
        gate: Gate = "binary",
        soft_gate_sharpness: float = 100.0,
        smoothing: float = 0.0,
        runtime: Runtime | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, score=score, runtime=runtime)
        self.selection: Selection = cast(
            Selection, check_choice("selection", selection, get_args(Selection))
        )
        self.gate: Gate = cast(Gate, check_choice("gate", gate, get_args(Gate)))
        self.set_masking_options(baseline=baseline)
        self.layers = resolve_layers(model, layers) if layers is not None else None
        # μ >= 1 would keep no map (α_k > β never holds); NaN would keep none either.
        self.mu = check_number("mu", mu, low=0.0, high=1.0, high_inclusive=False)
        self.soft_gate_sharpness = check_number(
            "soft_gate_sharpness", soft_gate_sharpness, low=0.0, low_inclusive=False
        )
        self.smoothing = check_smoothing(smoothing)
        self.reshape = reshape
        if reshape is not None:
            custom_layout(reshape)  # checked now, not at the first call

    def __call__(self, inputs: Tensor, targets: Targets = None) -> SISEExplanation:
        """Explain ``inputs`` for ``targets`` (see :meth:`Explainer.__call__`)."""
        # _explain returns a SISEExplanation; the base class's signature only knows Explanation.
        return cast(SISEExplanation, super().__call__(inputs, targets))

    explain = __call__

    def layers_for(self, inputs: Tensor) -> list[tuple[str, nn.Module]]:
        """The layers used for inputs of this shape (discovered once per input size)."""
        return self.layers_and_layouts(inputs)[0]

    def layers_and_layouts(
        self, inputs: Tensor
    ) -> tuple[list[tuple[str, nn.Module]], list[FeatureLayout]]:
        """The layers used for inputs of this shape and the layouts of their maps
        (:mod:`sise.core.feature_layout`), found once per input size."""

        def choose(example: Tensor) -> tuple[list[tuple[str, nn.Module]], list[FeatureLayout]]:
            if self.layers is not None:
                return self.layers, layer_layouts(self.model, self.layers, example, self.reshape)
            if self.reshape is not None:
                layers = resolve_layers(self.model, discover_layers(self.model, example))
                return layers, layer_layouts(self.model, layers, example, self.reshape)
            found = discover_with_layouts(self.model, example)
            layers = resolve_layers(self.model, [name for name, _ in found])
            return layers, [layout for _, layout in found]

        return self.per_input_shape(inputs, choose)

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling so far (the first calls per input shape; 0 without the
        runtime's ``compile``)."""
        return self.model_runtime.compile_seconds

    def _explain(self, inputs: Tensor, targets: Targets) -> SISEExplanation:
        layers, layouts = self.layers_and_layouts(inputs)
        n, _, height, width = inputs.shape
        with record_function("sise.gradient_pass"):
            grad = self.model_runtime.gradient_pass(layers, inputs, targets, self.score)
        # captured in each layer's own layout (tokens, channels last): both converted alike
        activations = [
            layout.to_maps(a, name)
            for (name, _), layout, a in zip(layers, layouts, grad.activations, strict=True)
        ]
        gradients = [
            layout.to_maps(g, name)
            for (name, _), layout, g in zip(layers, layouts, grad.gradients, strict=True)
        ]
        for (name, _), activation in zip(layers, activations, strict=True):
            check_feature_map(name, activation)
        selected = select_layers_maps(gradients, self.mu, self.selection)
        keeps, scored_keeps, counts = [], [], []
        for keep, activation in zip(selected, activations, strict=True):
            # A constant map gives a constant mask: it says nothing about location, so no
            # forward pass is spent on it.
            keep = keep & ~is_constant(activation.flatten(0, 1)).view_as(keep)
            # Maps that give equal masks are scored once, weighted by how many they stand for.
            repeat, count = repeated_maps(activation, keep)
            keeps.append(keep)
            scored_keeps.append(keep & ~repeat)
            counts.append(count)
        kept = torch.stack([keep.sum(dim=1) for keep in keeps], dim=1)  # (N, L)
        scored = torch.stack([keep.sum(dim=1) for keep in scored_keeps], dim=1)
        # The one wait on the device before the masked forwards: how many masks each layer has.
        kept_host, scored_host = torch.stack([kept, scored]).tolist()

        sources: list[UpsampledMaps] = []
        weights = []
        for layer, (keep, count, activation) in enumerate(
            zip(scored_keeps, counts, activations, strict=True)
        ):
            total = sum(row[layer] for row in scored_host)
            image_index, map_index = _indices(keep, total).unbind(1)
            maps = activation[image_index, map_index]
            weights.append(count[image_index, map_index])
            sources.append(UpsampledMaps(maps, image_index, (height, width)))

        source = ConcatMasks(sources)
        # the masks' sums per layer and image (group l·N + i), summed as they are scored
        sums = MaskSums(
            [row[layer] for layer in range(len(layers)) for row in scored_host],
            (height, width),
            inputs.device,
            per_unit_area=True,
            counts=torch.cat(weights),
        )
        with record_function("sise.masked_forwards"):
            self.score_masks(
                inputs,
                grad.target,
                source,
                sums=sums,
            )
        # V_l = minmax(Σ_m Ψ_c(x ⊙ m) · m / Σ_λ m): zeros where a layer kept no map
        layer_maps = minmax_normalize(sums.result().view(len(layers), n, height, width))
        layer_maps = layer_maps.transpose(0, 1).contiguous()

        present = kept > 0
        for i, (name, _) in enumerate(layers):
            if any(row[i] == 0 for row in kept_host):
                warnings.warn(
                    f"SISE: layer {name!r} kept no feature map for some inputs; it contributes "
                    "nothing to their fused map",
                    stacklevel=4,  # the caller of SISE.__call__ (→ Explainer.__call__ → _explain)
                )
        fused = fuse(layer_maps, present, self.gate, self.soft_gate_sharpness, self.smoothing)
        return SISEExplanation(
            maps=fused,
            targets=grad.targets,
            scores=grad.scores,
            forward_passes=1 + scored.sum(dim=1),
            method=self.name,
            layer_names=[name for name, _ in layers],
            layer_maps=layer_maps,
            kept_maps=kept,
        )
