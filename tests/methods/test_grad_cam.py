"""Grad-CAM: by hand on the 3x3 hand network, and against Captum's LayerGradCam."""

from __future__ import annotations

import pytest
import torch

from sise.core.postprocess import minmax_normalize, upsample
from sise.methods import GradCAM


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
