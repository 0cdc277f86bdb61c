"""MS COCO 2014: the reader of its detection splits as evaluation pairs, via pycocotools.

Boxes follow :mod:`sise.eval.data.pairs`: COCO's ``[x, y, w, h]`` becomes
``x0 = x, x1 = x + w``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sise.errors import SiseError
from sise.eval.data.pairs import Box, EvalImage, EvalPair, decode_segmentation
from sise.extras import require

__all__ = ["COCODetection2014"]


@dataclass
class _CocoRecord:
    image: dict[str, Any]
    class_index: int
    annotations: list[dict[str, Any]]
    others: list[dict[str, Any]]  # the image's annotations of other classes


def _coco_box(annotation: dict[str, Any]) -> Box:
    x, y, w, h = (float(v) for v in annotation["bbox"])
    return (x, y, x + w, y + h)


class COCODetection2014:
    """MS COCO detection split (e.g. ``val2014``) as evaluation pairs, via pycocotools.

    Layout: ``root/annotations/instances_<split>.json`` and ``root/<split>/<file_name>``.
    The 80 classes are indexed 0..79 in increasing order of their COCO category id (the
    standard contiguous order of COCO classifiers); ``class_names`` holds their names.

    Crowd regions (``iscrowd=1``, an RLE mask over a group of objects) are objects of their
    class, and TorchRay's COCO masks include them, so by default they are part of the pair's
    boxes and mask, flagged in ``EvalPair.crowd``. With ``include_crowd=False`` they are
    dropped, and a class present only as a crowd yields no pair.

    Segmentation masks are decoded lazily, when a pair is read (``with_masks=False`` skips
    them); an annotation without a ``segmentation`` leaves the pair's mask None. Either way each
    pair carries its annotations' segmentations undecoded (``EvalPair.segmentations``), from
    which TorchRay's pointing game decodes its region when it scores the pair
    (:func:`sise.eval.data.pairs.pointing_region`).

    Args:
        root: the COCO folder.
        split: image folder and annotation-file suffix.
        include_crowd: keep ``iscrowd`` annotations.
        with_masks: decode the segmentation masks into ``EvalPair.mask``.

    Raises:
        SiseError: for a missing folder or file, a broken JSON file (named), an annotation of an
            unknown category or image, or a split without annotated images.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val2014",
        *,
        include_crowd: bool = True,
        with_masks: bool = True,
    ) -> None:
        COCO = require("pycocotools.coco", "the COCO 2014 dataset").COCO

        root = Path(root)
        ann_file = root / "annotations" / f"instances_{split}.json"
        self.image_dir = root / split
        if not ann_file.is_file():
            raise SiseError(f"COCO annotation file {ann_file} not found")
        if not self.image_dir.is_dir():
            raise SiseError(f"COCO image folder {self.image_dir} not found")
        try:
            data = json.loads(ann_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise SiseError(f"broken COCO annotation file {ann_file}: {error}") from None
        if not isinstance(data, dict) or not all(
            isinstance(data.get(key), list) for key in ("images", "annotations", "categories")
        ):
            raise SiseError(
                f"broken COCO annotation file {ann_file}: it needs the lists 'images', "
                "'annotations' and 'categories'"
            )
        self.include_crowd = include_crowd
        self.with_masks = with_masks
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()

        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.class_names: list[str] = [c["name"] for c in categories]
        self.category_ids: list[int] = [c["id"] for c in categories]
        index_of = {cat_id: i for i, cat_id in enumerate(self.category_ids)}
        for image in data["images"]:
            if not all(key in image for key in ("id", "file_name", "width", "height")):
                raise SiseError(
                    f"broken COCO annotation file {ann_file}: image entry {image.get('id')} "
                    "needs 'id', 'file_name', 'width' and 'height'"
                )
        known_images = {image["id"] for image in data["images"]}

        grouped: dict[Any, dict[int, list[dict[str, Any]]]] = {}
        for ann in data["annotations"]:
            if ann.get("category_id") not in index_of:
                raise SiseError(
                    f"annotation {ann.get('id')} in {ann_file} has unknown category id "
                    f"{ann.get('category_id')}"
                )
            if ann.get("image_id") not in known_images:
                raise SiseError(
                    f"annotation {ann.get('id')} in {ann_file} refers to unknown image id "
                    f"{ann.get('image_id')}"
                )
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise SiseError(
                    f"annotation {ann.get('id')} in {ann_file} needs a 'bbox' [x, y, w, h]"
                )
            if ann.get("iscrowd", 0) and not include_crowd:
                continue
            per_image = grouped.setdefault(ann["image_id"], {})
            per_image.setdefault(index_of[ann["category_id"]], []).append(ann)

        self._records: list[_CocoRecord] = []
        self._images: list[EvalImage] = []
        for image in data["images"]:
            per_image = grouped.get(image["id"], {})
            classes = tuple(sorted(per_image))
            self._images.append(EvalImage(str(image["id"]), self._path(image), classes))
            for class_index in classes:
                others = [
                    ann for other in classes if other != class_index for ann in per_image[other]
                ]
                self._records.append(
                    _CocoRecord(image, class_index, per_image[class_index], others)
                )
        if not self._records:
            raise SiseError(f"{ann_file} has no annotated images to evaluate")

    def _path(self, image: dict[str, Any]) -> Path:
        return self.image_dir / image["file_name"]

    def _pair(self, record: _CocoRecord) -> EvalPair:
        image = record.image
        mask = None
        height, width = int(image["height"]), int(image["width"])
        if self.with_masks and all("segmentation" in ann for ann in record.annotations):
            union = np.zeros((height, width), dtype=bool)
            for ann in record.annotations:
                union |= decode_segmentation(ann["segmentation"], height, width)
            mask = union
        return EvalPair(
            image_id=str(image["id"]),
            image_path=self._path(image),
            class_index=record.class_index,
            class_name=self.class_names[record.class_index],
            boxes=[_coco_box(ann) for ann in record.annotations],
            width=width,
            height=height,
            difficult=[False] * len(record.annotations),
            crowd=[bool(ann.get("iscrowd", 0)) for ann in record.annotations],
            mask=mask,
            other_boxes=[_coco_box(ann) for ann in record.others],
            segmentations=[ann.get("segmentation") for ann in record.annotations],
        )

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> EvalPair:
        return self._pair(self._records[index])

    def __iter__(self) -> Iterator[EvalPair]:
        return (self._pair(record) for record in self._records)

    def images(self) -> list[EvalImage]:
        """Every image of the annotation file, in file order, with the classes of its pairs."""
        return list(self._images)
