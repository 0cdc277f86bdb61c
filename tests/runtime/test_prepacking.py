"""Convolution weights prepacked for oneDNN in the CPU masked forwards (sise.runtime.prepacking)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from model_state import (
    assert_masked_scores_as_plain,
    assert_unchanged,
    randomise_batch_norms,
    snapshot,
)
from torch import Tensor, nn
from torch.profiler import profile

from sise.core.masks import TensorMasks
from sise.runtime import folding, prepacking
from sise.runtime.engine import FOLD_MIN_MASKS, score_masked
from sise.runtime.folding import folded_batch_norms
from sise.runtime.prepacking import prepacked_convolutions

pytestmark = pytest.mark.skipif(not prepacking._available(), reason="PyTorch without oneDNN")

PACKED_OP = "mkldnn::_convolution_pointwise"


def _packed_calls(run) -> int:
    """How many convolutions ``run()`` computed with a prepacked weight."""
    with profile() as recorded:
        run()
    return sum(event.count for event in recorded.key_averages() if event.key == PACKED_OP)


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def test_resnet_runs_every_convolution_packed_with_the_same_outputs():
    model = _resnet()
    x = _channels_last(torch.randn(4, 3, 64, 64))
    before = snapshot(model)
    with torch.no_grad():
        reference = model(x)
        with prepacked_convolutions(model):
            packed_calls = _packed_calls(lambda: model(x))
            packed = model(x)
            smaller = model(x[:2])  # another batch size reuses the packed weights
            with prepacked_convolutions(model):  # re-entrant
                again = model(x)
    assert packed_calls == 20  # 17 in the main path, 3 down-sampling shortcuts
    torch.testing.assert_close(packed, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(smaller, reference[:2], rtol=1e-5, atol=1e-5)
    assert torch.equal(again, packed)
    assert_unchanged(model, before)


def test_inputs_the_packed_path_does_not_take_run_the_plain_convolution():
    model = _resnet()
    x = torch.randn(2, 3, 64, 64)
    with prepacked_convolutions(model):
        with torch.no_grad():
            # NCHW: oneDNN would hand the next layer a channels-last tensor
            assert _packed_calls(lambda: model(x)) == 0
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert _packed_calls(lambda: model(_channels_last(x))) == 0
        # a gradient to compute
        assert _packed_calls(lambda: model(_channels_last(x).requires_grad_())) == 0
        with torch.no_grad():
            assert _packed_calls(lambda: model(_channels_last(x))) == 20


def test_only_plain_unhooked_convolutions_are_packed():
    class Reflect(nn.Conv2d):
        pass

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding="same"),  # padding given as a word
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        Reflect(4, 4, 3, padding=1),  # a subclass may do more in its forward
        nn.Conv2d(4, 4, 1),
    ).eval()
    model[4].register_forward_hook(lambda module, args, output: None)
    with prepacked_convolutions(model):
        patched = ["forward" in vars(module) for module in model]
    assert patched == [True, False, False, False, False]


def test_restored_after_an_error():
    model = _resnet()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), prepacked_convolutions(model):
        model(_channels_last(torch.randn(1, 3, 32, 32)))
        raise RuntimeError("boom")
    assert_unchanged(model, before)


def test_masked_scores_are_packed_and_equal_the_plain_model():
    model = _resnet()
    inputs = torch.randn(1, 3, 64, 64)
    masks = TensorMasks(torch.rand(FOLD_MIN_MASKS, 64, 64))
    before = snapshot(model)
    calls = _packed_calls(
        lambda: score_masked(model, inputs, torch.tensor([3]), masks, score="logit", batch_size=8)
    )
    # the first use checks the model once (one forward packed), then two batches
    assert calls == 3 * 20
    got = score_masked(model, inputs, torch.tensor([3]), masks, score="logit", batch_size=8)
    plain = score_masked(
        model, inputs, torch.tensor([3]), masks, score="logit", channels_last=False
    )
    with torch.no_grad():
        expected = model(inputs * masks.masks(0, FOLD_MIN_MASKS)[:, None])[:, 3]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, expected, rtol=1e-5, atol=1e-5)
    assert_unchanged(model, before)
    # a few masks do not pay for packing
    few = TensorMasks(masks.masks(0, FOLD_MIN_MASKS - 1))
    assert _packed_calls(lambda: score_masked(model, inputs, torch.tensor([3]), few)) == 0


def test_a_model_whose_packed_output_differs_is_never_packed(monkeypatch):
    model = _resnet()

    def wrong(conv: nn.Conv2d, act: nn.Module | None = None):
        plain = nn.Conv2d.forward.__get__(conv)
        return lambda x: 2 * plain(x)

    monkeypatch.setattr(prepacking, "_packed_forward", wrong)
    assert_masked_scores_as_plain(model)
    assert prepacking._CHECKED[model] is False


@pytest.mark.slow
def test_real_lite0_scores_packed_equal_the_plain_model(demo):
    """The real EfficientNet-Lite0 (depthwise convolutions, timm's modules): every plain
    convolution runs packed, and the masked scores equal the NCHW, unpacked ones."""
    from sise.images import load_image, sample_image_path

    x = demo.preprocess(load_image(sample_image_path("coffee")))
    torch.manual_seed(0)
    masks = TensorMasks(torch.rand(FOLD_MIN_MASKS, *x.shape[-2:]))
    target = torch.tensor([967])  # espresso
    before = snapshot(demo.model)
    score_masked(demo.model, x, target, masks, batch_size=8)  # the first use checks the model
    calls = _packed_calls(lambda: score_masked(demo.model, x, target, masks, batch_size=8))
    # 44 of the 49 convolutions; the 5 others are timm's Conv2dSame (stride 2, padding made
    # in their forward), which keep their own forward
    assert calls == 2 * 44
    packed = score_masked(demo.model, x, target, masks, batch_size=8)
    plain = score_masked(demo.model, x, target, masks, batch_size=8, channels_last=False)
    torch.testing.assert_close(packed, plain, rtol=1e-4, atol=1e-7)
    assert_unchanged(demo.model, before)


ACTIVATIONS = {
    "relu": nn.ReLU(),
    "relu6 in place": nn.ReLU6(inplace=True),
    "hardtanh": nn.Hardtanh(-0.5, 0.7),
    "leaky relu": nn.LeakyReLU(0.2),
    "silu": nn.SiLU(),
    "hardswish": nn.Hardswish(),
    "sigmoid": nn.Sigmoid(),
    "tanh": nn.Tanh(),
    "hardsigmoid": nn.Hardsigmoid(),
    "gelu": nn.GELU(),
    "gelu tanh": nn.GELU(approximate="tanh"),
}


def _conv_bn_act(act: nn.Module) -> nn.Module:
    """conv → timm BatchNormAct2d(act) → conv → mean, batch norm statistics randomised."""
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    norm = BatchNormAct2d(8)
    norm.act = act
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), norm, nn.Conv2d(8, 4, 1), nn.Flatten(2)
    ).eval()
    return randomise_batch_norms(model)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_a_folded_batch_norms_activation_runs_inside_the_packed_convolution(name, monkeypatch):
    """oneDNN applies the activation as it writes the convolution's output: the batch norm's
    forward is the identity meanwhile, the activation module is not called, the output is the
    plain model's (also where the plain convolution runs), and all is put back afterwards."""
    pytest.importorskip("timm")

    act = ACTIVATIONS[name]
    model = _conv_bn_act(act)
    calls = []
    act_forward = type(act).forward

    def counted(self, x):
        calls.append(1)
        return act_forward(self, x)

    # large inputs, so that the activations' kinks (ReLU6 clamps at 6) are crossed
    x = _channels_last(8 * torch.randn(2, 3, 12, 12))
    before = snapshot(model)
    with torch.no_grad():
        expected = model(x)
        normalised = nn.BatchNorm2d.forward(model[1], model[0](x))  # before the activation
        assert float(normalised.min()) < -6 and float(normalised.max()) > 6
        monkeypatch.setattr(type(act), "forward", counted)
        with folded_batch_norms(model), prepacked_convolutions(model):
            assert vars(model[1])["forward"] is folding.identity
            fused_calls = _packed_calls(lambda: model(x))
            calls.clear()
            fused = model(x)
            assert calls == []
            nchw = model(x.contiguous())  # the plain convolution, then the activation
            assert calls == [1]
        # the folding's forward back on the batch norm inside the fold, nothing after it
        assert "forward" not in vars(model[1])
    assert fused_calls == 2
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(nchw, expected, rtol=1e-5, atol=1e-4)
    assert_unchanged(model, before)


def test_an_activation_with_a_hook_is_not_moved():
    pytest.importorskip("timm")

    model = _conv_bn_act(nn.ReLU())
    seen = []
    model[1].act.register_forward_hook(lambda module, args, output: seen.append(1))
    with torch.no_grad(), folded_batch_norms(model), prepacked_convolutions(model):
        assert vars(model[1])["forward"] is not folding.identity
        model(_channels_last(torch.randn(1, 3, 8, 8)))
    assert seen == [1]
