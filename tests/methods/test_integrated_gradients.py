"""Integrated Gradients: by hand on the 3x3 hand network, completeness, and the blur baseline."""

from __future__ import annotations

import pytest
import torch

from sise.methods import IntegratedGradients


def test_ig_by_hand(hand_net, hand_x):
    # Logit of class 0 on the path t·x from the zero baseline. ∂z0/∂x = W00·1[t x > 0] −
    # W01·1[2 − t x > 0]; for x ∈ {1, 2} both units stay on for t < 1, and at the one x = 3
    # pixel A_1 switches off at t = 2/3 but W01 is 0 there: every integrand is constant, so
    # IG = x ⊙ (W00 − W01) exactly:
    #   [[1·(.25 − 0), 2·(−.25 − .25), 0], [0, 1·(.5 − 0), 3·(.25 − 0)], [2·(−.25 − .5), 0, .25]]
    expected = torch.tensor([[0.25, -1.0, 0.0], [0.0, 0.5, 0.75], [-1.5, 0.0, 0.25]])
    explanation = IntegratedGradients(hand_net, score="logit", n_steps=8)(hand_x)
    attributions = explanation.extras["attributions"][0, 0]
    torch.testing.assert_close(attributions, expected, atol=1e-6, rtol=0)
    # completeness: Σ IG = z0(x) − z0(0) = 0.35 − (2·0.25·2 + 0.1) = −0.75
    assert attributions.sum().item() == pytest.approx(-0.75, abs=1e-6)
    assert explanation.extras["baseline_scores"].item() == pytest.approx(1.1)
    assert explanation.extras["delta"].abs().item() < 1e-6
    # map: Σ_channels |IG|, min-max (max 1.5)
    map_expected = expected.abs() / 1.5
    torch.testing.assert_close(explanation.maps[0], map_expected, atol=1e-6, rtol=0)
    assert explanation.forward_passes.tolist() == [10]  # 8 path points + x + baseline


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_ig_completeness(small_cnn, score):
    torch.manual_seed(0)
    inputs = torch.randn(2, 3, 16, 16)
    explanation = IntegratedGradients(small_cnn, score=score, n_steps=64)(inputs, [1, 4])
    attributions = explanation.extras["attributions"]
    assert attributions.shape == inputs.shape
    gap = explanation.scores - explanation.extras["baseline_scores"]
    total = attributions.flatten(1).sum(dim=1)
    torch.testing.assert_close(total, gap, atol=0.02 * gap.abs().max().item() + 1e-4, rtol=0)
    torch.testing.assert_close(explanation.extras["delta"], total - gap)


def test_ig_blur_baseline(small_cnn):
    torch.manual_seed(1)
    inputs = torch.randn(1, 3, 16, 16)
    zero = IntegratedGradients(small_cnn, n_steps=16)(inputs)
    blur = IntegratedGradients(small_cnn, n_steps=16, baseline="blur")(inputs)
    assert not torch.allclose(zero.maps, blur.maps)
    assert blur.extras["baseline_scores"].item() != pytest.approx(
        zero.extras["baseline_scores"].item()
    )


def test_ig_batches_path_points_on_a_cpu(small_cnn, monkeypatch):
    """Without a batch size, a CPU run passes CPU_PATH_POINTS path points at a time (one pass
    over all of them is twice as slow there), with the same attributions as one pass."""
    from captum.attr import IntegratedGradients as CaptumIG

    from sise import Runtime
    from sise.methods.integrated_gradients import CPU_PATH_POINTS

    seen: list[int | None] = []
    attribute = CaptumIG.attribute

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("internal_batch_size"))
        return attribute(self, *args, **kwargs)

    monkeypatch.setattr(CaptumIG, "attribute", spy)
    x = torch.randn(2, 3, 32, 32)
    batched = IntegratedGradients(small_cnn, n_steps=40)(x, targets=[1, 3])
    whole = IntegratedGradients(small_cnn, n_steps=40, runtime=Runtime(batch_size=80))(
        x, targets=[1, 3]
    )
    assert seen == [CPU_PATH_POINTS, 80]
    torch.testing.assert_close(
        batched.extras["attributions"], whole.extras["attributions"], rtol=1e-5, atol=1e-6
    )
    many = torch.randn(CPU_PATH_POINTS + 3, 3, 32, 32)
    IntegratedGradients(small_cnn, n_steps=2)(many, targets=[0] * len(many))
    assert seen[-1] == CPU_PATH_POINTS + 3  # never fewer points than images
