"""Grad-CAM++: the CAM whose channel weights sum the positive gradients with closed-form pixel
weights."""

from __future__ import annotations

from typing import Literal, cast, get_args

import torch
from torch import Tensor, nn

from sise.core.feature_layout import Reshape
from sise.core.layers import LayerSpec
from sise.core.scores import ScoreKind
from sise.errors import SiseError, check_choice
from sise.methods.cam import CAMContext, CAMExplainer, ChannelWeights
from sise.runtime import Runtime

Denominator = Literal["paper", "summed"]


def gradcampp_alphas(
    activation: Tensor, gradient: Tensor, scale: Tensor, denominator: Denominator = "paper"
) -> Tensor:
    """Grad-CAM++'s closed-form pixel weights ``α_k^{ij}``, (N, K, h, w).

    With ``Y = exp(S)`` and S piecewise linear in A (the paper's exponential trick, Eq. 19),
    ``g = ∂S/∂A`` and the paper's Eq. 10::

        α_k^{ij} = g_ij² / (2 g_ij² + g_ij³ Σ_ab A_k^{ab})                        ("paper")

    ``gradient`` is ``G = ∂Y/∂A = s·g`` with ``scale`` s = Y (see :class:`GradCAMPlusPlus`);
    multiplying numerator and denominator by s³ gives the form computed here, which needs no
    division by a possibly tiny score::

        α = s G² / (2 s G² + G³ Σ_ab A^{ab})

    ``denominator="summed"`` computes the variant ``2 s G² + Σ_ab A^{ab} G_ab³`` (torch-cam's).
    Where the denominator is zero (no gradient) α is 0.

    Args:
        activation: (N, K, h, w) maps A.
        gradient: (N, K, h, w) ``G``.
        scale: (N,) the factor s (1 for the logit).
        denominator: ``"paper"`` or ``"summed"``.
    """
    s = scale.to(gradient.dtype).view(-1, 1, 1, 1)
    g2 = gradient * gradient
    g3 = g2 * gradient
    if denominator == "paper":
        third = g3 * activation.sum(dim=(2, 3), keepdim=True)
    elif denominator == "summed":
        third = (activation * g3).sum(dim=(2, 3), keepdim=True)
    else:
        raise SiseError(f"unknown denominator {denominator!r}: use 'paper' or 'summed'")
    numerator = s * g2
    den = 2 * numerator + third
    usable = (den != 0) & torch.isfinite(den) & (numerator != 0)
    return torch.where(usable, numerator / torch.where(usable, den, torch.ones_like(den)), 0.0)


class GradCAMPlusPlus(CAMExplainer):
    """Grad-CAM++ (Chattopadhay, Sarkar, Howlader and Balasubramanian, "Grad-CAM++: Generalized
    Gradient-based Visual Explanations for Deep Convolutional Networks", WACV 2018).

    Channel weights and map::

        w_k = Σ_ij α_k^{ij} ReLU(∂Y/∂A_k^{ij}),     L = ReLU(Σ_k w_k A_k)

    with the closed-form α of the paper's Eq. 10, which under ``Y = exp(S)`` (Eq. 19) reads
    ``α_k^{ij} = g_ij² / (2 g_ij² + g_ij³ Σ_ab A_k^{ab})``, ``g = ∂S/∂A``.

    Derivation of the denominator (Eqs. 7-10): from ``Y = Σ_k (Σ_ab α_ab ∂Y/∂A_ab)(Σ_ij A_ij)``,
    differentiating twice with respect to ``A_ij`` and keeping the diagonal terms gives
    ``∂²Y/∂A_ij² = 2 α_ij ∂²Y/∂A_ij² + α_ij (Σ_ab A_ab) ∂³Y/∂A_ij³``: the third derivative is
    taken *at (i, j)* and multiplied by the channel's total activation ``Σ_ab A_ab``. With
    ``Y = exp(S)`` and S piecewise linear (ReLU networks), ``∂ⁿY/∂A_ij^n = exp(S) g_ij^n``, and
    ``exp(S)`` cancels. The authors' code and pytorch-grad-cam compute exactly this; torch-cam
    writes ``Σ_ab A_ab g_ab³`` instead (offered as ``denominator="summed"``; it coincides with
    the paper when the gradient is spatially constant, e.g. under global average pooling).
    pytorch-grad-cam adds 1e-6 to the denominator and plugs the gradient of whatever target it
    is given into the formula, so it matches ``score="logit"`` here, not the softmax form below.

    What the exponential trick means for the explained score Ψ:

    * ``score="logit"``: ``S = z_c``, ``Y = exp(z_c)``, exactly the paper. The common factor
      ``exp(z_c)`` of all ``w_k`` is dropped (it changes neither the ReLU nor the min-max).
    * ``score="softmax"`` / ``"sigmoid"``: Ψ is already an exponential, ``Ψ = exp(log Ψ)``, so
      ``Y = Ψ`` and ``S = log Ψ`` (= ``z_c − logsumexp(z)`` for the softmax). ``g = (∂Ψ/∂A) / Ψ``
      and ``∂Y/∂A = ∂Ψ/∂A``. The closed form neglects the curvature of ``log Ψ`` (of the
      log-sum-exp), as the paper neglects higher derivatives of S.
    * A callable target (:mod:`sise.targets`) is taken as S, ``Y = exp(S)``, like the logit,
      unless it is a class probability (:attr:`sise.targets.Target.exponential`, e.g.
      ``ClassScore(c, "softmax")``).

    Cost: one forward and one backward pass.

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the explained layer (name or module); ``None``: the last spatial feature map.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``; default: the logit
            (the paper's ``S^c``, as pytorch-grad-cam and torch-cam).
        denominator: ``"paper"`` (Eq. 10) or ``"summed"`` (torch-cam's ``Σ_ab A_ab g_ab³``).
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
        >>> from sise import GradCAMPlusPlus
        >>> explanation = GradCAMPlusPlus(model, score="logit")(x, targets=[1, 3])
        >>> explanation.maps.shape, explanation.extras["alphas"].shape
        (torch.Size([2, 32, 32]), torch.Size([2, 8, 16, 16]))
    """

    name = "gradcampp"
    default_score = "logit"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind | None = None,
        denominator: Denominator = "paper",
        runtime: Runtime | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, score=score, runtime=runtime, reshape=reshape)
        self.denominator: Denominator = cast(
            Denominator, check_choice("denominator", denominator, get_args(Denominator))
        )

    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        """``w_k = Σ_ij α_k^{ij} ReLU(∂Y/∂A_k^{ij})``; ``extras["alphas"]`` holds α."""
        gradient = context.gradient
        scores = context.scores
        # Y = Ψ for a class probability (softmax, sigmoid), Y = exp(S) for any other target
        exponential = context.target is not None and context.target.exponential
        scale = scores if exponential else torch.ones_like(scores)
        alphas = gradcampp_alphas(context.activation, gradient, scale, self.denominator)
        weights = (alphas * torch.relu(gradient)).sum(dim=(2, 3))
        return ChannelWeights(weights, extras={"alphas": alphas})
