from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from sise import SISE, SiseError
from sise.layers import discover_layers, resolve_layers


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
    with pytest.raises(SiseError, match="no layer named 'feature.2'.*features.2"):
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
