"""Grad-CAM++: by hand on the 3x3 hand network (both denominators, the softmax's log score), and
against pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sise.errors import SiseError
from sise.methods import GradCAMPlusPlus

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
        explanation.maps, hand_net.cam_from_weights(weights), atol=1e-6, rtol=0
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
    explanation = GradCAMPlusPlus(hand_net, "features", score="softmax")(hand_x)
    assert explanation.extras["weights"][0].tolist() == pytest.approx(weights, rel=1e-5)
    torch.testing.assert_close(
        explanation.maps, hand_net.cam_from_weights(weights), atol=1e-5, rtol=0
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


@pytest.mark.parametrize("denominator", ["Paper", None, 1])
def test_gradcampp_rejects_bad_denominator(small_cnn, denominator):
    with pytest.raises(SiseError, match="unknown denominator"):
        GradCAMPlusPlus(small_cnn, denominator=denominator)
