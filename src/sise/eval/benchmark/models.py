"""The benchmark's models: TorchRay's VOC/COCO checkpoints, small synthetic-data CNNs, and any
model :func:`sise.models.loading.load_model` knows, all as :class:`sise.models.loading.LoadedModel`.

TorchRay's checkpoints load through :func:`sise.models.loading.load_model` as
``torchray-ARCH-DATASET`` (:mod:`sise.models.torchray`: TorchRay's architecture patches, its
weight conversion from Caffe and Caffe's preprocessing); the models are multi-label, so the
explained score is the sigmoid.

Synthetic models (:func:`load_synthetic_model`): a small VGG-style and a small ResNet-style
multi-label CNN trained by ``benchmarks/train_synthetic.py`` on :func:`synthetic_dataset`, shipped
as ``sise/data/synthetic_{vgg,resnet}.pt`` so that nothing has to be downloaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.eval.data.synthetic import (  # the synthetic data live there; kept importable from here
    SYNTHETIC_CLASSES,
    SYNTHETIC_DATA,
    SyntheticData,
    default_cache_dir,
    synthetic_dataset,
)
from sise.models.checkpoints import (
    load_state_dict_checked,
    read_checkpoint,  # re-exported: the one checkpoint unwrapper lives in sise.models.checkpoints
)
from sise.models.loading import LoadedModel, load_model
from sise.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from sise.models.torchray import TORCHRAY_DATASETS, parse_torchray_name

__all__ = [
    "SYNTHETIC_DATA",
    "SmallResNet",
    "SmallVGG",
    "SyntheticData",
    "default_cache_dir",
    "load_benchmark_model",
    "load_synthetic_model",
    "read_checkpoint",
    "synthetic_dataset",
]

# --------------------------------------------------------------------------------------------
# small models for the synthetic data


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallVGG(nn.Module):
    """A VGG-style multi-label CNN: conv-conv-pool blocks, a last conv-conv block, global
    average pooling and a linear head.

    At 64 × 64 the feature maps are 64, 32, 16 and 8 pixels wide; SISE's layers are the inputs
    of the three max-pools and the last block's output (``features.5, .12, .19`` and
    ``features``, whose output is that of ``features.26``).
    """

    def __init__(self, num_classes: int = 6, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for index, width in enumerate(widths):
            layers += _conv_bn_relu(cin, width) + _conv_bn_relu(width, width)
            if index < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class BasicBlock(nn.Module):
    """Two 3 × 3 convolutions with a shortcut (a strided 1 × 1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    """A ResNet-style multi-label CNN: a stem at full resolution, then residual stages that each
    start with a stride-2 block, global average pooling and a linear head.

    At 64 × 64 the stages are 64 (stem), 32, 16 and 8 pixels wide; SISE's layers are
    ``stem, layer1, layer2, layer3``.
    """

    def __init__(
        self,
        num_classes: int = 6,
        widths: Sequence[int] = (16, 32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if len(blocks) != len(widths) - 1:
            raise SiseError("SmallResNet needs one block count per stage after the stem")
        self.stem = nn.Sequential(*_conv_bn_relu(3, widths[0]))
        cin = widths[0]
        for index, (width, count) in enumerate(zip(widths[1:], blocks, strict=True)):
            stage = [BasicBlock(cin, width, stride=2)]
            stage += [BasicBlock(width, width) for _ in range(count - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            cin = width
        self.num_stages = len(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.fc(self.pool(x).flatten(1))


SYNTHETIC_ARCHS: dict[str, type[nn.Module]] = {"vgg": SmallVGG, "resnet": SmallResNet}


def synthetic_weights_path(kind: str) -> Path:
    """Where the shipped weights of ``kind`` (``"vgg"`` or ``"resnet"``) live."""
    if kind not in SYNTHETIC_ARCHS:
        raise SiseError(f"unknown synthetic model {kind!r}: use 'vgg' or 'resnet'")
    return Path(str(resources.files("sise") / "data" / f"synthetic_{kind}.pt"))


def build_synthetic_model(kind: str, num_classes: int = len(SYNTHETIC_CLASSES)) -> nn.Module:
    """An untrained small model of ``kind`` (``"vgg"`` or ``"resnet"``)."""
    if kind not in SYNTHETIC_ARCHS:
        raise SiseError(f"unknown synthetic model {kind!r}: use 'vgg' or 'resnet'")
    return SYNTHETIC_ARCHS[kind](num_classes=num_classes)


def load_synthetic_model(
    kind: str, *, device: str | torch.device = "cpu", weights: str | Path | None = None
) -> LoadedModel:
    """A small CNN trained on the synthetic shapes (``"vgg"`` or ``"resnet"``), offline.

    Inputs are 64 × 64 RGB normalised with the ImageNet statistics; the model is multi-label
    (explain it with ``score="sigmoid"``); its classes are :data:`SYNTHETIC_CLASSES`.

    Args:
        kind: ``"vgg"`` or ``"resnet"``.
        device: where to put the model.
        weights: another weights file for the same architecture (default: the shipped one).
    """
    model = build_synthetic_model(kind)
    path = Path(weights) if weights is not None else synthetic_weights_path(kind)
    if not path.is_file():
        raise SiseError(
            f"the weights of the synthetic {kind} model are missing ({path}): train them with "
            "python benchmarks/train_synthetic.py"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in read_checkpoint(path).items()}
    load_state_dict_checked(model, state, str(path))
    model = model.eval().to(device)
    size = SYNTHETIC_DATA.image_size
    return LoadedModel(
        model,
        list(SYNTHETIC_CLASSES),
        (size, size),
        IMAGENET_MEAN,
        IMAGENET_STD,
        f"synthetic-{kind}",
    )


# --------------------------------------------------------------------------------------------
# one entry point for the command line


def load_benchmark_model(
    spec: str,
    *,
    dataset: str,
    class_names: Sequence[str],
    checkpoint: str | None = None,
    device: str | torch.device = "cpu",
    input_size: int | None = None,
) -> LoadedModel:
    """The model a ``--model`` argument names, checked against the dataset's classes.

    Args:
        spec: ``synthetic-vgg``, ``synthetic-resnet``, ``torchray-vgg16:CKPT``,
            ``torchray-resnet50:CKPT``, a torchvision name, ``timm:NAME`` (with ``checkpoint``
            for weights fine-tuned on the dataset).
        dataset: ``"voc"``, ``"coco"`` or ``"synthetic"`` (picks the TorchRay head).
        class_names: the dataset's classes; the model must have as many outputs.
        checkpoint: weights for a torchvision / timm model.
        device: where to put the model.
        input_size: square input side, or for TorchRay's models the shorter side (the aspect
            ratio kept; default: 224, or 64 for the synthetic models).
    """
    if spec.startswith("synthetic-"):
        kind = spec.removeprefix("synthetic-")
        loaded = load_synthetic_model(kind, device=device, weights=checkpoint)
        if input_size is not None:
            loaded.input_size = (input_size, input_size)
    elif spec.startswith("torchray-"):
        parsed = parse_torchray_name(spec)
        path = parsed.checkpoint or checkpoint
        if not path:
            raise SiseError(
                f"--model {spec} needs the checkpoint file: torchray-{parsed.arch}:PATH"
            )
        if dataset not in TORCHRAY_DATASETS:
            raise SiseError(
                f"TorchRay checkpoints are for voc or coco; the dataset here is {dataset!r}"
            )
        if parsed.dataset not in (None, dataset):
            raise SiseError(f"--model {spec} is a {parsed.dataset} model; the dataset is {dataset}")
        side = input_size or 224
        loaded = load_model(
            f"torchray-{parsed.arch}-{dataset}", path, device=device, input_size=(side, side)
        )
    else:
        loaded = load_model(
            spec,
            checkpoint,
            num_classes=len(class_names) if checkpoint else None,
            device=device,
            # None: the model's own size (260 px for EfficientNet-Lite2)
            input_size=(input_size, input_size) if input_size else None,
        )
    if len(loaded.class_names) != len(class_names):
        raise SiseError(
            f"model {spec!r} has {len(loaded.class_names)} outputs but the dataset has "
            f"{len(class_names)} classes: give a checkpoint fine-tuned on this dataset"
        )
    if list(loaded.class_names) != list(class_names) and not all(
        name.startswith("class ") for name in loaded.class_names
    ):
        warnings.warn(
            f"model {spec!r} names its classes {loaded.class_names[:3]}..., the dataset "
            f"{list(class_names)[:3]}...: class i of the model is taken to be class i of the "
            "dataset",
            stacklevel=2,
        )
    loaded.class_names = list(class_names)
    return loaded
