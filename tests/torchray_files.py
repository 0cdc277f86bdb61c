"""Files in the layout of TorchRay's published VOC/COCO checkpoints, with random weights (and,
to be refused by the TorchRay loader, files in torchvision's layout).

The layout is what ``torchray.benchmark.models.get_model`` loads (TorchRay 1.0.0.2): VGG16's
classifier without dropout gaps (``classifier.0 / .2 / .4``), ResNet-50's batch norms split in
two (``bnK.0`` running statistics, ``bnK.1`` scale and shift, as Caffe's BatchNorm and Scale
layers), no ``num_batches_tracked`` (Caffe has none), ResNet-50's ``conv1`` with a bias, the first
convolution's channels in BGR order. The keys and shapes are derived from the patched
architecture by inverting the conversion, so they do not depend on the code under test beyond
the architecture (which a TorchRay comparison checks on its own).
"""

from __future__ import annotations

import math
import re

import torch
import torchvision
from torch import Tensor

from sise.models.torchray import torchray_architecture

_VGG_FILE_NAMES = {"classifier.3.": "classifier.2.", "classifier.6.": "classifier.4."}


def file_key(arch: str, key: str) -> str:
    """The key a TorchRay file stores the patched model's ``key`` under."""
    if arch == "vgg16":
        for ours, theirs in _VGG_FILE_NAMES.items():
            if key.startswith(ours):
                return theirs + key.removeprefix(ours)
        return key
    part = "0" if key.rsplit(".", 1)[1] in ("running_mean", "running_var") else "1"
    key = re.sub(r"(^|\.)bn(\d)\.", rf"\1bn\2.{part}.", key)
    return re.sub(r"(^|\.)downsample\.1\.", rf"\1downsample.1.{part}.", key)


def torchray_file_state(
    arch: str, classes: int, *, seed: int = 0, conv_classifier: bool = True
) -> dict[str, Tensor]:
    """Random weights in the layout of TorchRay's ``{arch}`` file for ``classes`` outputs.

    Convolutions are drawn with He's scale on the Caffe input range, so activations and scores
    stay finite and varied; batch-norm statistics are random around (0, 1); the last layer is
    scaled down so the scores are of order one. VGG16's ``classifier.0`` is one random
    (4096, 512) matrix broadcast over the 7 × 7 positions (stride 0, 8 MB instead of 411 MB);
    ``conv_classifier`` stores the classifier layers as convolutions (``(out, in, kh, kw)``)
    rather than as linear layers (``classifier.0`` is a convolution either way).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        own = torchray_architecture(arch, classes).state_dict()
    last = "classifier.6.weight" if arch == "vgg16" else "fc.weight"
    state: dict[str, Tensor] = {}
    for key, meta in own.items():
        shape = meta.shape
        name = key.rsplit(".", 1)[1]
        if name == "num_batches_tracked":
            continue
        if name == "running_var":
            value = torch.rand(shape, generator=generator) + 0.5
        elif name in ("running_mean", "bias"):
            value = 0.1 * torch.randn(shape, generator=generator)
        elif meta.ndim == 1:  # a batch norm's scale
            value = 1 + 0.1 * torch.randn(shape, generator=generator)
        elif key == "classifier.0.weight":
            row = torch.randn(4096, 512, 1, 1, generator=generator) * math.sqrt(2 / 512) / 7
            value = row.expand(4096, 512, 7, 7)
        else:
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=generator) * math.sqrt(2 / fan_in)
            if key == last:  # scores of order one (ResNet's residual sums grow larger)
                value = value * (0.01 if arch == "vgg16" else 1e-4)
            if arch == "vgg16" and key.startswith("classifier.") and conv_classifier:
                value = value.reshape(*shape, 1, 1)
        state[file_key(arch, key)] = value
    return state


def torchvision_state(arch: str, classes: int) -> dict[str, Tensor]:
    """Random weights with the keys and shapes of torchvision's ``arch`` with a ``classes`` head
    (a fine-tune in torchvision's layout, not TorchRay's).

    Every tensor is a random row broadcast over its shape (stride 0), so the file stays a few
    KB even for VGG16's 138 M parameters while each value is still loaded and checked.
    """
    with torch.device("meta"):  # shapes only, no time spent on random initialisation
        model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    generator = torch.Generator().manual_seed(len(arch) * 100 + classes)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            row = torch.randn(value.shape[-1] if value.ndim else 1, generator=generator)
            state[key] = row.expand(value.shape) if value.ndim else row[0].clone()
        else:
            state[key] = torch.zeros(value.shape, dtype=value.dtype)
    return state
