"""The evaluation pair (an image and one class present in it) and its ground-truth regions.

The paper explains every ground-truth class of every image separately, so every reader yields one
:class:`EvalPair` per (image, class present in the image), with all of that class's boxes.

Box convention: ``(x0, y0, x1, y1)`` in continuous pixel coordinates of the original image,
pixel ``(i, j)`` covering ``[j, j + 1) × [i, i + 1)``; a box covers the pixels whose centres it
contains (:func:`boxes_mask`). VOC's 1-based inclusive ``xmin..xmax`` becomes
``x0 = xmin - 1, x1 = xmax``; COCO's ``[x, y, w, h]`` becomes ``x0 = x, x1 = x + w``.

Two ground truths: the paper's metrics take the union of the class's boxes at the model's input
size (:func:`gt_mask`); TorchRay's pointing game takes the class's region at the original image's
size (:func:`pointing_region`): the boxes for VOC, the segmentation masks for COCO.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sise.errors import SiseError
from sise.extras import require

__all__ = [
    "Box",
    "EvalImage",
    "EvalPair",
    "boxes_mask",
    "decode_segmentation",
    "distractor_mask",
    "gt_mask",
    "pointing_region",
]

Box = tuple[float, float, float, float]


@dataclass
class EvalPair:
    """One evaluation sample: an image and one class present in it.

    Attributes:
        image_id: the dataset's image identifier (VOC file stem, COCO image id as text).
        image_path: path of the image file.
        class_index: index of the class in the dataset's ``class_names``.
        class_name: name of the class.
        boxes: every box of the class in the image, ``(x0, y0, x1, y1)`` in original pixels.
        width: original image width in pixels.
        height: original image height in pixels.
        difficult: VOC ``difficult`` flag per box (all False for COCO).
        crowd: COCO ``iscrowd`` flag per box (all False for VOC).
        mask: (height, width) bool union of the class's segmentations (COCO), or None.
        other_boxes: the boxes of the image's objects of *other* classes (VOC: every annotated
            object, difficult ones included; COCO: every annotation the reader keeps), for the
            distractor-energy metric; empty when the image holds only this class.
        segmentations: COCO: each box's annotation ``segmentation`` (polygons or RLE, None
            where it has none), decoded only when needed (:func:`pointing_region`); empty for
            VOC.
        in_difficult_subset: whether the pair belongs to the pointing game's "difficult" subset
            (:mod:`sise.eval.data.difficult_subset`); None: not looked up.
    """

    image_id: str
    image_path: Path
    class_index: int
    class_name: str
    boxes: list[Box]
    width: int
    height: int
    difficult: list[bool] = field(default_factory=list)
    crowd: list[bool] = field(default_factory=list)
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    other_boxes: list[Box] = field(default_factory=list)
    segmentations: list[Any] = field(default_factory=list, compare=False, repr=False)
    in_difficult_subset: bool | None = None


class EvalImage(NamedTuple):
    """One image of a split and the classes present in it (e.g. for multi-label training)."""

    image_id: str
    image_path: Path
    class_indices: tuple[int, ...]


def _pixel_span(low: float, high: float, size: int) -> tuple[int, int]:
    """Indices [start, stop) of the pixels whose centres ``k + 0.5`` lie in ``[low, high)``."""
    start = math.ceil(low - 0.5)
    stop = math.ceil(high - 0.5)
    if stop <= start:
        # A box thinner than a pixel covers no centre; keep the pixel under its middle so that
        # an annotated object never vanishes from the ground truth.
        start = math.floor((low + high) / 2)
        stop = start + 1
    return max(0, min(start, size - 1)), max(1, min(stop, size))


def boxes_mask(boxes: Sequence[Box], image_hw: tuple[int, int], height: int, width: int) -> Tensor:
    """Rasterise the union of boxes given in an image of size ``image_hw`` at ``height × width``.

    Boxes are scaled by ``width / image_w`` and ``height / image_h``; a pixel belongs to a box if
    its centre does (so at scale 1 a VOC box covers exactly its annotated pixels), and a box
    too thin to contain any pixel centre still marks the pixel under its middle.

    Returns:
        (height, width) bool tensor on the CPU.
    """
    image_h, image_w = image_hw
    if min(image_h, image_w, height, width) <= 0:
        raise SiseError(f"sizes must be positive, got image {image_hw} and grid {(height, width)}")
    sx, sy = width / image_w, height / image_h
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = _pixel_span(x0 * sx, x1 * sx, width)
        r0, r1 = _pixel_span(y0 * sy, y1 * sy, height)
        mask[r0:r1, c0:c1] = True
    return mask


def gt_mask(pair: EvalPair, height: int, width: int, *, use_segmentation: bool = False) -> Tensor:
    """The ground-truth region ``G`` of a pair at ``height × width``, as a bool tensor.

    By default ``G`` is the union of the class's boxes (SPEC section 3, the paper's metrics).
    With ``use_segmentation=True`` it is the COCO segmentation mask instead (what TorchRay's COCO
    pointing game uses), resized by nearest neighbour at pixel centres.

    Returns:
        (height, width) bool tensor on the CPU.
    """
    if not use_segmentation:
        return boxes_mask(pair.boxes, (pair.height, pair.width), height, width)
    if pair.mask is None:
        raise SiseError(
            f"image {pair.image_id} has no segmentation mask (VOC, or COCO read with "
            "with_masks=False): use use_segmentation=False"
        )
    full = torch.from_numpy(np.ascontiguousarray(pair.mask, dtype=np.uint8))[None, None].float()
    resized = F.interpolate(full, size=(height, width), mode="nearest-exact")
    return resized[0, 0] > 0.5


def distractor_mask(pair: EvalPair, height: int, width: int) -> Tensor:
    """The region ``D`` of the image's objects of other classes (the union of
    ``pair.other_boxes``) at ``height × width``, as a bool tensor on the CPU; all False when the
    image holds no other class."""
    if not pair.other_boxes:
        return torch.zeros(height, width, dtype=torch.bool)
    return boxes_mask(pair.other_boxes, (pair.height, pair.width), height, width)


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO annotation's ``segmentation`` as a (height, width) bool mask, decoded the way
    pycocotools' ``COCO.annToMask`` does: polygons rasterised and merged, an uncompressed RLE
    (``counts`` a list, as crowd regions are stored) compressed first, a compressed RLE as is."""
    mask_utils = require("pycocotools.mask", "COCO segmentation masks")
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        rle = segmentation
    else:
        raise SiseError(f"unreadable COCO segmentation {str(segmentation)[:80]!r}")
    return np.asarray(mask_utils.decode(rle), dtype=bool)


def pointing_region(pair: EvalPair) -> Tensor:
    """The class's region at the original image's size, as TorchRay's pointing game takes it.

    VOC (a pair without segmentations): the union of the class's boxes, the difficult ones
    included, each covering its annotated pixels ``xmin - 1 .. xmax - 1`` (TorchRay's
    ``voc_as_mask``). COCO: the union of the class's segmentation masks, crowd regions included
    (TorchRay's ``coco_as_mask``); an annotation without a segmentation adds its box.

    Returns:
        (height, width) bool tensor on the CPU.
    """
    size = (pair.height, pair.width)
    if not pair.segmentations:
        return boxes_mask(pair.boxes, size, *size)
    if len(pair.segmentations) != len(pair.boxes):
        raise SiseError(
            f"image {pair.image_id}: {len(pair.segmentations)} segmentations for "
            f"{len(pair.boxes)} boxes"
        )
    region = torch.zeros(size, dtype=torch.bool)
    for box, segmentation in zip(pair.boxes, pair.segmentations, strict=True):
        if segmentation is None:
            region |= boxes_mask([box], size, *size)
        else:
            region |= torch.from_numpy(decode_segmentation(segmentation, *size))
    return region


class PairList:
    """A dataset whose pairs are made up front: ``_pairs`` in dataset order and ``_images``
    (each image with the classes of its pairs), set by the subclass's constructor."""

    _pairs: list[EvalPair]
    _images: list[EvalImage]

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> EvalPair:
        return self._pairs[index]

    def __iter__(self) -> Iterator[EvalPair]:
        return iter(self._pairs)

    def images(self) -> list[EvalImage]:
        """The images with at least one pair, in dataset order, with the classes of their pairs."""
        return list(self._images)
