"""Grad-CAM, Grad-CAM++ and Score-CAM: by hand on the 3x3 hand network, against Captum,
pytorch-grad-cam, torch-cam and the Score-CAM authors' algorithm where they define the same
quantity; the CAM extension point; option checking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sise.core.postprocess import minmax_normalize, upsample
from sise.errors import SiseError
from sise.methods import GradCAM, GradCAMPlusPlus, ScoreCAM
from sise.methods.cam import CAMContext, CAMExplainer, ChannelWeights
from sise.methods.registry import METHODS, make_explainer


def as_map(grid: list[list[float]]) -> torch.Tensor:
    return torch.tensor(grid).view(1, 3, 3)


def cam_from_weights(net, weights: list[float]) -> torch.Tensor:
    """minmax(relu(Σ_k w_k A_k)) on the hand input, in plain Python."""
    maps, _ = net.by_hand(net.X)
    grid = [
        [max(0.0, sum(weights[k] * maps[k][i][j] for k in range(2))) for j in range(3)]
        for i in range(3)
    ]
    return as_map(net.minmax(grid))


def test_hand_network_logits(hand_net, hand_x):
    # z0 = 0.25·(1 - 2 + 2 + 3 - 2 + 1) + 0.25·(-2 + 2 - 2) + 0.1 = 0.75 - 0.5 + 0.1 = 0.35
    # z1 = 0.25·(2 - 3) + 0.25·(1 - 1 + 1) - 0.1 = -0.1
    _, logits = hand_net.by_hand(hand_net.X)
    assert logits == pytest.approx([0.35, -0.1])
    assert hand_net(hand_x)[0].tolist() == pytest.approx([0.35, -0.1])


# ---------------------------------------------------------------------------------- Grad-CAM


def test_gradcam_by_hand(hand_net, hand_x):
    # The head is linear in A, so ∂z0/∂A_k = W[0][k]; w_k is its mean:
    # w_0 = 0.25·(1 - 1 + 2 + 1 - 1 + 1)/9 = 1/12, w_1 = 0.25·(1 - 1 + 1 + 2 - 1)/9 = 1/18.
    # L = A_0/12 + A_1/18 = [[5/36, 1/6, 1/9], [1/9, 5/36, 1/4], [1/6, 1/9, 5/36]],
    # min 1/9, max 1/4 → [[.2, .4, 0], [0, .2, 1], [.4, 0, .2]].
    explanation = GradCAM(hand_net, "features", score="logit")(hand_x)
    assert explanation.extras["weights"][0].tolist() == pytest.approx([1 / 12, 1 / 18])
    expected = torch.tensor([[0.2, 0.4, 0.0], [0.0, 0.2, 1.0], [0.4, 0.0, 0.2]])
    torch.testing.assert_close(explanation.maps[0], expected, atol=1e-6, rtol=0)
    assert explanation.targets.tolist() == [0]
    assert explanation.scores.tolist() == pytest.approx([0.35])
    assert explanation.forward_passes.tolist() == [1]


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_gradcam_matches_captum_layer_gradcam(small_cnn, score):
    from captum.attr import LayerGradCam

    torch.manual_seed(1)
    inputs = torch.randn(3, 3, 16, 16)
    layer = small_cnn.features[5]  # an 8x8 map: the up-sampling is exercised
    ours = GradCAM(small_cnn, layer, score=score)(inputs, [0, 2, 4])

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = small_cnn(x)
        return out if score == "logit" else torch.softmax(out, dim=1)

    cam = LayerGradCam(forward, layer).attribute(inputs, target=[0, 2, 4], relu_attributions=True)
    reference = minmax_normalize(upsample(cam[:, 0].detach(), (16, 16)))
    torch.testing.assert_close(ours.maps, reference, atol=1e-5, rtol=0)


def test_gradcam_default_layer_is_last_feature_map(small_cnn):
    explainer = GradCAM(small_cnn)
    inputs = torch.randn(2, 3, 16, 16)
    explanation = explainer(inputs)
    assert explanation.extras["layer"] == "features"
    assert explanation.maps.shape == (2, 16, 16)
    assert explainer.layer_for(inputs)[0] == "features"


def test_layer_must_be_a_feature_map(small_cnn):
    with pytest.raises(SiseError, match="feature map"):
        GradCAM(small_cnn, "head")(torch.randn(1, 3, 16, 16))
    with pytest.raises(SiseError, match="one layer"):
        GradCAM(small_cnn, ["features"])  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- Grad-CAM++

# Hand network, logit of class 0: g = ∂z0/∂A_k = W[0][k]; Σ A_0 = 10, Σ A_1 = 9.
# Paper (Eq. 10 with Y = exp(S)): α_ij = g² / (2 g² + g³ Σ_ab A_ab) = 1 / (2 + g_ij Σ A).
#   channel 0: positive g = .25 (three times, α = 1/4.5) and .5 (α = 1/7):
#     w_0 = .25·3/4.5 + .5/7 = 1/6 + 1/14 = 5/21
#   channel 1: positive g = .25 (twice, α = 1/4.25) and .5 (α = 1/6.5):
#     w_1 = .25·2/4.25 + .5/6.5 = 2/17 + 1/13 = 43/221
# Summed variant: α_ij = g² / (2 g² + Σ_ab A_ab g_ab³), Σ A_0 g³ = 9/64, Σ A_1 g³ = -1/32:
#   channel 0: α(.25) = .0625/(.125 + 9/64) = 4/17, α(.5) = .25/(.5 + 9/64) = 16/41,
#     w_0 = .25·3·4/17 + .5·16/41 = 259/697
#   channel 1: α(.25) = .0625/(.125 - 1/32) = 2/3, α(.5) = .25/(.5 - 1/32) = 8/15,
#     w_1 = .25·2·2/3 + .5·8/15 = 3/5
PAPER_WEIGHTS = [5 / 21, 43 / 221]
SUMMED_WEIGHTS = [259 / 697, 3 / 5]


@pytest.mark.parametrize(
    ("denominator", "weights"), [("paper", PAPER_WEIGHTS), ("summed", SUMMED_WEIGHTS)]
)
def test_gradcampp_by_hand(hand_net, hand_x, denominator, weights):
    explanation = GradCAMPlusPlus(hand_net, "features", score="logit", denominator=denominator)(
        hand_x
    )
    assert explanation.extras["weights"][0].tolist() == pytest.approx(weights, rel=1e-6)
    torch.testing.assert_close(
        explanation.maps, cam_from_weights(hand_net, weights), atol=1e-6, rtol=0
    )


def test_gradcampp_softmax_uses_log_score(hand_net, hand_x):
    # Ψ = p0 = exp(S) with S = log p0 = z0 - logsumexp(z): g = ∂S/∂A = p1 (W0 - W1) for two
    # classes, α = 1 / (2 + g ΣA) where g ≠ 0, and w_k = Σ α relu(∂Ψ/∂A) with ∂Ψ/∂A = p0 g.
    maps, logits = hand_net.by_hand(hand_net.X)
    p0, p1 = hand_net.softmax(logits)
    weights = []
    for k in range(2):
        total = sum(maps[k][i][j] for i, j in hand_net.POSITIONS)
        w = 0.0
        for i, j in hand_net.POSITIONS:
            g = p1 * (hand_net.HEAD_W[0][k][i][j] - hand_net.HEAD_W[1][k][i][j])
            if g != 0:
                w += 1 / (2 + g * total) * max(0.0, p0 * g)
        weights.append(w)
    explanation = GradCAMPlusPlus(hand_net, "features")(hand_x)
    assert explanation.extras["weights"][0].tolist() == pytest.approx(weights, rel=1e-5)
    torch.testing.assert_close(
        explanation.maps, cam_from_weights(hand_net, weights), atol=1e-5, rtol=0
    )


def test_gradcampp_denominators_agree_for_constant_gradients(gap_net):
    # Under global average pooling g is constant over each map: g³ ΣA = Σ A g³.
    inputs = torch.rand(2, 1, 5, 5) * 3
    paper = GradCAMPlusPlus(gap_net, "features", denominator="paper")(inputs)
    summed = GradCAMPlusPlus(gap_net, "features", denominator="summed")(inputs)
    torch.testing.assert_close(paper.maps, summed.maps)


def test_gradcampp_zero_gradient_gives_zero_alpha_not_nan(hand_net, hand_x):
    with torch.no_grad():
        hand_net.head[1].weight.zero_()
    explanation = GradCAMPlusPlus(hand_net, "features", score="logit")(hand_x)
    assert torch.isfinite(explanation.maps).all()
    assert explanation.maps.abs().sum() == 0
    assert explanation.extras["alphas"].abs().sum() == 0


def test_gradcampp_matches_pytorch_grad_cam(hand_net, hand_x):
    """pytorch-grad-cam computes the paper's denominator (g³ · Σ A) on the logit; it adds 1e-6 to
    the denominator, hence the tolerance."""
    from pytorch_grad_cam import GradCAMPlusPlus as PgcGradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = GradCAMPlusPlus(hand_net, "features", score="logit")(hand_x)
    reference = PgcGradCAMPlusPlus(model=hand_net, target_layers=[hand_net.features])(
        input_tensor=hand_x, targets=[ClassifierOutputTarget(0)]
    )
    np.testing.assert_allclose(ours.maps.numpy(), reference, atol=1e-4)
    # and it is *not* the summed (torch-cam) variant, whose map differs here
    summed = GradCAMPlusPlus(hand_net, "features", score="logit", denominator="summed")(hand_x)
    assert not np.allclose(summed.maps.numpy(), reference, atol=1e-2)


# --------------------------------------------------------------------------------- Score-CAM

_WEIGHTS = ("score", "cic", "softmax")


def hand_scorecam_scores(net, target: int = 0) -> list[float]:
    """p_c(x ⊙ H_k) with H_k = minmax(A_k) (no up-sampling at 3x3), in plain Python."""
    x = net.X
    maps, _ = net.by_hand(x)
    scores = []
    for k in range(2):
        mask = net.minmax(maps[k])
        masked = [[x[i][j] * mask[i][j] for j in range(3)] for i in range(3)]
        scores.append(net.softmax(net.by_hand(masked)[1])[target])
    return scores


def test_scorecam_default_by_hand(hand_net, hand_x):
    # H_0 = A_0/3, H_1 = A_1/2.
    # x ⊙ H_0 = [[1/3, 4/3, 0], [0, 1/3, 3], [4/3, 0, 1/3]]: A_0 = that, A_1 = relu(2 - that);
    #   z0 = 0.25·(5/3) + 0 + 0.1 = 0.5167, z1 = -0.4167 + 0.4167 - 0.1 = -0.1,
    #   p0 = sigmoid(0.6167) = 0.6495.
    # x ⊙ H_1 = 0.5 on the diagonal, 0 elsewhere: A_0 = 0.5 diag, A_1 = 1.5 diag / 2 elsewhere;
    #   z0 = 0.25·2 + 0.25·4 + 0.1 = 1.6, z1 = 0.25·1.5 - 0.1 = 0.275, p0 = sigmoid(1.325) = 0.7900.
    # Default weights (the authors' code): w_k = p0(x ⊙ H_k), no softmax over channels.
    # L = w_0 A_0 + w_1 A_1 = [[w0+w1, 2w0, 2w1], [2w1, w0+w1, 3w0], [2w0, 2w1, w0+w1]] (all ≥ 0),
    # min 2w0, max 3w0: with r = (w1 - w0)/w0 the map is [[r, 0, 2r], [2r, r, 1], [0, 2r, r]].
    w0, w1 = 1 / (1 + math.exp(-(5 / 12 + 0.2))), 1 / (1 + math.exp(-1.325))
    assert hand_scorecam_scores(hand_net) == pytest.approx([w0, w1], rel=1e-12)
    assert [w0, w1] == pytest.approx([0.6495, 0.7900], abs=1e-4)
    r = (w1 - w0) / w0
    expected = torch.tensor([[r, 0, 2 * r], [2 * r, r, 1], [0, 2 * r, r]])[None]
    explanation = ScoreCAM(hand_net, "features")(hand_x)
    assert explanation.extras["weights"][0].tolist() == pytest.approx([w0, w1], rel=1e-5)
    assert explanation.extras["channel_scores"][0].tolist() == pytest.approx([w0, w1], rel=1e-5)
    torch.testing.assert_close(explanation.maps, expected.float(), atol=1e-6, rtol=0)
    assert explanation.forward_passes.tolist() == [3]  # clean + 2 masked, no baseline needed
    assert math.isnan(explanation.extras["baseline_scores"].item())


def test_scorecam_softmax_weights_by_hand(hand_net, hand_x):
    # Algorithm 1: w = softmax over channels of the scores (the baseline's score cancels).
    scores = hand_scorecam_scores(hand_net)
    weights = hand_net.softmax(scores)
    explanation = ScoreCAM(hand_net, "features", weights="softmax")(hand_x)
    assert explanation.extras["weights"][0].tolist() == pytest.approx(weights, rel=1e-5)
    torch.testing.assert_close(
        explanation.maps, cam_from_weights(hand_net, weights), atol=1e-6, rtol=0
    )
    assert explanation.forward_passes.tolist() == [3]


def test_scorecam_cic_weights_by_hand(hand_net, hand_x):
    # C_k = p0(x ⊙ H_k) - p0(0); at x = 0, A_0 = 0 and A_1 = 2 everywhere.
    scores = hand_scorecam_scores(hand_net)
    baseline = hand_net.softmax(hand_net.by_hand([[0.0] * 3] * 3)[1])[0]
    cic = [s - baseline for s in scores]
    explanation = ScoreCAM(hand_net, "features", weights="cic")(hand_x)
    assert explanation.extras["weights"][0].tolist() == pytest.approx(cic, rel=1e-5)
    assert explanation.extras["baseline_scores"].tolist() == pytest.approx([baseline], rel=1e-6)
    assert explanation.forward_passes.tolist() == [4]  # + the baseline
    torch.testing.assert_close(explanation.maps, cam_from_weights(hand_net, cic), atol=1e-6, rtol=0)


def test_scorecam_weights_differ_on_the_hand_network(hand_net, hand_x):
    """The three variants are different maps here, so the by-hand tests tell them apart."""
    maps = {w: ScoreCAM(hand_net, "features", weights=w)(hand_x).maps for w in _WEIGHTS}
    assert not torch.allclose(maps["score"], maps["softmax"], atol=1e-2)
    assert not torch.allclose(maps["cic"], maps["softmax"], atol=1e-2)


@pytest.mark.parametrize(
    ("weights", "passes", "constant_weight"),
    [("score", 2, 0.0), ("cic", 3, 0.0), ("softmax", 3, None)],
)
def test_scorecam_constant_map(hand_net, hand_x, weights, passes, constant_weight):
    # With w_1 = 0, A_1 = relu(2) = 2 is constant: its mask is all zero and x ⊙ 0 is the
    # baseline, so no forward pass is spent on it. "score" gives it weight 0 (the authors' code
    # skips it) and needs no baseline; "cic" gives it C = 0; "softmax" scores the baseline once.
    with torch.no_grad():
        hand_net.features[0].weight[1] = 0.0
        baseline_score = float(torch.softmax(hand_net(torch.zeros_like(hand_x)), dim=1)[0, 0])
    explanation = ScoreCAM(hand_net, "features", weights=weights)(hand_x)
    assert explanation.forward_passes.tolist() == [passes]  # clean + 1 masked (+ baseline)
    channel_scores = explanation.extras["channel_scores"][0]
    if weights == "score":
        assert math.isnan(channel_scores[1].item())
    else:
        assert channel_scores[1].item() == pytest.approx(baseline_score)
    if constant_weight is not None:
        assert explanation.extras["weights"][0, 1].item() == constant_weight
    assert torch.isfinite(explanation.maps).all() and explanation.maps.max() == 1.0


def authors_scorecam(
    model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM as the authors' code computes it (haofanwang/Score-CAM, cam/scorecam.py, MIT),
    restated from its algorithm for one image: for each channel, up-sample A_k (bilinear,
    align_corners=False); skip it if constant; mask the input with its min-max normalisation;
    add p_c(x ⊙ H_k) · Up(A_k) to the map; ReLU; min-max. Returns the map and the weights."""
    captured = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    with torch.no_grad():
        model(x)
        handle.remove()
        activation = captured[0]
        size = x.shape[-2:]
        total = torch.zeros(1, 1, *size)
        weights = torch.zeros(activation.shape[1])
        for k in range(activation.shape[1]):
            up = F.interpolate(activation[:, k : k + 1], size=size, mode="bilinear")
            if up.max() == up.min():
                continue
            mask = (up - up.min()) / (up.max() - up.min())
            weights[k] = F.softmax(model(x * mask), dim=1)[0, target]
            total += weights[k] * up
        total = F.relu(total)
        return ((total - total.min()) / (total.max() - total.min()))[0, 0], weights


def test_scorecam_default_matches_the_authors_code(small_cnn):
    """The authors sum p_c · Up(A_k) at the input's resolution, we up-sample ReLU(Σ p_c A_k): on
    a layer after a ReLU (A ≥ 0) with probabilities as weights the two are the same map. The
    8x8 layer of a 16x16 input exercises the up-sampling and min-max of the masks."""
    torch.manual_seed(4)
    inputs = torch.randn(2, 3, 16, 16)
    layer = small_cnn.features[5]
    ours = ScoreCAM(small_cnn, layer)(inputs, [1, 3])
    for i, target in enumerate([1, 3]):
        reference, weights = authors_scorecam(small_cnn, layer, inputs[i : i + 1], target)
        torch.testing.assert_close(ours.extras["weights"][i], weights, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ours.maps[i], reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("constant_channel", [False, True])
@pytest.mark.parametrize("score", ["softmax", "logit"])
def test_scorecam_softmax_weights_match_pytorch_grad_cam(hand_net, hand_x, constant_channel, score):
    """pytorch-grad-cam's ScoreCAM is Algorithm 1's channel softmax of the target's score:
    ``ClassifierOutputSoftmaxTarget`` is ``score="softmax"``, its default
    ``ClassifierOutputTarget`` is ``score="logit"``."""
    from pytorch_grad_cam import ScoreCAM as PgcScoreCAM
    from pytorch_grad_cam.utils.model_targets import (
        ClassifierOutputSoftmaxTarget,
        ClassifierOutputTarget,
    )

    if constant_channel:
        with torch.no_grad():
            hand_net.features[0].weight[1] = 0.0
    target = ClassifierOutputSoftmaxTarget(0) if score == "softmax" else ClassifierOutputTarget(0)
    ours = ScoreCAM(hand_net, "features", weights="softmax", score=score)(hand_x)
    reference = PgcScoreCAM(model=hand_net, target_layers=[hand_net.features])(
        input_tensor=hand_x, targets=[target]
    )
    np.testing.assert_allclose(ours.maps.numpy(), reference, atol=1e-5)
    if not constant_channel:  # (with one map constant, every variant is min-max(A_0))
        default = ScoreCAM(hand_net, "features", score=score)(hand_x)
        assert not np.allclose(default.maps.numpy(), reference, atol=1e-2)


@pytest.mark.parametrize("constant_channel", [False, True])
def test_scorecam_softmax_logit_matches_torchcam(hand_net, hand_x, constant_channel):
    """torch-cam's ScoreCAM (0.5) weights the maps by the channel softmax of the target's logit
    (minus the clean input's logit, which cancels): ``weights="softmax", score="logit"``."""
    torchcam = pytest.importorskip("torchcam.methods")
    if constant_channel:
        with torch.no_grad():
            hand_net.features[0].weight[1] = 0.0
    ours = ScoreCAM(hand_net, "features", weights="softmax", score="logit")(hand_x)
    with torchcam.ScoreCAM(hand_net, "features", input_shape=(1, 3, 3)) as extractor:
        with torch.no_grad():
            hand_net(hand_x)
        reference = extractor(class_idx=0)[0]
    torch.testing.assert_close(ours.maps, reference, atol=1e-6, rtol=0)
    if not constant_channel:  # (with one map constant, every variant is min-max(A_0))
        default = ScoreCAM(hand_net, "features")(hand_x)
        assert not torch.allclose(default.maps, reference, atol=1e-2)


def test_scorecam_batches_images_together(small_cnn):
    torch.manual_seed(2)
    inputs = torch.randn(3, 3, 16, 16)
    for weights in _WEIGHTS:
        together = ScoreCAM(small_cnn, batch_size=7, weights=weights)(inputs, [1, 2, 3])
        for i in range(3):
            alone = ScoreCAM(small_cnn, batch_size=64, weights=weights)(
                inputs[i : i + 1], [1, 2, 3][i]
            )
            torch.testing.assert_close(together.maps[i : i + 1], alone.maps, atol=1e-5, rtol=1e-4)
            assert together.forward_passes[i] == alone.forward_passes[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weights": "probability"}, "unknown weights"),
        ({"weights": None}, "unknown weights"),
        ({"score": "prob"}, "unknown score"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": "many"}, "batch_size"),
        ({"baseline": "black"}, "unknown baseline"),
        ({"baseline": 0.0}, "unknown baseline"),
        ({"baseline": torch.tensor([float("nan")])}, "NaN"),
        ({"baseline": torch.zeros(3, dtype=torch.long)}, "floating point"),
        ({"autocast_dtype": torch.int8}, "autocast_dtype"),
        ({"autocast_dtype": "bf16"}, "autocast_dtype"),
        ({"progress": "yes"}, "progress"),
    ],
)
def test_scorecam_rejects_bad_options(small_cnn, options, message):
    with pytest.raises(SiseError, match=message):
        ScoreCAM(small_cnn, **options)


def test_scorecam_accepts_its_documented_options(small_cnn):
    for options in (
        {"weights": "cic", "baseline": "blur", "batch_size": "auto"},
        {"baseline": torch.zeros(1, 3, 16, 16), "autocast_dtype": torch.bfloat16},
        {"baseline": None, "progress": False, "score": "logit"},
    ):
        explanation = ScoreCAM(small_cnn, **options)(torch.randn(1, 3, 16, 16))
        assert torch.isfinite(explanation.maps).all()


@pytest.mark.parametrize("denominator", ["Paper", None, 1])
def test_gradcampp_rejects_bad_denominator(small_cnn, denominator):
    with pytest.raises(SiseError, match="unknown denominator"):
        GradCAMPlusPlus(small_cnn, denominator=denominator)


# ----------------------------------------------------------------------- the extension point


class XGradCAM(CAMExplainer):
    """A CAM written on the extension point: XGrad-CAM's ``w_k = Σ (A_k / Σ A_k) ∂Ψ/∂A_k``."""

    name = "xgradcam"

    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        a, g = context.activation, context.gradient
        share = a / a.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        return ChannelWeights((share * g).sum(dim=(2, 3)), extras={"share": share})


def test_a_new_cam_only_computes_its_weights(hand_net, hand_x):
    # Logit of class 0: g = W[0][k], Σ A_0 = 10, Σ A_1 = 9.
    # w_0 = Σ A_0 W00 / 10 = (.25 - .5 + 0 + 0 + .5 + .75 - .5 + 0 + .25)/10 = .75/10 = 3/40
    # w_1 = Σ A_1 W01 / 9 = (0 + 0 - .5 + .5 + 0 + 0 + 0 - .5 + 0)/9 = -1/18
    explanation = XGradCAM(hand_net, "features", score="logit")(hand_x)
    assert explanation.extras["weights"][0].tolist() == pytest.approx([3 / 40, -1 / 18])
    torch.testing.assert_close(
        explanation.maps, cam_from_weights(hand_net, [3 / 40, -1 / 18]), atol=1e-6, rtol=0
    )
    assert explanation.method == "xgradcam"
    assert explanation.forward_passes.tolist() == [1]
    assert set(explanation.extras) == {"layer", "weights", "share", "cam"}


class _BadShapeCAM(CAMExplainer):
    name = "bad"

    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        return ChannelWeights(context.gradient.mean(dim=(1, 2, 3)))


class _ForwardOnlyCAM(CAMExplainer):
    name = "forward-only"
    uses_gradients = False

    def channel_weights(self, context: CAMContext) -> ChannelWeights:
        return ChannelWeights(context.gradient.mean(dim=(2, 3)))


def test_extension_point_errors(hand_net, hand_x):
    with pytest.raises(SiseError, match=r"expected \(images, channels\) = \(1, 2\)"):
        _BadShapeCAM(hand_net, "features")(hand_x)
    with pytest.raises(SiseError, match="uses_gradients = True"):
        _ForwardOnlyCAM(hand_net, "features")(hand_x)


def test_non_finite_weights_are_an_error(hand_net, hand_x):
    # an infinite head weight makes ∂z0/∂A infinite: an error, not a blank map
    with torch.no_grad():
        hand_net.head[1].weight[0, 0] = float("inf")
    with pytest.raises(SiseError, match=r"NaN|[Ii]nf"):
        GradCAM(hand_net, "features", score="logit")(hand_x)


# ------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("name", ["gradcam", "gradcampp", "scorecam"])
def test_cam_methods_leave_the_model_as_they_found_it(small_cnn, model_state, name):
    small_cnn.train()
    small_cnn.features[0].weight.requires_grad_(False)
    state = model_state(small_cnn)
    inputs = torch.randn(2, 3, 16, 16)
    explanation = make_explainer(name, small_cnn)(inputs)
    state.assert_unchanged()
    assert not inputs.requires_grad
    assert explanation.maps.shape == (2, 16, 16)
    assert explanation.maps.min() >= 0 and explanation.maps.max() <= 1
    assert explanation.method == name
    assert name in METHODS
