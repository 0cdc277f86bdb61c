"""FullGrad: by hand on the 3x3 hand network, completeness, batch norm's effective bias, against
pytorch-grad-cam and the authors' formula, and timm's norm-act layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sise.methods import FullGrad
from sise.methods.fullgrad import _postprocess_sum, effective_bias


def test_fullgrad_by_hand(hand_net, hand_x):
    # Logit of class 0. Pre-activations: p_0 = x, p_1 = 2 − x; ReLU gates
    # r_0 = [[1,1,0],[0,1,1],[1,0,1]], r_1 = [[1,0,1],[1,1,0],[0,1,1]].
    # ∂z0/∂p_k = W0k ⊙ r_k;  ∂z0/∂x = (+1)·∂z0/∂p_0 + (−1)·∂z0/∂p_1
    #   = .25·([[1,-1,0],[0,2,1],[-1,0,1]] − [[0,0,-1],[1,0,0],[0,-1,0]]) = .25·[[1,-1,1],[-1,2,1],[-1,1,1]]
    # input term x ⊙ ∂z0/∂x = .25·[[1,-2,0],[0,2,3],[-2,0,1]] → |·|, min-max:
    #   [[1/3, 2/3, 0], [0, 2/3, 1], [2/3, 0, 1/3]]
    # conv bias b = (0, 2): channel 0 is 0 (constant, min-max → 0); channel 1:
    #   2·∂z0/∂p_1 = .5·[[0,0,-1],[1,0,0],[0,-1,0]] → |·|, min-max: [[0,0,1],[1,0,0],[0,1,0]]
    # linear bias: one value per class, not a map (min-max of a constant → 0).
    # Sum [[1/3, 2/3, 1], [1, 2/3, 1], [2/3, 1, 1/3]] → min-max:
    expected = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.5, 1.0], [0.5, 1.0, 0.0]])
    explanation = FullGrad(hand_net, score="logit")(hand_x)
    torch.testing.assert_close(explanation.maps[0], expected, atol=1e-6, rtol=0)
    assert explanation.extras["layer_names"] == ["features.0", "head.1"]
    # completeness: Σ x ∂z/∂x + Σ b ∂z/∂b = .75 + (0 − .5) + 0.1 = 0.35 = z0
    assert explanation.extras["full_gradient_sum"].item() == pytest.approx(0.35, abs=1e-6)
    assert explanation.forward_passes.tolist() == [1]


def test_fullgrad_layer_normalization_keeps_channel_weights():
    """The authors' code normalises a layer's term as a whole: a channel with a tiny term stays
    tiny. Per-channel normalisation blows it up to the same range as the strong one."""
    term = torch.zeros(1, 2, 2, 2)
    term[0, 0] = torch.tensor([[4.0, 0.0], [0.0, 0.0]])  # strong channel
    term[0, 1] = torch.tensor([[0.0, 0.0], [0.0, 0.01]])  # weak channel
    layer = _postprocess_sum(term, (2, 2), "layer")
    channel = _postprocess_sum(term, (2, 2), "channel")
    torch.testing.assert_close(layer, torch.tensor([[[1.0, 0.0], [0.0, 0.0025]]]))
    torch.testing.assert_close(channel, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))


def test_batchnorm_effective_bias(hand_bn_net):
    bn = hand_bn_net.features[1]
    # β − μ γ / √(σ² + ε): 0.25 − 0.5·2/√(4 + ε) ≈ −0.25, 1 − (−0.25)·0.5/√(0.25 + ε) ≈ 1.25
    eps = bn.eps
    expected = [0.25 - 0.5 * 2 / np.sqrt(4 + eps), 1.0 + 0.25 * 0.5 / np.sqrt(0.25 + eps)]
    assert effective_bias(bn).tolist() == pytest.approx(expected)
    assert effective_bias(torch.nn.ReLU()) is None
    assert effective_bias(torch.nn.Conv2d(1, 1, 1, bias=False)) is None
    assert effective_bias(torch.nn.BatchNorm2d(2, track_running_stats=False)) is None


@pytest.mark.parametrize("with_bn", [False, True])
def test_fullgrad_completeness(hand_net, hand_bn_net, small_cnn, with_bn):
    """For the logit of a piecewise-linear network (ReLU, max-pool, eval-mode batch norm):
    f(x) = ∇_x f · x + Σ_l ∇_{b_l} f · b_l."""
    model = hand_bn_net if with_bn else small_cnn
    torch.manual_seed(0)
    inputs = torch.randn(2, 1, 3, 3) * 2 if with_bn else torch.randn(2, 3, 16, 16)
    explanation = FullGrad(model, score="logit")(inputs, [0, 1])
    with torch.no_grad():
        logits = model(inputs)
    expected = logits[torch.arange(2), torch.tensor([0, 1])]
    torch.testing.assert_close(
        explanation.extras["full_gradient_sum"], expected, atol=1e-5, rtol=1e-5
    )
    if not with_bn:
        assert explanation.extras["layer_names"] == [
            "features.0",
            "features.1",
            "features.4",
            "features.7",
            "head",
        ]


@pytest.mark.parametrize("with_bn", [False, True])
def test_fullgrad_matches_pytorch_grad_cam(hand_net, hand_bn_net, hand_x, with_bn):
    """pytorch-grad-cam's FullGrad: |x ⊙ ∇x| and |b ⊙ ∇_out| for Conv2d/BatchNorm2d layers, each
    channel min-max normalised (and resized), summed, min-max. On 3x3 maps nothing is resized,
    so the two agree (up to its 1e-7 in the normalisation)."""
    from pytorch_grad_cam import FullGrad as PgcFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = hand_bn_net if with_bn else hand_net
    inputs = hand_x * 0.5 - 0.25 if with_bn else hand_x
    ours = FullGrad(model, score="logit", normalization="channel")(inputs)
    reference = PgcFullGrad(model=model, target_layers=[])(
        input_tensor=inputs, targets=[ClassifierOutputTarget(0)]
    )
    np.testing.assert_allclose(ours.maps.numpy(), reference, atol=1e-5)


class ThreeConvNet(nn.Module):
    """A small network whose feature maps all keep the input's size (stride 1, no pooling), so
    no FullGrad term is resized: conv → BN → ReLU → conv → ReLU → conv → ReLU → mean → linear.
    The head's weights are large so that no channel's term is so small (under 1e-5) that
    pytorch-grad-cam's 1e-7 in its min-max denominator shows."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 5, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(5, 3)
        with torch.no_grad():
            bn = self.features[1]
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
            self.head.weight.mul_(1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def pearson(a: object, b: object) -> float:
    return float(np.corrcoef(np.asarray(a).ravel(), np.asarray(b).ravel())[0, 1])


def test_fullgrad_matches_pytorch_grad_cam_on_a_small_network():
    """Three convolutions and a batch norm, several channels, two images and two classes: with
    every map at the input's size pytorch-grad-cam's FullGrad (per-channel normalisation) and
    ``normalization="channel"`` are the same computation."""
    from pytorch_grad_cam import FullGrad as PgcFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = ThreeConvNet().eval()
    torch.manual_seed(6)
    inputs = torch.randn(2, 3, 8, 8)
    ours = FullGrad(model, score="logit", normalization="channel")(inputs, [0, 2])
    reference = PgcFullGrad(model=model, target_layers=[])(
        input_tensor=inputs, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(2)]
    )
    np.testing.assert_allclose(ours.maps.numpy(), reference, atol=1e-5)
    layer = FullGrad(model, score="logit")(inputs, [0, 2])
    assert np.abs(layer.maps.numpy() - reference).max() > 0.05  # the other normalisation


def test_fullgrad_close_to_pytorch_grad_cam_with_resizing(small_cnn):
    """With 8x8 and 4x4 maps on a 16x16 input the two differ only by where the min-max sits:
    pytorch-grad-cam normalises each channel map, then resizes it (OpenCV); this class resizes,
    then normalises. Measured: r = 0.978 over two images (0.776 for the layer normalisation)."""
    from pytorch_grad_cam import FullGrad as PgcFullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(1)
    inputs = torch.randn(2, 3, 16, 16)
    ours = FullGrad(small_cnn, score="logit", normalization="channel")(inputs, [1, 3])
    reference = PgcFullGrad(model=small_cnn, target_layers=[])(
        input_tensor=inputs, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(3)]
    )
    assert pearson(ours.maps, reference) > 0.95
    layer = FullGrad(small_cnn, score="logit")(inputs, [1, 3])
    assert pearson(layer.maps, reference) < 0.9


def authors_fullgrad(model, inputs: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """The FullGrad saliency of the authors' code (idiap/fullgrad-saliency, saliency/fullgrad.py,
    MIT), recomputed by hand for :class:`SmallCNN`, without hooks: the forward pass is written
    out so that each bias layer's output is a tensor to differentiate, and the effective bias of
    batch norm is ``β − μ γ / √(σ² + ε)``. ψ normalises a layer's whole (C, h, w) term at once:
    ``|t|``, minus its minimum, over its maximum; each term is up-sampled, summed over channels
    and layers. Two deliberate departures from their code, which this package makes: bilinear
    ``align_corners=False`` (they use True) and no 1e-6 in ψ's denominator; the sum is min-max
    normalised as every map of the package."""
    f = model.features
    x = inputs.clone().requires_grad_(True)
    conv0 = f[0](x)
    bn = f[1](conv0)
    conv4 = f[4](F.max_pool2d(F.relu(bn), 2))
    conv7 = f[7](F.max_pool2d(F.relu(conv4), 2))
    logits = model.head(F.relu(conv7).mean(dim=(2, 3)))
    outputs = [conv0, bn, conv4, conv7]
    picked = logits[torch.arange(len(targets)), torch.tensor(targets)].sum()
    gradients = torch.autograd.grad(picked, [x, *outputs])
    norm = f[1]
    bn_bias = norm.bias - norm.running_mean * norm.weight / torch.sqrt(norm.running_var + norm.eps)
    biases = [f[0].bias, bn_bias, f[4].bias, f[7].bias]

    def psi(term: torch.Tensor) -> torch.Tensor:
        term = term.abs()
        term = term - term.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
        return term / term.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)

    size = inputs.shape[-2:]
    saliency = psi(gradients[0] * x).sum(dim=1)
    for gradient, bias in zip(gradients[1:], biases, strict=True):
        term = psi(gradient * bias.view(1, -1, 1, 1))
        saliency = saliency + F.interpolate(term, size=size, mode="bilinear").sum(dim=1)
    saliency = saliency.detach()
    low = saliency.flatten(1).min(dim=1).values.view(-1, 1, 1)
    high = saliency.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return (saliency - low) / (high - low)


def test_fullgrad_layer_normalization_matches_the_authors_formula(small_cnn):
    with torch.no_grad():
        bn = small_cnn.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    torch.manual_seed(1)
    inputs = torch.randn(2, 3, 16, 16)
    reference = authors_fullgrad(small_cnn, inputs, [1, 3])
    ours = FullGrad(small_cnn, score="logit")(inputs, [1, 3])
    assert ours.extras["layer_names"][:4] == [
        "features.0",
        "features.1",
        "features.4",
        "features.7",
    ]
    torch.testing.assert_close(ours.maps, reference, atol=1e-5, rtol=0)
    channel = FullGrad(small_cnn, score="logit", normalization="channel")(inputs, [1, 3])
    assert (channel.maps - reference).abs().max() > 0.1


def test_fullgrad_discovers_layers_once_per_shape(small_cnn):
    explainer = FullGrad(small_cnn)
    explainer(torch.randn(1, 3, 16, 16))
    explainer(torch.randn(3, 3, 16, 16))
    explainer(torch.randn(1, 3, 12, 12))
    assert set(explainer._discovered) == {(3, 16, 16), (3, 12, 12)}


def test_fullgrad_differentiates_timm_norm_act_layers_before_their_activation():
    """timm's BatchNormAct2d adds its bias, then applies its activation itself. On a ReLU network
    with those layers (timm's RegNetX-200MF, random weights, random batch-norm statistics) the
    full-gradient decomposition of the logit must still be exact; taking the gradient after the
    activation, at the layer's output, missed the ReLU's derivative (sum 5.85 against a logit of
    5.30 before the fix)."""
    timm = pytest.importorskip("timm")
    from model_state import randomise_batch_norms

    from sise.methods.fullgrad import biased_output

    torch.manual_seed(0)
    model = timm.create_model("regnetx_002", pretrained=False).eval()
    randomise_batch_norms(model)
    norm = model.stem.bn
    assert type(norm).__name__ == "BatchNormAct2d" and isinstance(norm.act, nn.ReLU)
    assert biased_output("stem.bn", norm) == ("stem.bn.drop", norm.drop)
    assert biased_output("stem.bn@1", norm) == ("stem.bn.drop@1", norm.drop)
    assert biased_output("stem.conv", model.stem.conv) == ("stem.conv", model.stem.conv)
    inputs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(inputs)
    targets = logits.argmax(dim=1)
    explanation = FullGrad(model, score="logit")(inputs, targets.tolist())
    torch.testing.assert_close(
        explanation.extras["full_gradient_sum"],
        logits.gather(1, targets[:, None])[:, 0],
        rtol=1e-4,
        atol=1e-4,
    )
    assert "stem.bn" in explanation.extras["layer_names"]
