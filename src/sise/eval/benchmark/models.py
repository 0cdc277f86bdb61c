"""The benchmark's models: TorchRay's VOC/COCO checkpoints, small synthetic-data CNNs, and any
model :func:`sise.models.loading.load_model` knows, all as :class:`sise.models.loading.LoadedModel`.

TorchRay checkpoints (what is assumed, from TorchRay's documentation of
``torchray.benchmark.models.get_model(arch, dataset)``; no TorchRay code is used):

* they are state dicts of torchvision's ``vgg16`` / ``resnet50`` whose last classifier layer is
  replaced by a 20-way (PASCAL VOC 2007) or 80-way (MS COCO 2014) layer: ``classifier.6`` for
  VGG16, ``fc`` for ResNet-50; every other key is torchvision's;
* the dict may be wrapped in a ``"state_dict"`` or ``"model"`` entry (other entries, such as an
  epoch counter, are ignored) and its keys may carry DataParallel's ``module.`` prefix;
* a fully-convolutional variant stores the classifier layers as convolutions
  (``classifier.0.weight`` of shape (4096, 512, 7, 7), ``classifier.6.weight`` of shape
  (K, 4096, 1, 1), ``fc.weight`` of shape (K, 2048, 1, 1)); those are reshaped to the linear
  layers they are equivalent to;
* inputs are RGB in [0, 1] normalised with the ImageNet mean and standard deviation, resized to
  224 × 224; the models are multi-label, so the explained score is the sigmoid.

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
from sise.eval.data.voc import VOC_CLASSES
from sise.models.loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    load_model,
    load_state_dict_checked,
    read_checkpoint,  # re-exported: the one checkpoint unwrapper lives in sise.models.loading
)

__all__ = [
    "COCO_CLASSES",
    "SYNTHETIC_DATA",
    "SmallResNet",
    "SmallVGG",
    "SyntheticData",
    "default_cache_dir",
    "load_benchmark_model",
    "load_synthetic_model",
    "load_torchray_model",
    "read_checkpoint",
    "synthetic_dataset",
]

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
"""The 80 COCO 2014 classes in increasing category-id order (the index of COCO classifiers)."""

TORCHRAY_ARCHS = ("vgg16", "resnet50")
TORCHRAY_DATASETS: dict[str, tuple[str, ...]] = {"voc": VOC_CLASSES, "coco": COCO_CLASSES}
_HEADS = {"vgg16": "classifier.6", "resnet50": "fc"}


# --------------------------------------------------------------------------------------------
# checkpoints


def _linearise_conv_head(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Reshape convolutional classifier weights (fully-convolutional variants) to linear ones."""
    own = model.state_dict()
    fixed = dict(state)
    for key, value in state.items():
        target = own.get(key)
        if (
            target is not None
            and target.ndim == 2
            and value.ndim == 4
            and value.shape[0] == target.shape[0]
            and value.numel() == target.numel()
        ):
            # (out, C, kh, kw) flattens in torchvision's (C, H, W) flatten order
            fixed[key] = value.reshape(target.shape)
    return fixed


def load_torchray_model(
    arch: str,
    checkpoint: str | Path,
    dataset: str = "voc",
    *,
    device: str | torch.device = "cpu",
    input_size: tuple[int, int] = (224, 224),
) -> LoadedModel:
    """A TorchRay-format VGG16 / ResNet-50 fine-tuned on PASCAL VOC 2007 or MS COCO 2014.

    Args:
        arch: ``"vgg16"`` or ``"resnet50"``.
        checkpoint: the checkpoint file (see the module docstring for the assumed format).
        dataset: ``"voc"`` (20 classes) or ``"coco"`` (80 classes).
        device: where to put the model.
        input_size: (H, W) images are resized to.

    Raises:
        SiseError: missing file, wrong head size (e.g. a COCO checkpoint for VOC), or any other
            key or shape that does not fit, named.
    """
    import torchvision

    if arch not in TORCHRAY_ARCHS:
        raise SiseError(f"unknown TorchRay architecture {arch!r}: use one of {TORCHRAY_ARCHS}")
    if dataset not in TORCHRAY_DATASETS:
        raise SiseError(
            f"unknown TorchRay dataset {dataset!r}: use one of {tuple(TORCHRAY_DATASETS)}"
        )
    classes = TORCHRAY_DATASETS[dataset]
    state = read_checkpoint(checkpoint)
    # Built on the meta device: no time is spent drawing random weights that the checkpoint
    # replaces; the strict load below fills every parameter and buffer.
    with torch.device("meta"):
        model = torchvision.models.get_model(arch, weights=None, num_classes=len(classes))
    state = _linearise_conv_head(model, state)
    head = state.get(f"{_HEADS[arch]}.weight")
    if head is not None and head.shape[0] != len(classes):
        other = [name for name, names in TORCHRAY_DATASETS.items() if len(names) == head.shape[0]]
        hint = f" (a {other[0]} checkpoint?)" if other else ""
        raise SiseError(
            f"checkpoint {str(checkpoint)!r} has a {head.shape[0]}-way head "
            f"{_HEADS[arch]}.weight{hint}, but {dataset} needs {len(classes)} classes"
        )
    model = model.to_empty(device="cpu")
    load_state_dict_checked(model, state, f"TorchRay {arch} checkpoint {str(checkpoint)!r}")
    model = model.eval().to(device)
    return LoadedModel(
        model, list(classes), input_size, IMAGENET_MEAN, IMAGENET_STD, f"torchray-{arch}-{dataset}"
    )


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
        input_size: square input side (default: 224, or 64 for the synthetic models).
    """
    if spec.startswith("synthetic-"):
        kind = spec.removeprefix("synthetic-")
        loaded = load_synthetic_model(kind, device=device, weights=checkpoint)
        if input_size is not None:
            loaded.input_size = (input_size, input_size)
    elif spec.startswith("torchray-"):
        arch, _, path = spec.removeprefix("torchray-").partition(":")
        path = path or (checkpoint or "")
        if not path:
            raise SiseError(f"--model {spec} needs the checkpoint file: torchray-{arch}:PATH")
        if dataset not in TORCHRAY_DATASETS:
            raise SiseError(
                f"TorchRay checkpoints are for voc or coco; the dataset here is {dataset!r}"
            )
        side = input_size or 224
        loaded = load_torchray_model(arch, path, dataset, device=device, input_size=(side, side))
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
