"""Batch norms folded into their convolutions for the masked forwards (sise.runtime.folding)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from model_state import assert_masked_scores_as_plain, assert_unchanged, snapshot
from torch import Tensor, nn

from sise.core.masks import TensorMasks
from sise.runtime import folding
from sise.runtime.engine import FOLD_MIN_MASKS, score_masked
from sise.runtime.folding import conv_bn_pairs, folded_batch_norms


class ConvBN(nn.Module):
    """1x1 convolution (weight 2, no bias) then a batch norm with hand-picked statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=0.0)
        with torch.no_grad():
            self.conv.weight.fill_(2.0)
            self.bn.running_mean.fill_(1.0)
            self.bn.running_var.fill_(4.0)
            self.bn.weight.fill_(3.0)
            self.bn.bias.fill_(0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


def test_fold_by_hand():
    model = ConvBN().eval()
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    # y = (2x - 1) / 2 * 3 + 0.5 = 3x - 1: folded weight 2 * 3/2 = 3, bias -1 * 3/2 + 0.5 = -1
    before = snapshot(model)
    with torch.no_grad(), folded_batch_norms(model):
        assert torch.equal(model.conv.weight, torch.full((1, 1, 1, 1), 3.0))
        assert torch.equal(model.conv.bias, torch.tensor([-1.0]))
        assert torch.equal(model.bn(x), x)  # the batch norm is the identity meanwhile
        torch.testing.assert_close(model(x), 3 * x - 1, rtol=0, atol=0)
    assert model.conv.bias is None
    assert_unchanged(model, before)
    torch.testing.assert_close(model(x), 3 * x - 1, rtol=0, atol=0)


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():  # statistics far from the identity, so a wrong fold shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def test_resnet_folds_every_pair_and_gives_the_same_outputs():
    model = _resnet()
    # 17 convolutions in the main path plus 3 down-sampling shortcuts, each with its batch norm
    assert len(conv_bn_pairs(model)) == 20
    x = torch.randn(2, 3, 64, 64)
    before = snapshot(model)
    with torch.no_grad():
        reference = model(x)
        with folded_batch_norms(model):
            folded = model(x)
            with folded_batch_norms(model):  # re-entrant: nothing is folded twice
                again = model(x)
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(again, folded)
    assert_unchanged(model, before)


def test_unsafe_pairs_are_not_folded():
    class Shared(nn.Module):  # the convolution's output also feeds the residual
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x: Tensor) -> Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    class Branchy(ConvBN):  # fx cannot trace control flow on values
        def forward(self, x: Tensor) -> Tensor:
            return self.bn(self.conv(x)) if bool(x.sum() > 0) else x

    assert conv_bn_pairs(Shared().eval()) == []
    assert conv_bn_pairs(Branchy().eval()) == []
    hooked = ConvBN().eval()
    hooked.bn.register_forward_hook(lambda m, i, o: None)
    training = ConvBN().train()
    training.bn.eps = 1e-5  # batch statistics need a positive eps
    x = torch.rand(1, 1, 2, 2)
    for model in (hooked, training):
        with torch.no_grad(), folded_batch_norms(model):
            assert model.conv.bias is None and "forward" not in vars(model.bn)
            model(x)


def test_restored_after_an_error():
    model = _resnet()
    before = snapshot(model)
    try:
        with folded_batch_norms(model):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert_unchanged(model, before)


def test_masked_scores_are_folded_and_equal_the_unfolded_model(monkeypatch):
    model = _resnet()
    inputs = torch.randn(1, 3, 32, 32)
    masks = torch.rand(FOLD_MIN_MASKS, 32, 32)
    calls = []
    plain = torch.nn.functional.batch_norm
    monkeypatch.setattr(
        torch.nn.functional, "batch_norm", lambda *a, **k: calls.append(1) or plain(*a, **k)
    )
    got = score_masked(model, inputs, torch.tensor([3]), TensorMasks(masks), score="logit")
    # the first fold of a model is checked against one unfolded forward: 20 batch norms
    assert len(calls) == 20
    calls.clear()
    again = score_masked(model, inputs, torch.tensor([3]), TensorMasks(masks), score="logit")
    assert calls == []  # every batch norm was folded away
    assert torch.equal(again, got)
    with torch.no_grad():
        expected = model(inputs * masks[:, None])[:, 3]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # a few masks do not pay for the fold
    calls.clear()
    few = TensorMasks(masks[: FOLD_MIN_MASKS - 1])
    score_masked(model, inputs, torch.tensor([3]), few, score="logit")
    assert len(calls) == 20


def test_a_forward_with_side_effects_is_traced_on_a_copy():
    class Recording(ConvBN):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[object] = []

        def forward(self, x: Tensor) -> Tensor:
            self.seen.append(x)
            return super().forward(x)

    model = Recording().eval()
    assert conv_bn_pairs(model) == [("conv", "bn")]
    assert model.seen == []  # the trace's proxies went to the copy


def test_a_fold_that_changes_the_output_is_never_used(monkeypatch):
    model = _resnet()
    # a misread module: "after the norm" doubles its input
    monkeypatch.setattr(folding, "_after_norm", lambda bn: lambda x: 2 * x)
    assert_masked_scores_as_plain(model)
    assert folding._CHECKED[model] is False


def test_timm_batch_norm_with_activation_folds_and_keeps_its_activation():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    pairs = conv_bn_pairs(model)
    modules = dict(model.named_modules())
    assert len(pairs) == 49
    assert {type(modules[bn]).__name__ for _, bn in pairs} == {"BatchNormAct2d"}
    x = torch.randn(2, 3, 64, 64)
    before = snapshot(model)
    with torch.no_grad():
        reference = model(x)
        with folded_batch_norms(model, example=x[:1]):
            folded = model(x)
    assert folding._CHECKED[model] is True
    torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-4)
    assert_unchanged(model, before)
