"""Class activation maps: Grad-CAM, Grad-CAM++ and Score-CAM, on one small extension point.

Every CAM weights the K feature maps ``A_k`` of one convolutional layer (by default the last
spatial feature map of the network, the last layer :func:`sise.core.layers.discover_layers` finds) and
forms ``L = ReLU(Σ_k w_k A_k)``, which is bilinearly up-sampled to the input size
(``align_corners=False``) and min-max normalised to [0, 1]. Only the weights ``w_k`` differ:

* Grad-CAM: the spatial mean of the gradient of the explained score.
* Grad-CAM++: a pixel-weighted sum of the positive gradients, with the paper's closed-form
  weights.
* Score-CAM: the score of the input masked by each (up-sampled, normalised) map, computed with the
  batched masked-scoring engine.

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

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal, TypeVar, cast, get_args

import torch
from torch import Tensor, nn

from sise.core.hooks import LayerCapture, forward_scores, gradient_pass
from sise.core.layers import LayerSpec, check_feature_map
from sise.core.postprocess import is_constant, minmax_normalize, upsample
from sise.core.scores import ScoreKind
from sise.errors import SiseError
from sise.methods.base import Explanation, LayerExplainer, Targets
from sise.runtime.device import BatchSize
from sise.runtime.engine import (
    BaselineSpec,
    ConcatMasks,
    MaskSource,
    TensorMasks,
    UpsampledMaps,
    make_baseline,
    score_masked,
)
from sise.targets import Target

Denominator = Literal["paper", "summed"]
ScoreCamWeights = Literal["score", "cic", "softmax"]

_DENOMINATORS: tuple[Denominator, ...] = get_args(Denominator)
_SCORECAM_WEIGHTS: tuple[ScoreCamWeights, ...] = get_args(ScoreCamWeights)
_AUTOCAST_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


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

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the explained layer (name or module); ``None``: the last spatial feature map.
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
    """

    #: Whether :meth:`channel_weights` needs ``context.gradient``.
    uses_gradients: ClassVar[bool] = True

    @abstractmethod
    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        """The (N, K) weights of the maps ``context.activation``."""

    def _explain(self, inputs: Tensor, targets: Targets) -> Explanation:
        name, module = self.layer_for(inputs)
        context = self._capture(name, module, inputs, targets)
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
        self, name: str, module: nn.Module, inputs: Tensor, targets: Targets
    ) -> CAMContext:
        gradient: Tensor | None = None
        if self.uses_gradients:
            grad = gradient_pass(self.model, [(name, module)], inputs, targets, self.score)
            activation, gradient = grad.activations[0].float(), grad.gradients[0].float()
            resolved, scores, target = grad.targets, grad.scores, grad.target
        else:
            with LayerCapture([(name, module)]) as capture:
                target, resolved, scores = forward_scores(self.model, inputs, targets, self.score)
            if name not in capture.outputs:
                raise SiseError(f"layer {name!r} was not run by the model's forward pass")
            activation = capture.outputs[name].detach().float()
        check_feature_map(name, activation)
        return CAMContext(name, inputs, activation, resolved, scores, gradient, target)


# -------------------------------------------------------------------------- option checking


_Choice = TypeVar("_Choice", bound=str)


def _check_choice(option: str, value: object, choices: tuple[_Choice, ...]) -> _Choice:
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise SiseError(f"unknown {option} {value!r}: use one of {listed}")
    return cast(_Choice, value)


def _check_batch_size(value: object) -> BatchSize:
    if isinstance(value, str) and value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SiseError(
            f"batch_size must be a positive integer (masked inputs per forward pass) or 'auto', "
            f"got {value!r}"
        )
    return value


def _check_baseline(value: object) -> BaselineSpec:
    if value is None or (isinstance(value, str) and value in ("zero", "blur")):
        return value
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise SiseError(
                f"a baseline tensor must be floating point, got {value.dtype}: pass it as a "
                "model-ready (normalised) image"
            )
        if not bool(torch.isfinite(value).all()):
            raise SiseError("the baseline tensor holds NaN or Inf values: pass finite values")
        return value
    raise SiseError(f"unknown baseline {value!r}: use 'zero', 'blur' or a tensor")


def _check_autocast_dtype(value: object) -> torch.dtype | None:
    if value is None or (isinstance(value, torch.dtype) and value in _AUTOCAST_DTYPES):
        return value
    raise SiseError(
        f"autocast_dtype must be None, torch.bfloat16, torch.float16 or torch.float32, got {value!r}"
    )


def _check_flag(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SiseError(f"{option} must be True or False, got {value!r}")
    return value


# ------------------------------------------------------------------------------------ Grad-CAM


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
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.

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

    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        """``w_k``: the spatial mean of ``∂Ψ_c/∂A_k``."""
        return ChannelWeights(context.gradient.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------- Grad-CAM++


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
        score: explained score ``"softmax"``, ``"sigmoid"`` or ``"logit"``.
        denominator: ``"paper"`` (Eq. 10) or ``"summed"`` (torch-cam's ``Σ_ab A_ab g_ab³``).

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

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind = "softmax",
        denominator: Denominator = "paper",
    ) -> None:
        super().__init__(model, layer, score=score)
        self.denominator = _check_choice("denominator", denominator, _DENOMINATORS)

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


# ---------------------------------------------------------------------------------- Score-CAM


class ScoreCAM(CAMExplainer):
    """Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
    Neural Networks", CVPR Workshops 2020).

    Each map ``A_k`` becomes a mask ``H_k = s(Up(A_k))`` (bilinear up-sampling, then min-max to
    [0, 1]), the masked input ``x ⊙ H_k`` is scored, and::

        L = ReLU(Σ_k w_k A_k)

    with, as ``weights`` chooses (``x_b`` the baseline, Ψ_c the explained score)::

        "score"   (default)  w_k = Ψ_c(x ⊙ H_k)                       the authors' code
        "cic"                w_k = Ψ_c(x ⊙ H_k) − Ψ_c(x_b)             the paper's CIC
        "softmax"            w_k = softmax_k(Ψ_c(x ⊙ H_k) − Ψ_c(x_b))  the paper's Algorithm 1

    Which of these is the paper's Score-CAM? The paper defines the weight as the channel-wise
    increase of confidence (CIC) ``Ψ_c(x ⊙ H_k) − Ψ_c(x_b)`` and says, in Sec. 3.2
    "Normalization on Score", that the score is the *post-softmax* class probability, which
    makes the map class-discriminative. Its Algorithm 1 adds a softmax over the channels of the
    CICs (third line from its end). The authors' public code
    (``haofanwang/Score-CAM``, ``cam/scorecam.py``, MIT) weights each map by the class
    probability of its masked input, with neither the baseline term nor the channel softmax, and
    gives a constant map weight 0; asked about the difference (issues #6 and #17 of that
    repository), the first author answered that all the paper's experiments use a black
    (all-zero) baseline, which the code therefore leaves out, and that the probabilities already
    lie in [0, 1], so no further normalisation is needed. The default is therefore the authors' code
    with ``score="softmax"``: ``w_k = p_c(x ⊙ H_k)``. ``"cic"`` is the same up to the baseline's
    probability (here about 0.001), which it subtracts.

    The channel softmax of Algorithm 1 is *not* the default because with probabilities it
    flattens the weights: the ``p_c(x ⊙ H_k)`` lie in [0, 1], so ``exp(p_k)`` varies by a factor
    of at most e and the map drifts towards the unweighted sum of the channels (on the photos
    below the largest of the 1,280 weights is only 1.6-2.3 times the smallest). torch-cam and
    pytorch-grad-cam (with its default ``ClassifierOutputTarget``) apply the channel softmax to
    *logits* (``weights="softmax", score="logit"``), whose spread is large enough, but that is
    not the paper's post-softmax score.

    Evidence: energy-based pointing game (EBPG, % of the map's energy inside a hand-measured
    object box, on the 224x224 input) with the real ImageNet EfficientNet-Lite0 of
    :func:`sise.models.loading.load_model`, at the default layer ``bn2`` (1,280 maps of 7x7). Boxes
    (x0, y0, x1, y1) in the photos' pixels: espresso cup (170, 15, 420, 300) in the package's
    ``coffee.jpg``; the cat (0, 0, 375, 300) in ``chelsea.jpg`` ("Egyptian cat"); the motorcycle
    (90, 75, 685, 450) in scikit-image's ``stereo_motorcycle()`` left image ("moped"); the
    rocket (300, 125, 340, 410) in scikit-image's ``rocket()``, explained as "missile" (the
    model's second class there, p = 0.07; its first is "drilling platform")::

        weights, score                  coffee  cat   motorcycle  rocket  mean
        "score", softmax (default)       70.6   94.2     90.9      11.3   66.8
        "cic", softmax                   70.7   94.2     91.0      11.3   66.8
        "softmax", softmax (old default) 66.8   93.7     82.5      11.4   63.6
        "softmax", logit (torch-cam)     70.7   94.0     90.0      10.9   66.4
        "score", logit                   69.6   94.5     90.4      11.3   66.4
        Grad-CAM, softmax                66.2   93.0     84.2      16.4   65.0
        centred Gaussian (σ = 56 px)     53.2   92.6     84.5       8.3   59.6
        uniform map (the box's area)     30.0   83.0     60.3       4.2   44.4

    Every variant points inside each box (pointing game 4/4). The default beats the old one on
    three photos of four and is 0.1 below it on the rocket; the channel softmax of probabilities falls
    below the centred Gaussian on the motorcycle. At the shallower ``blocks.6`` (320 maps) the
    means are 47.6 (default), 44.7 (old default) and 53.3 (softmax of logits): there every
    variant puts most of the cat photo's energy on the background.

    Details. A constant map has the all-zero mask, whose masked input *is* the baseline: no
    forward pass is spent on it; it gets weight 0 with ``"score"`` (as the authors' code) and
    ``"cic"``, and ``C_k = 0`` inside the softmax. The baseline ``x_b`` is scored (one forward pass
    per image) for ``"cic"``, and for ``"softmax"`` only for images that have a constant map (the
    softmax is shift-invariant, so elsewhere ``Ψ_c(x_b)`` cancels). The paper uses ``x_b = 0``
    (``baseline="zero"``: the model's input-space zero, i.e. the normalisation mean, as the
    authors' code, which multiplies the normalised input by the mask). Masks of all images share
    full batches (:func:`sise.runtime.engine.score_masked`). ``extras``: ``channel_scores`` (N, K)
    ``Ψ_c(x ⊙ H_k)`` (for a constant map ``Ψ_c(x_b)`` where the baseline was scored, else NaN),
    ``baseline_scores`` (N,) ``Ψ_c(x_b)`` (NaN where not scored), ``weights``, ``cam``.

    Against the authors' code: it computes ``ReLU(Σ_k w_k Up(A_k))`` at the input's resolution,
    this class ``Up(ReLU(Σ_k w_k A_k))``; bilinear up-sampling is linear, so the two agree
    wherever ``Σ_k w_k A_k ≥ 0``, e.g. for non-negative maps (a layer after a ReLU) and the
    default non-negative weights. Against pytorch-grad-cam's ``ScoreCAM``: ``weights="softmax"``
    with the same score (``ClassifierOutputSoftmaxTarget`` ↔ ``score="softmax"``,
    ``ClassifierOutputTarget`` ↔ ``score="logit"``); it up-samples the masks with
    ``align_corners=True`` and min-max normalises ``L`` before resizing it. Against torch-cam's
    ``ScoreCAM`` (0.5): ``weights="softmax", score="logit"``; it min-max normalises the maps
    before up-sampling them. Both agree with this class when the layer has the input's size.

    Cost: one forward pass, plus one per non-constant map, plus at most one for the baseline.

    Args:
        model: a CNN returning (N, K) class scores.
        layer: the explained layer (name or module); ``None``: the last spatial feature map.
        score: explained score ``"softmax"`` (paper), ``"sigmoid"`` or ``"logit"``.
        weights: ``"score"`` (authors' code, default), ``"cic"`` (Eq. 9) or ``"softmax"``
            (Algorithm 1); see above.
        baseline: what masked-out pixels become: ``"zero"`` (paper), ``"blur"`` or a tensor.
        batch_size: masked inputs per forward pass, or ``"auto"`` (default: as many as fit in
            the free memory on CUDA, :data:`sise.runtime.device.CPU_BATCH_SIZE` on a CPU; see
            :func:`sise.runtime.engine.score_masked`).
        autocast_dtype: e.g. ``torch.bfloat16`` to run the masked forwards under autocast.
        progress: show a progress bar over the masked forwards.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        ...     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        ...     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
        ... ).eval()
        >>> x = torch.randn(2, 3, 32, 32)  # two model-ready images
        >>> from sise import ScoreCAM
        >>> explanation = ScoreCAM(model)(x, targets=[1, 3])
        >>> explanation.maps.shape, explanation.extras["channel_scores"].shape
        (torch.Size([2, 32, 32]), torch.Size([2, 8]))
    """

    name = "scorecam"
    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind = "softmax",
        weights: ScoreCamWeights = "score",
        baseline: BaselineSpec = "zero",
        batch_size: BatchSize = "auto",
        autocast_dtype: torch.dtype | None = None,
        progress: bool = False,
    ) -> None:
        super().__init__(model, layer, score=score)
        self.weights = _check_choice("weights", weights, _SCORECAM_WEIGHTS)
        self.baseline = _check_baseline(baseline)
        self.batch_size = _check_batch_size(batch_size)
        self.autocast_dtype = _check_autocast_dtype(autocast_dtype)
        self.progress = _check_flag("progress", progress)

    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        """Score the masked inputs ``x ⊙ H_k`` and turn the scores into weights (see above)."""
        inputs, activation = context.inputs, context.activation
        n, channels = activation.shape[:2]
        size = (inputs.shape[-2], inputs.shape[-1])
        device = inputs.device
        maps = activation.flatten(0, 1)  # (N*K, h, w)
        owners = torch.arange(n, device=device).repeat_interleave(channels)
        constant = is_constant(maps)
        varying = (~constant).nonzero().squeeze(1)
        if self.weights == "cic":
            needs_baseline = torch.ones(n, dtype=torch.bool, device=device)
        elif self.weights == "softmax":
            needs_baseline = torch.zeros(n, dtype=torch.bool, device=device)
            needs_baseline[owners[constant]] = True
        else:
            needs_baseline = torch.zeros(n, dtype=torch.bool, device=device)
        baseline_images = needs_baseline.nonzero().squeeze(1)
        sources: list[MaskSource] = [
            UpsampledMaps(maps[varying], owners[varying], size),
            TensorMasks(torch.zeros(len(baseline_images), *size, device=device), baseline_images),
        ]
        masked_scores = score_masked(
            self.model,
            inputs,
            context.target if context.target is not None else context.targets,
            ConcatMasks(sources),
            score=self.score,
            baseline=make_baseline(inputs, self.baseline),
            batch_size=self.batch_size,
            autocast_dtype=self.autocast_dtype,
            progress="Score-CAM masked forwards" if self.progress else None,
        )
        baseline_scores = torch.full((n,), math.nan, device=device)
        baseline_scores[baseline_images] = masked_scores[len(varying) :]
        # a constant map's masked input is the baseline
        channel_scores = baseline_scores[owners].clone()
        channel_scores[varying] = masked_scores[: len(varying)]
        channel_scores = channel_scores.view(n, channels)
        if self.weights == "softmax":
            weights = torch.softmax(channel_scores, dim=1)
        else:
            weights = torch.zeros(n * channels, device=device)
            weights[varying] = masked_scores[: len(varying)]
            weights = weights.view(n, channels)
            if self.weights == "cic":
                weights = torch.where(
                    constant.view(n, channels), 0.0, weights - baseline_scores[:, None]
                )
        extra = torch.bincount(owners[varying], minlength=n) + needs_baseline.long()
        return ChannelWeights(
            weights,
            extra_forward_passes=extra,
            extras={"channel_scores": channel_scores, "baseline_scores": baseline_scores},
        )
