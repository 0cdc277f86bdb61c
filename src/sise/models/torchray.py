"""TorchRay's VGG16 and ResNet-50 for PASCAL VOC 2007 and MS COCO 2014, built and loaded the way
TorchRay builds and loads them.

TorchRay (Fong, Patrick and Vedaldi, "Understanding Deep Networks via Extremal Perturbations and
Smooth Masks", ICCV 2019; github.com/facebookresearch/TorchRay) publishes the multi-label
classifiers of the Excitation Backprop pointing game (Zhang et al., ECCV 2016), converted from
Caffe: ``vgg16_voc``, ``vgg16_coco``, ``resnet50_voc`` and ``resnet50_coco``. The SISE paper
(Sattarzadeh et al., AAAI-21) explains these models. TorchRay's
``torchray.benchmark.models.get_model(arch, dataset)`` takes torchvision's architecture with a
20- (VOC) or 80-way (COCO) last layer and patches it to compute what the Caffe network computes.
What follows is re-derived from the source of TorchRay 1.0.0.2 (``_load_caffe_vgg16``,
``_load_caffe_resnet50``, ``_fix_caffe_maxpool``); no TorchRay code is used (it is CC-BY-NC).

VGG16:

* the file's classifier has no dropout layers: its ``classifier.0 / .2 / .4`` are
  torchvision's ``classifier.0 / .3 / .6``; every classifier weight is reshaped to
  (out, in), so weights stored as convolutions ((4096, 512, 7, 7), (4096, 4096, 1, 1),
  (K, 4096, 1, 1)) load as well as linear ones;
* the input channels of ``features.0.weight`` are in Caffe's BGR order and are reversed;
* every max-pool rounds its output size up (``ceil_mode=True``, Caffe's rounding). The
  classifier still follows torchvision's adaptive 7 × 7 average pool.

ResNet-50:

* ``conv1`` has a bias, and its weight's input channels are reversed (BGR → RGB);
* ``fc`` is linear as in torchvision (TorchRay loads it as stored; a (K, 2048, 1, 1) weight, the
  form of TorchRay's ``convert_to_fully_convolutional=True`` copy, is reshaped here as well);
* the stem max-pool is 3 × 3, stride 2, no padding, rounded up (torchvision pads by 1, rounds
  down);
* in the first bottleneck of ``layer2``–``layer4`` the stride 2 is on the 1 × 1 ``conv1``, not on
  the 3 × 3 ``conv2`` (the original ResNet; torchvision's is "v1.5");
* each batch norm is stored as two entries, ``bnK.0.*`` and ``bnK.1.*`` (Caffe's BatchNorm and
  Scale layers), ``downsample.1.0.*`` / ``downsample.1.1.*`` in the shortcut; the second index
  is dropped. A file without ``num_batches_tracked`` loads, as it does in TorchRay (PyTorch
  fills the counter in for state dicts without version metadata); the counter is unused in eval
  mode.

Both take Caffe's preprocessing (:mod:`sise.models.preprocessing`, ``"shorter-side"``) and are
multi-label: explain the sigmoid of their outputs.

Names: ``torchray-vgg16``, ``torchray-resnet50``, optionally with the dataset
(``torchray-vgg16-voc``, ``torchray-resnet50-coco``), then ``:CHECKPOINT`` (or the checkpoint
given apart). Without the dataset, the head's size says which: 20 outputs are VOC's, 80 COCO's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.models.checkpoints import load_state_dict_checked, read_checkpoint
from sise.models.classes import COCO_CLASSES, VOC_CLASSES

__all__ = [
    "TORCHRAY_ARCHS",
    "TORCHRAY_DATASETS",
    "TorchRayName",
    "from_torchray_layout",
    "load_torchray_weights",
    "parse_torchray_name",
    "torchray_architecture",
    "torchray_layout",
]

TORCHRAY_ARCHS = ("vgg16", "resnet50")
TORCHRAY_DATASETS: dict[str, tuple[str, ...]] = {"voc": VOC_CLASSES, "coco": COCO_CLASSES}
#: The last layer's weight, as the file names it.
FILE_HEADS = {"vgg16": "classifier.4.weight", "resnet50": "fc.weight"}
#: VGG16's classifier in the file (no dropout layers) → in torchvision's ``nn.Sequential``.
_VGG_CLASSIFIER = {"classifier.0.": "classifier.0.", "classifier.2.": "classifier.3.",
                   "classifier.4.": "classifier.6."}  # fmt: skip
#: A batch norm split in two (Caffe's BatchNorm + Scale): ``bn2.1.weight`` → ``bn2.weight``.
_SPLIT_NORM = (
    (re.compile(r"(^|\.)bn(\d)\.[01]\."), r"\1bn\2."),
    (re.compile(r"(^|\.)downsample\.(\d)\.[01]\."), r"\1downsample.\2."),
)
_BGR_CONV = {"vgg16": "features.0.weight", "resnet50": "conv1.weight"}


@dataclass(frozen=True)
class TorchRayName:
    """A parsed ``torchray-ARCH[-DATASET][:CHECKPOINT]`` name."""

    arch: str
    dataset: str | None
    checkpoint: str | None


def parse_torchray_name(name: str) -> TorchRayName:
    """``"torchray-vgg16-voc:/ckpt.pth"`` → ``TorchRayName("vgg16", "voc", "/ckpt.pth")``."""
    spec, colon, path = name.partition(":")
    arch, _, dataset = spec.removeprefix("torchray-").partition("-")
    if not spec.startswith("torchray-") or arch not in TORCHRAY_ARCHS:
        raise SiseError(
            f"unknown TorchRay model {spec!r}: use torchray-vgg16 or torchray-resnet50, "
            "optionally with -voc or -coco, then :CHECKPOINT"
        )
    if dataset and dataset not in TORCHRAY_DATASETS:
        raise SiseError(
            f"unknown TorchRay dataset {dataset!r} in {spec!r}: use -voc or -coco, or leave it "
            "out and the checkpoint's head size decides"
        )
    return TorchRayName(arch, dataset or None, path if colon and path else None)


def torchray_architecture(arch: str, num_classes: int) -> nn.Module:
    """torchvision's ``arch`` with a ``num_classes`` head, patched as TorchRay patches it (see the
    module docstring), with fresh weights (on the default device: build under
    ``torch.device("meta")`` to skip drawing weights a checkpoint replaces)."""
    import torchvision

    if arch not in TORCHRAY_ARCHS:
        raise SiseError(f"unknown TorchRay architecture {arch!r}: use one of {TORCHRAY_ARCHS}")
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if arch == "resnet50":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=True)
        model.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0)
        for stage in (model.layer2, model.layer3, model.layer4):
            stage[0].conv1.stride = (2, 2)
            stage[0].conv2.stride = (1, 1)
    for module in model.modules():
        if isinstance(module, nn.MaxPool2d):
            module.ceil_mode = True
    return model


def torchray_layout(state: dict[str, Tensor]) -> str | None:
    """Which TorchRay file ``state`` looks like (``"vgg16"``, ``"resnet50"``), or None."""
    if "features.0.weight" in state and "classifier.4.weight" in state:
        if "classifier.6.weight" not in state:
            return "vgg16"
    elif "conv1.weight" in state and any(
        pattern.search(key) for key in state for pattern, _ in _SPLIT_NORM
    ):
        return "resnet50"
    return None


def _torchvision_layout(state: dict[str, Tensor]) -> str | None:
    """Which torchvision family ``state`` looks like (``"VGG"``, ``"ResNet"``), or None."""
    if "features.0.weight" in state and "classifier.6.weight" in state:
        return "VGG"
    if "conv1.weight" in state and "bn1.weight" in state and "fc.weight" in state:
        return "ResNet"
    return None


def from_torchray_layout(arch: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A TorchRay file's state dict renamed and converted to :func:`torchray_architecture`'s:
    keys renamed, classifier weights reshaped, the first convolution's channels BGR → RGB."""
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        if arch == "vgg16":
            for old, new in _VGG_CLASSIFIER.items():
                if key.startswith(old):
                    key = new + key.removeprefix(old)
                    break
            if key.startswith("classifier.") and key.endswith(".weight"):
                value = value.reshape(value.shape[0], -1)
        else:
            for pattern, replacement in _SPLIT_NORM:
                key = pattern.sub(replacement, key)
            if key == "fc.weight":  # (K, 2048, 1, 1) from a fully-convolutional copy
                value = value.reshape(value.shape[0], -1)
        if key == _BGR_CONV[arch]:
            value = value[:, [2, 1, 0]]
        converted[key] = value
    return converted


def _dataset_of(arch: str, state: dict[str, Tensor], wanted: str | None, source: str) -> str:
    """The dataset the file's head is for, checked against the one asked for."""
    head = state.get(FILE_HEADS[arch])
    if head is None:
        raise SiseError(f"{source} has no {FILE_HEADS[arch]}: it is not a TorchRay {arch} file")
    size = head.shape[0]
    found = next((name for name, names in TORCHRAY_DATASETS.items() if len(names) == size), None)
    if wanted is not None and found != wanted:
        hint = f" (a {found} checkpoint?)" if found else ""
        raise SiseError(
            f"{source} has a {size}-way head {FILE_HEADS[arch]}{hint}, but {wanted} needs "
            f"{len(TORCHRAY_DATASETS[wanted])} classes: use the checkpoint of "
            f"torchray-{arch}-{wanted}, or torchray-{arch}:FILE to read the dataset from the head"
        )
    if found is None:
        raise SiseError(
            f"{source} has a {size}-way head {FILE_HEADS[arch]}; TorchRay's models have 20 (VOC) "
            "or 80 (COCO) outputs: a fine-tune on other classes in torchvision's layout loads "
            f"with --model {arch} --checkpoint FILE --num-classes {size}"
        )
    return found


def load_torchray_weights(
    arch: str, checkpoint: str | Path, dataset: str | None = None
) -> tuple[nn.Module, str]:
    """TorchRay's ``arch`` with the weights of a TorchRay checkpoint file, on the CPU, in eval
    mode, and its dataset (``"voc"`` or ``"coco"``: ``dataset``, checked, or the head's).

    Raises:
        SiseError: a missing or unreadable file; a file in torchvision's layout, or TorchRay's
            file of the other architecture (each named, with the name to load it by); a head of
            another dataset; any key or shape that does not fit (named after the renaming).
    """
    source = f"checkpoint {str(checkpoint)!r}"
    state = read_checkpoint(checkpoint)
    layout = torchray_layout(state)
    if layout is None:
        family = _torchvision_layout(state)
        if family is not None:
            raise SiseError(
                f"{source} is in torchvision's {family} layout, not in TorchRay's (the Caffe "
                f"conversion, {FILE_HEADS[arch]} and {_BGR_CONV[arch]} in BGR order): load a "
                f"fine-tune in torchvision's layout with --model {arch} --checkpoint FILE "
                "--num-classes K (ImageNet preprocessing)"
            )
        raise SiseError(
            f"{source} is neither a TorchRay checkpoint nor a torchvision VGG / ResNet one "
            f"(its first keys: {list(state)[:3]}): TorchRay's files are vgg16_voc, vgg16_coco, "
            "resnet50_voc and resnet50_coco from dl.fbaipublicfiles.com/torchray/"
        )
    if layout != arch:
        raise SiseError(f"{source} holds TorchRay's {layout}, not {arch}: use torchray-{layout}")
    dataset = _dataset_of(arch, state, dataset, source)
    state = from_torchray_layout(arch, state)
    # On the meta device: no time is spent drawing weights that the strict load replaces.
    with torch.device("meta"):
        model = torchray_architecture(arch, len(TORCHRAY_DATASETS[dataset]))
    model = model.to_empty(device="cpu")
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    load_state_dict_checked(
        model, state, f"TorchRay {arch} {source} (keys after TorchRay's renaming)"
    )
    return model.eval(), dataset
