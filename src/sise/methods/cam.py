"""Class activation maps: Grad-CAM, Grad-CAM++ and Score-CAM.

All three weight the K feature maps ``A_k`` of one convolutional layer (by default the last
spatial feature map of the network, the last layer :func:`sise.layers.discover_layers` finds) and
form ``L = ReLU(Σ_k w_k A_k)``, which is bilinearly up-sampled to the input size
(``align_corners=False``) and min-max normalised to [0, 1]. They differ in the weights ``w_k``:

* Grad-CAM: the spatial mean of the gradient of the explained score.
* Grad-CAM++: a pixel-weighted sum of the positive gradients, with the paper's closed-form
  weights.
* Score-CAM: a softmax over channels of the score of the input masked by each (up-sampled,
  normalised) map, computed with the batched masked-scoring engine.

The explained score Ψ_c is the one chosen with ``score=`` (softmax, sigmoid or logit), as for every
method of the package.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from sise.engine import (
    BaselineSpec,
    ConcatMasks,
    MaskSource,
    TensorMasks,
    UpsampledMaps,
    make_baseline,
    score_masked,
)
from sise.errors import SiseError
from sise.hooks import LayerCapture, gradient_pass, score_output
from sise.layers import LayerSpec, check_feature_map
from sise.methods.base import Explanation, LayerExplainer, Targets
from sise.postprocess import is_constant, minmax_normalize, upsample
from sise.scores import ScoreKind

Denominator = Literal["paper", "summed"]
ScoreCamWeights = Literal["softmax", "cic"]


def cam_to_maps(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """``L`` (N, h, w) → explanation maps: bilinear up-sampling to ``size``, then min-max."""
    return minmax_normalize(upsample(cam.float(), size))


class GradCAM(LayerExplainer):
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
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
    """

    name = "gradcam"

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        name, module = self.layer_for(inputs)
        grad = gradient_pass(self.model, [(name, module)], inputs, targets, self.score)
        activation, gradient = grad.activations[0].float(), grad.gradients[0].float()
        check_feature_map(name, activation)
        weights = gradient.mean(dim=(2, 3))
        cam = torch.relu((weights[:, :, None, None] * activation).sum(dim=1))
        n = inputs.shape[0]
        return Explanation(
            maps=cam_to_maps(cam, (inputs.shape[-2], inputs.shape[-1])),
            targets=grad.targets,
            scores=grad.scores,
            forward_passes=torch.ones(n, dtype=torch.long, device=inputs.device),
            method=self.name,
            extras={"layer": name, "weights": weights, "cam": cam},
        )


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


class GradCAMPlusPlus(LayerExplainer):
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

    Cost: one forward and one backward pass.

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the explained layer (name or module); ``None``: the last spatial feature map.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
        denominator: ``"paper"`` (Eq. 10) or ``"summed"`` (torch-cam's ``Σ_ab A_ab g_ab³``).
    """

    name = "gradcampp"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind = "softmax",
        denominator: Denominator = "paper",
    ) -> None:
        super().__init__(model, layer, score=score)
        if denominator not in ("paper", "summed"):
            raise SiseError(f"unknown denominator {denominator!r}: use 'paper' or 'summed'")
        self.denominator: Denominator = denominator

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        name, module = self.layer_for(inputs)
        grad = gradient_pass(self.model, [(name, module)], inputs, targets, self.score)
        activation, gradient = grad.activations[0].float(), grad.gradients[0].float()
        check_feature_map(name, activation)
        # Y = Ψ for a probability (softmax, sigmoid class scores), Y = exp(S) for anything else
        exponential = grad.target is not None and grad.target.exponential
        scale = grad.scores if exponential else torch.ones_like(grad.scores)
        alphas = gradcampp_alphas(activation, gradient, scale, self.denominator)
        weights = (alphas * torch.relu(gradient)).sum(dim=(2, 3))
        cam = torch.relu((weights[:, :, None, None] * activation).sum(dim=1))
        n = inputs.shape[0]
        return Explanation(
            maps=cam_to_maps(cam, (inputs.shape[-2], inputs.shape[-1])),
            targets=grad.targets,
            scores=grad.scores,
            forward_passes=torch.ones(n, dtype=torch.long, device=inputs.device),
            method=self.name,
            extras={"layer": name, "weights": weights, "alphas": alphas, "cam": cam},
        )


class ScoreCAM(LayerExplainer):
    """Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
    Neural Networks", CVPR Workshops 2020).

    Each map ``A_k`` becomes a mask ``H_k = s(Up(A_k))`` (bilinear up-sampling, min-max to
    [0, 1]; Eqs. 7-8) and the masked input ``x ⊙ H_k`` is scored. The paper's channel-wise
    increase of confidence (Def. 4, Eq. 6) is ``C_k = Ψ(x ⊙ H_k) − Ψ(x_b)`` and Algorithm 1
    normalises it with a softmax over the channels::

        w_k = exp(C_k) / Σ_k' exp(C_k')       (weights="softmax", the default)
        L   = ReLU(Σ_k w_k A_k)

    The softmax is shift-invariant, so the baseline score cancels: this equals the softmax of the
    masked scores that torch-cam and pytorch-grad-cam compute. ``weights="cic"`` uses
    ``w_k = C_k`` directly (Def. 5, Eq. 10, no normalisation). The paper scores with the
    post-softmax probability (its Sec. 3.2: "We adopt post-softmax value in all other section"),
    i.e. ``score="softmax"``, and uses the baseline ``x_b = 0`` (Sec. 4).

    A constant map has the all-zero mask, whose masked input *is* the baseline: no forward pass
    is spent on it, it gets the baseline's score (``C_k = 0``), which takes one forward pass per
    image, and only for images that have a constant map (or with ``weights="cic"``). Masks of all
    images share full batches (:func:`sise.engine.score_masked`).

    Cost: one forward pass, plus one per non-constant map, plus at most one for the baseline.

    Against pytorch-grad-cam's ``ScoreCAM`` (with ``ClassifierOutputSoftmaxTarget``): the same
    weights; it up-samples the masks with ``align_corners=True`` and min-max normalises ``L``
    before resizing it, where this class uses ``align_corners=False`` and normalises after
    up-sampling (as every method here). The two agree when the layer has the input's size.

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the explained layer (name or module); ``None``: the last spatial feature map.
        score: explained score ``"softmax"`` (paper), ``"sigmoid"`` or ``"logit"``.
        weights: ``"softmax"`` (Algorithm 1) or ``"cic"`` (raw increase of confidence).
        baseline: what masked-out pixels become: ``"zero"`` (paper), ``"blur"`` or a tensor.
        batch_size: masked inputs per forward pass.
        autocast_dtype: e.g. ``torch.bfloat16`` to run the masked forwards under autocast.
        progress: show a progress bar over the masked forwards.
    """

    name = "scorecam"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind = "softmax",
        weights: ScoreCamWeights = "softmax",
        baseline: BaselineSpec = "zero",
        batch_size: int = 64,
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(model, layer, score=score)
        if weights not in ("softmax", "cic"):
            raise SiseError(f"unknown weights {weights!r}: use 'softmax' or 'cic'")
        self.weights: ScoreCamWeights = weights
        self.baseline = baseline
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self.progress = progress

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        name, module = self.layer_for(inputs)
        n, _, height, width = inputs.shape
        with torch.no_grad(), LayerCapture([(name, module)]) as capture:
            logits = self.model(inputs)
        if name not in capture.outputs:
            raise SiseError(f"layer {name!r} was not run by the model's forward pass")
        target, resolved, scores = score_output(logits, targets, self.score, n)
        activation = capture.outputs[name].detach().float()
        check_feature_map(name, activation)
        channels = activation.shape[1]

        maps = activation.flatten(0, 1)  # (N*K, h, w)
        owners = torch.arange(n, device=inputs.device).repeat_interleave(channels)
        constant = is_constant(maps)
        varying = (~constant).nonzero().squeeze(1)
        has_constant = torch.zeros(n, dtype=torch.bool, device=inputs.device)
        has_constant[owners[constant]] = True
        needs_baseline = torch.ones_like(has_constant) if self.weights == "cic" else has_constant
        baseline_images = needs_baseline.nonzero().squeeze(1)
        sources: list[MaskSource] = [
            UpsampledMaps(maps[varying], owners[varying], (height, width)),
            TensorMasks(
                torch.zeros(len(baseline_images), height, width, device=inputs.device),
                baseline_images,
            ),
        ]
        source = ConcatMasks(sources)
        masked_scores = score_masked(
            self.model,
            inputs,
            target,
            source,
            score=self.score,
            baseline=make_baseline(inputs, self.baseline),
            batch_size=self.batch_size,
            autocast_dtype=self.autocast_dtype,
            progress="Score-CAM masked forwards" if self.progress else None,
        )
        # NaN where the baseline was not scored (no image map needed it)
        baseline_scores = torch.full((n,), float("nan"), device=inputs.device)
        baseline_scores[baseline_images] = masked_scores[len(varying) :]
        channel_scores = baseline_scores[owners].clone()  # a constant map scores as the baseline
        channel_scores[varying] = masked_scores[: len(varying)]
        channel_scores = channel_scores.view(n, channels)
        if self.weights == "softmax":
            weights = torch.softmax(channel_scores, dim=1)
        else:
            weights = channel_scores - baseline_scores[:, None]
        cam = torch.relu((weights[:, :, None, None] * activation).sum(dim=1))
        forward_passes = 1 + torch.bincount(owners[varying], minlength=n) + needs_baseline.long()
        return Explanation(
            maps=cam_to_maps(cam, (height, width)),
            targets=resolved,
            scores=scores,
            forward_passes=forward_passes,
            method=self.name,
            extras={
                "layer": name,
                "weights": weights,
                "channel_scores": channel_scores,
                "baseline_scores": baseline_scores,
                "cam": cam,
            },
        )
