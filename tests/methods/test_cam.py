"""The CAM family's base (:mod:`sise.methods.cam`): its extension point, on the 3x3 hand network,
and what every CAM shares (the default layer, the feature-map check, non-finite weights)."""

from __future__ import annotations

import pytest
import torch

from sise.errors import SiseError
from sise.methods import GradCAM
from sise.methods.cam import CAMContext, CAMExplainer, ChannelWeights


def test_hand_network_logits(hand_net, hand_x):
    # z0 = 0.25·(1 - 2 + 2 + 3 - 2 + 1) + 0.25·(-2 + 2 - 2) + 0.1 = 0.75 - 0.5 + 0.1 = 0.35
    # z1 = 0.25·(2 - 3) + 0.25·(1 - 1 + 1) - 0.1 = -0.1
    _, logits = hand_net.by_hand(hand_net.X)
    assert logits == pytest.approx([0.35, -0.1])
    assert hand_net(hand_x)[0].tolist() == pytest.approx([0.35, -0.1])


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
        explanation.maps, hand_net.cam_from_weights([3 / 40, -1 / 18]), atol=1e-6, rtol=0
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
