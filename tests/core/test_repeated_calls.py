"""A module that runs several times in one forward pass: ``"name@k"`` selects the k-th call."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from sise import SISE, FullGrad, SiseError
from sise.core.hooks import LayerCapture, gradient_pass
from sise.core.layers import discover_layers, resolve_layers, split_call


class SharedActivation(nn.Module):
    """One ReLU module after each of three convolutions (stride 1, 2, 2), as many hand-written
    models share an activation module."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.act(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_split_call():
    assert split_call("blocks.3@2") == ("blocks.3", 2)
    assert split_call("act@-1") == ("act", -1)
    assert split_call("act") == ("act", None)
    assert split_call("odd@name") == ("odd@name", None)


def test_each_call_is_selectable():
    model = SharedActivation().eval()
    x = torch.randn(1, 3, 16, 16)
    layers = resolve_layers(model, ["act@0", "act@1", "act@-1"])
    assert [module for _, module in layers] == [model.act] * 3
    with torch.no_grad(), LayerCapture(layers) as capture:
        model(x)
        first = torch.relu(model.conv1(x))
        second = torch.relu(model.conv2(first))
        third = torch.relu(model.conv3(second))
    torch.testing.assert_close(capture.outputs["act@0"], first)
    torch.testing.assert_close(capture.outputs["act@1"], second)
    torch.testing.assert_close(capture.outputs["act@-1"], third)


def test_discovery_names_the_call():
    model = SharedActivation().eval()
    names = discover_layers(model, torch.zeros(1, 3, 16, 16))
    assert names == ["act@0", "act@1", "act@2"]
    explanation = SISE(model)(torch.randn(1, 3, 16, 16), 1)
    assert explanation.layer_names == names
    assert (explanation.kept_maps > 0).all()


def test_a_plain_name_uses_the_last_call_and_warns():
    model = SharedActivation().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.warns(UserWarning, match="'act' ran 3 times.*'act@k', k = 0..2"):
        plain = gradient_pass(model, resolve_layers(model, ["act"]), x, 0, "logit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        last = gradient_pass(model, resolve_layers(model, ["act@2"]), x, 0, "logit")
    torch.testing.assert_close(plain.activations[0], last.activations[0])
    torch.testing.assert_close(plain.gradients[0], last.gradients[0])


def test_gradient_of_one_call_is_that_call_s():
    """∂z/∂(act@1) by hand: the chain through conv3, act and the mean into fc."""
    model = SharedActivation().eval()
    x = torch.randn(1, 3, 16, 16)
    grad = gradient_pass(model, resolve_layers(model, ["act@1"]), x, 2, "logit")
    a1 = grad.activations[0].clone().requires_grad_(True)
    out = model.fc(torch.relu(model.conv3(a1)).mean(dim=(2, 3)))
    (expected,) = torch.autograd.grad(out[0, 2], a1)
    torch.testing.assert_close(grad.gradients[0], expected)


def test_a_call_that_does_not_happen_is_an_error():
    model = SharedActivation().eval()
    with pytest.raises(SiseError, match="'act@3' selects call 3, but 'act' ran 3 time"):
        SISE(model, layers=["act@3"])(torch.randn(1, 3, 16, 16))
    with pytest.raises(SiseError, match="no layer named 'acts'"):
        SISE(model, layers=["acts@0"])


class SharedConv(nn.Module):
    """One convolution (with a bias) applied twice: its bias enters the output twice."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(torch.relu(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_fullgrad_counts_a_shared_bias_at_every_call():
    """FullGrad's completeness: for the logit of a piecewise-linear network,
    ``z = ∇_x z · x + Σ_calls Σ_c ∇_b z · b`` holds only if each call's bias is counted."""
    model = SharedConv().eval()
    x = torch.randn(1, 3, 8, 8)
    explainer = FullGrad(model, score="logit")
    explanation = explainer(x, 1)
    assert [name for name, _ in explainer.bias_layers_for(x)] == ["conv@0", "conv@1", "fc"]
    with torch.no_grad():
        logit = model(x)[0, 1]
    total = explanation.extras["full_gradient_sum"]
    assert float(total) == pytest.approx(float(logit), abs=1e-5)
