"""How a photo becomes a model's input: every :class:`sise.models.loading.LoadedModel` carries
its own :class:`Preprocessing`.

Both transforms read an (H, W, 3) uint8 RGB photo, scale it to [0, 1] (``x = rgb / 255``),
resize it (bilinear, ``align_corners=False``), then normalise each channel:
``(x - mean) / std``. They differ in the resize:

* ``"stretch"`` (the ImageNet models, the synthetic CNNs): the whole photo, no crop, to exactly
  ``input_size`` = (H, W), with antialiasing, so the explanation covers everything in it.
* ``"shorter-side"`` (TorchRay's Caffe-converted VOC/COCO models): TorchRay's
  ``torchray.benchmark.models.get_transform(dataset, size)`` for ``"voc"`` / ``"coco"``. The
  shorter side becomes ``size`` and the longer one ``int(size * longer / shorter)`` (the aspect
  ratio kept, rounded down), without antialiasing (TorchRay notes that its resize matches
  Caffe's only when it shrinks the photo). ``input_size`` must be square, (size, size); the
  input is then (size, W') or (H', size), not square: read its shape, or :meth:`input_shape`.

Caffe's normalisation is RGB in 0–255 minus the ImageNet mean pixel (123.68, 116.779, 103.939),
without dividing by a standard deviation. TorchRay writes it on [0, 1] values as
``Normalize(mean=CAFFE_MEAN_255 / 255, std=1 / 255)``, which is what :data:`CAFFE_MEAN` and
:data:`CAFFE_STD` hold, so ``(x - mean) / std = 255 x - CAFFE_MEAN_255`` is computed with the
same float32 operations as TorchRay's. The networks' first convolutions want BGR; the flip is
done on their weights when the checkpoint is loaded (:mod:`sise.models.torchray`), not here.

Reference: TorchRay (Fong, Patrick and Vedaldi, "Understanding Deep Networks via Extremal
Perturbations and Smooth Masks", ICCV 2019; github.com/facebookresearch/TorchRay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sise.errors import SiseError

__all__ = [
    "CAFFE_MEAN",
    "CAFFE_MEAN_255",
    "CAFFE_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Preprocessing",
    "Resize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_255 = (123.68, 116.779, 103.939)
"""The ImageNet mean pixel in 0–255 RGB that Caffe's VGG and ResNet subtract (BGR in Caffe)."""
CAFFE_MEAN = tuple(m / 255 for m in CAFFE_MEAN_255)
CAFFE_STD = (1 / 255, 1 / 255, 1 / 255)

Resize = Literal["stretch", "shorter-side"]
RESIZES: tuple[str, ...] = get_args(Resize)


@dataclass(frozen=True)
class Preprocessing:
    """A photo → model input transform (see the module docstring). Runs on the CPU and holds no
    model, so data-loader workers can carry it.

    Attributes:
        input_size: (H, W) for ``"stretch"``; (size, size) for ``"shorter-side"``.
        mean, std: per-channel normalisation of [0, 1] RGB values.
        resize: ``"stretch"`` or ``"shorter-side"``.
    """

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: Resize = "stretch"

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise SiseError(f"unknown resize {self.resize!r}: use one of {RESIZES}")
        if self.resize == "shorter-side" and self.input_size[0] != self.input_size[1]:
            raise SiseError(
                f"input size {self.input_size} is not square: a shorter-side resize (TorchRay's "
                "models) takes one size, the shorter side's; give it as (size, size)"
            )

    def input_shape(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) of the input made from a ``height`` × ``width`` photo."""
        if self.resize == "stretch":
            return self.input_size
        size = self.input_size[0]
        # TorchRay's arithmetic, kept as written: float product and quotient, then int()
        if width < height:
            return int(size * height / width), size
        return size, int(size * width / height)

    def __call__(self, rgb: np.ndarray) -> Tensor:
        """An (H, W, 3) uint8 RGB photo as a (1, 3, h, w) float32 tensor on the CPU."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise SiseError(
                f"expected an (H, W, 3) uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}: "
                "read images with sise.images.load_image"
            )
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255)
        size = self.input_shape(rgb.shape[0], rgb.shape[1])
        antialias = self.resize == "stretch"
        x = F.interpolate(x, size=size, mode="bilinear", antialias=antialias)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std
