"""The estimate said before a method starts: its passes through the model, and their time."""

from __future__ import annotations

import pytest
import torch

from sise.cli.estimate import Estimate, PassCost, duration_text, estimate, passes, passes_text
from sise.methods.registry import make_explainer


def test_the_words():
    assert passes_text(1) == "1 forward pass" and passes_text(1093) == "1,093 forward passes"
    assert passes_text(2, "forward+backward pass") == "2 forward+backward passes"
    assert duration_text(0.4) == "under a second" and duration_text(12.4) == "about 12 s"
    assert duration_text(210) == "about 3.5 min"
    assert Estimate(1001, 0, 9.0).describe() == "1,001 forward passes, about 9 s"
    assert Estimate(40, 1, 2.0, at_most=True).describe() == (
        "at most 40 forward passes and 1 forward+backward pass, up to 2 s"
    )


def test_measuring_leaves_the_model_as_it_was(small_cnn):
    small_cnn.train(False)
    before = {k: v.clone() for k, v in small_cnn.state_dict().items()}
    cost = PassCost.measure(small_cnn, torch.randn(2, 3, 32, 32))
    assert cost.forward > 0 and cost.gradient > 0
    assert all(p.grad is None for p in small_cnn.parameters())
    assert not small_cnn.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in small_cnn.modules())
    after = small_cnn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("gradcam", {}),
        ("rise", {"n_masks": 12}),
        ("extremal", {"iterations": 3, "areas": (0.1, 0.2)}),
        ("ig", {"n_steps": 5}),
        ("scorecam", {}),
        ("sise", {}),
    ],
)
def test_the_counts_are_the_methods_own(small_cnn, method, options):
    x = torch.randn(1, 3, 32, 32)
    explainer = make_explainer(method, small_cnn, **options)
    forwards, gradients, at_most = passes(explainer, x)
    spent = int(explainer(x).forward_passes[0])  # a forward+backward counts as one there
    if at_most:
        assert spent <= forwards + gradients
    else:
        assert spent == forwards + gradients
    # SmallCNN's last feature map has 16 channels: Score-CAM masks with each of them
    if method == "scorecam":
        assert forwards == 1 + 16
    seconds = estimate(explainer, torch.cat([x, x]), PassCost(0.5, 2.0)).seconds
    assert seconds == pytest.approx(2 * (0.5 * forwards + 2.0 * gradients))
