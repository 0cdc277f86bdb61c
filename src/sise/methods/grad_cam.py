"""Grad-CAM: the CAM whose channel weights are the spatial means of the score's gradient."""

from __future__ import annotations

from sise.methods.cam import CAMContext, CAMExplainer, ChannelWeights


class GradCAM(CAMExplainer):
    """Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017).

    With ``A_k`` the K maps of the layer and Ψ_c the explained score::

        w_k = (1 / Z) Σ_λ ∂Ψ_c / ∂A_k(λ)          (Z: number of positions λ)
        L   = ReLU(Σ_k w_k A_k)

    ``L`` is bilinearly up-sampled to the input size (``align_corners=False``) and min-max
    normalised. Cost: one forward and one backward pass.

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the explained layer (name or module); ``None``: the last spatial feature map.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``; default: the logit
            (the paper's ``y^c`` before the softmax, as pytorch-grad-cam and torch-cam).
        reshape: a function from the layer's output to (N, C, h, w) maps, for a transformer
            layer whose layout cannot be read from its shape (:class:`CAMExplainer`).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> x = torch.randn(2, 3, 32, 32)  # two model-ready images
        >>> from sise import GradCAM
        >>> explanation = GradCAM(model)(x, targets=[1, 3])
        >>> explanation.maps.shape, explanation.extras["layer"], explanation.forward_passes
        (torch.Size([2, 32, 32]), '4', tensor([1, 1]))
    """

    name = "gradcam"
    default_score = "logit"

    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        """``w_k``: the spatial mean of ``∂Ψ_c/∂A_k``."""
        return ChannelWeights(context.gradient.mean(dim=(2, 3)))
