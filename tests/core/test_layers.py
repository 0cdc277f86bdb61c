from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

from sise import SISE, SiseError
from sise.core.hooks import LayerCapture
from sise.core.layers import discover_layers, resolve_layers


def test_vgg16_layers_are_the_max_pool_inputs():
    model = torchvision.models.vgg16(weights=None).eval()
    names = discover_layers(model, torch.zeros(1, 3, 224, 224))
    assert names == ["features.3", "features.8", "features.15", "features.22", "features.29"]


def test_resnet50_layers_are_the_stage_outputs():
    model = torchvision.models.resnet50(weights=None).eval()
    names = discover_layers(model, torch.zeros(1, 3, 224, 224))
    assert names == ["relu", "layer1", "layer2", "layer3", "layer4"]


def test_demo_model_layers(demo):
    names = discover_layers(demo.model, torch.zeros(1, 3, 224, 224))
    # timm EfficientNet-Lite0: stage outputs at 112, 56, 28, 14 px, then the head at 7 px.
    assert names == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "bn2"]


def test_squeeze_excitation_pooling_is_not_a_stage():
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    names = discover_layers(model, torch.zeros(1, 3, 96, 96))
    assert names == ["features.0", "features.1", "features.3", "features.8", "features"]


def test_layers_by_name_and_module(small_cnn):
    by_name = resolve_layers(small_cnn, ["features.2", "features.5"])
    by_module = resolve_layers(small_cnn, [small_cnn.features[2], small_cnn.features[5]])
    assert by_name == by_module


def test_unknown_layer_name_suggests_close_ones(small_cnn):
    with pytest.raises(SiseError, match=r"no layer named 'feature\.2'.*features\.2"):
        SISE(small_cnn, layers=["feature.2"])


def test_module_from_another_model(small_cnn):
    with pytest.raises(SiseError, match="not part of the model"):
        SISE(small_cnn, layers=[nn.Conv2d(3, 3, 1)])


def test_model_without_feature_maps_is_refused():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10), nn.ReLU(), nn.Linear(10, 4))
    with pytest.raises(SiseError, match="no convolutional feature map"):
        SISE(mlp)(torch.zeros(1, 3, 8, 8))


def test_layer_with_flat_output_is_refused(small_cnn):
    with pytest.raises(SiseError, match="not a \\(N, C, h, w\\) feature map"):
        SISE(small_cnn, layers=["head"])(torch.zeros(1, 3, 16, 16))


class _Block(nn.Module):
    """conv (stride s) -> ReLU, the unit of the ModuleList/Sequential pair below."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class _ListNet(nn.Module):
    """Blocks held in an nn.ModuleList (or nn.Sequential) and iterated in forward."""

    def __init__(self, container: type[nn.ModuleList] | type[nn.Sequential]) -> None:
        super().__init__()
        specs = [(3, 8, 1), (8, 8, 2), (8, 16, 1), (16, 16, 2), (16, 32, 1), (32, 32, 2)]
        blocks = [_Block(*spec) for spec in specs]
        self.blocks = (
            nn.ModuleList(blocks) if container is nn.ModuleList else nn.Sequential(*blocks)
        )
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_blocks_in_a_module_list_are_found_as_in_a_sequential():
    torch.manual_seed(0)
    in_list, in_sequential = _ListNet(nn.ModuleList).eval(), _ListNet(nn.Sequential).eval()
    x = torch.zeros(1, 3, 32, 32)
    expected = ["blocks.0", "blocks.2", "blocks.4", "blocks.5"]
    assert discover_layers(in_sequential, x) == expected
    assert discover_layers(in_list, x) == expected


def test_efficientnet_lite_pytorch_package_gets_every_stage():
    """The ``efficientnet_lite_pytorch`` package keeps its blocks in an nn.ModuleList, pads with
    TF-style "same" padding modules and shares one ``_swish`` module between the stem and the
    head: all four stages and the head's activation (its second call) are found, as timm's
    EfficientNet-Lite0 gives blocks.0, 1, 2, 4 and bn2."""
    package = pytest.importorskip("efficientnet_lite_pytorch")
    model = package.EfficientNet.from_name("efficientnet-lite0").eval()
    for size in (160, 224):
        names = discover_layers(model, torch.zeros(1, 3, size, size))
        assert names == ["_blocks.0", "_blocks.2", "_blocks.4", "_blocks.10", "_swish@1"]
    # _swish@1 is the head's activation, 1280 maps at 1/32 of the input
    with torch.no_grad(), LayerCapture(resolve_layers(model, ["_swish@1", "_bn1"])) as capture:
        model(torch.randn(1, 3, 160, 160))
    head = capture.outputs["_swish@1"]
    assert head.shape == (1, 1280, 5, 5)
    torch.testing.assert_close(head, torch.nn.functional.relu6(capture.outputs["_bn1"]))


class _NoStageNet(nn.Module):
    """Convolutions at one resolution, global mean, linear: nothing enters a stage."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(self.features(x), 2)  # hidden from the module tree
        return self.fc(x.mean(dim=(2, 3)))


def test_model_without_a_stage_is_refused_not_explained_with_one_layer():
    from sise import GradCAM

    model = _NoStageNet().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(SiseError, match=r"no down-sampling stage.*layers=\[\.\.\.\]"):
        SISE(model)(x)
    # One-layer methods only need the last map, which is there.
    assert GradCAM(model).layer_for(x)[0] == "features"
    assert SISE(model, layers=["features"])(x).maps.shape == (1, 16, 16)


class _FailsOnLargerInputs(nn.Module):
    """Runs at 16 px; at any other size its forward has a bug (a KeyError)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 16:
            raise KeyError("a bug in the model")
        return self.fc(self.pool(self.conv(x)).mean(dim=(2, 3)))


def test_second_trace_lets_model_errors_through():
    with pytest.raises(KeyError, match="a bug in the model"):
        discover_layers(_FailsOnLargerInputs().eval(), torch.zeros(1, 3, 16, 16))


def test_fixed_size_model_is_still_traced():
    # flatten into a Linear: the larger trace fails with torch's shape error, which is expected
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 2)
    ).eval()
    assert discover_layers(model, torch.zeros(1, 3, 8, 8)) == ["1", "2"]


def test_inputs_too_small_for_the_deepest_stage_warn(small_cnn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert discover_layers(small_cnn, torch.zeros(1, 3, 16, 16)) == [
            "features.2",
            "features.5",
            "features",
        ]
    # At 4 px the second pooling leaves a 1x1 map: the last convolution has nothing to show.
    with pytest.warns(UserWarning, match="4x4 px are too small.*'features.6' shrinks to 1x1"):
        names = discover_layers(small_cnn, torch.zeros(1, 3, 4, 4))
    assert names == ["features.2", "features.5"]


def test_plain_vit_block_choice():
    from sise.core.layers import plain_block_indices

    # ends of the first three quarters, then the input of the last block (the second-to-last)
    assert plain_block_indices(12) == [2, 5, 8, 10]
    assert plain_block_indices(24) == [5, 11, 17, 22]
    assert plain_block_indices(4) == [0, 1, 2]
    assert plain_block_indices(2) == [0]
    assert plain_block_indices(1) == []


class _TokenBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


class _PlainTokenNet(nn.Module):
    """Patch embedding, a class token, 8 blocks at one resolution, the tokens' mean to a head:
    no stage, so evenly spaced blocks are SISE's layers."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.blocks = nn.ModuleList(_TokenBlock(8) for _ in range(8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(tokens.mean(dim=1))


def test_plain_token_model_gets_evenly_spaced_blocks_with_their_layout():
    from sise.core.feature_layout import FeatureLayout
    from sise.core.layers import discover_with_layouts

    torch.manual_seed(0)
    model = _PlainTokenNet().eval()
    found = discover_with_layouts(model, torch.zeros(1, 3, 32, 32))
    # 8 blocks: 1, 3, 5 end the quarters, 6 is the last block's input; 1 + 8 × 8 tokens, and
    # the trace at 64 px (1 + 16 × 16) gives the one prefix token exactly
    layout = FeatureLayout("tokens", 8, 8, 1)
    assert found == [(f"blocks.{i}", layout) for i in (1, 3, 5, 6)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer keeps maps: the gradients reach the grid
        result = SISE(model)(torch.randn(1, 3, 32, 32), 0)
    assert result.layer_names == ["blocks.1", "blocks.3", "blocks.5", "blocks.6"]
    assert (result.kept_maps > 0).all()


def test_fixed_size_cnn_with_as_many_channels_as_rows_keeps_its_layout():
    """(1, 8, 8, 8) reads as (N, C, h, w) and (N, h, w, C), and a flatten into a Linear leaves
    no second input size to tell: the convolution's output is (N, C, h, w) by construction,
    the ReLU after it keeps its input's layout and the Sequential returns the ReLU's map."""
    from sise.core.feature_layout import FeatureLayout
    from sise.core.layers import discover_with_layouts

    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 2),
    ).eval()
    found = discover_with_layouts(model, torch.zeros(1, 3, 16, 16))
    # "3": the last pooled map, which the flatten reads (as test_fixed_size_model_is_still_traced)
    assert found == [
        ("0", FeatureLayout("nchw", 16, 16)),
        ("2", FeatureLayout("nchw", 8, 8)),
        ("3", FeatureLayout("nchw", 4, 4)),
    ]
