"""Score-CAM: the CAM whose channel weights are the scores of the input masked by each map."""

from __future__ import annotations

import math
from typing import Literal, cast, get_args

import torch
from torch import nn

from sise.core.feature_layout import Reshape
from sise.core.layers import LayerSpec
from sise.core.masks import BaselineSpec, ConcatMasks, MaskSource, TensorMasks, UpsampledMaps
from sise.core.postprocess import is_constant
from sise.core.scores import ScoreKind
from sise.errors import check_choice
from sise.methods.cam import CAMContext, CAMExplainer, ChannelWeights
from sise.methods.masked import MaskedScoring
from sise.runtime import Runtime

ScoreCamWeights = Literal["score", "cic", "softmax"]


class ScoreCAM(MaskedScoring, CAMExplainer):
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
        runtime: how the masked forwards run (batch size, precision, progress bar:
            :class:`sise.Runtime`); ``None``: the defaults.
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
        >>> from sise import ScoreCAM
        >>> explanation = ScoreCAM(model)(x, targets=[1, 3])
        >>> explanation.maps.shape, explanation.extras["channel_scores"].shape
        (torch.Size([2, 32, 32]), torch.Size([2, 8]))
    """

    name = "scorecam"
    uses_gradients = False
    progress_label = "Score-CAM masked forwards"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec | None = None,
        *,
        score: ScoreKind | None = None,
        weights: ScoreCamWeights = "score",
        baseline: BaselineSpec = "zero",
        runtime: Runtime | None = None,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, score=score, runtime=runtime, reshape=reshape)
        self.weights: ScoreCamWeights = cast(
            ScoreCamWeights, check_choice("weights", weights, get_args(ScoreCamWeights))
        )
        self.set_masking_options(baseline=baseline)

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
        masked_scores = self.score_masks(
            inputs,
            context.target if context.target is not None else context.targets,
            ConcatMasks(sources),
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
