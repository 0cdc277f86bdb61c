"""Score-CAM: its three weightings by hand on the 3x3 hand network, against the authors' algorithm,
pytorch-grad-cam and torch-cam, batching, and its options."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sise.errors import SiseError
from sise.methods import ScoreCAM
from sise.methods.registry import make_explainer
from sise.runtime import Runtime

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
        explanation.maps, hand_net.cam_from_weights(weights), atol=1e-6, rtol=0
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
    torch.testing.assert_close(explanation.maps, hand_net.cam_from_weights(cic), atol=1e-6, rtol=0)


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
        together = ScoreCAM(small_cnn, weights=weights, runtime=Runtime(batch_size=7))(
            inputs, [1, 2, 3]
        )
        for i in range(3):
            alone = ScoreCAM(small_cnn, weights=weights, runtime=Runtime(batch_size=64))(
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
        ({"precision": torch.int8}, "precision"),
        ({"precision": "bfloat8"}, "precision"),
        ({"progress": "yes"}, "progress"),
    ],
)
def test_scorecam_rejects_bad_options(small_cnn, options, message):
    # make_explainer: the speed settings (batch_size, precision, progress) go to the Runtime
    with pytest.raises(SiseError, match=message):
        make_explainer("scorecam", small_cnn, **options)


def test_scorecam_accepts_its_documented_options(small_cnn):
    for options in (
        {"weights": "cic", "baseline": "blur", "batch_size": "auto"},
        {"baseline": torch.zeros(1, 3, 16, 16), "precision": "bf16"},
        {"baseline": None, "progress": False, "score": "logit"},
    ):
        explanation = make_explainer("scorecam", small_cnn, **options)(torch.randn(1, 3, 16, 16))
        assert torch.isfinite(explanation.maps).all()
