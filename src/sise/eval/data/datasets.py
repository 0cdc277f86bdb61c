"""Readers for the standard detection formats, as (image, class) evaluation pairs.

The paper explains every ground-truth class of every image separately, so both readers yield one
:class:`EvalPair` per (image, class present in the image), with all of that class's boxes.

Box convention: ``(x0, y0, x1, y1)`` in continuous pixel coordinates of the original image,
pixel ``(i, j)`` covering ``[j, j + 1) × [i, i + 1)``; a box covers the pixels whose centres it
contains (:func:`boxes_mask`). VOC's 1-based inclusive ``xmin..xmax`` becomes
``x0 = xmin - 1, x1 = xmax``; COCO's ``[x, y, w, h]`` becomes ``x0 = x, x1 = x + w``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from sise.errors import SiseError
from sise.eval.data.synthetic import synthetic_dataset
from sise.extras import require
from sise.models.classes import VOC_CLASSES

if TYPE_CHECKING:
    from sise.models.loading import LoadedModel

__all__ = [
    "DATASET_KINDS",
    "NEEDS_MODEL",
    "VOC_CLASSES",
    "COCODetection2014",
    "Dataset",
    "EvalImage",
    "EvalPair",
    "VOCDetection2007",
    "boxes_mask",
    "dataset_kind",
    "distractor_mask",
    "gt_mask",
    "load_dataset",
    "select_pairs",
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


# --------------------------------------------------------------------------------------------
# PASCAL VOC


def _read_class_list(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise SiseError(f"{path} lists no class names: write one class name per line")
    return names


def voc_annotation_xml(
    image_id: str,
    size: int,
    objects: Sequence[tuple[str, tuple[int, int, int, int]]],
    database: str,
) -> bytes:
    """A PASCAL VOC annotation file for a square ``size`` px JPEG image ``image_id`` and its
    ``(class name, (x0, y0, x1, y1))`` objects, boxes in 0-based inclusive pixels (written
    1-based, as VOC does). Used by the generated data sets (synthetic, photos)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = database
    size_node = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(size_node, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, (c0, r0, c1, r1) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        # VOC boxes are 1-based and inclusive
        for tag, value in (("xmin", c0), ("ymin", r0), ("xmax", c1), ("ymax", r1)):
            ET.SubElement(box, tag).text = str(value + 1)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def _xml_text(node: ET.Element, tag: str, xml_path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise SiseError(f"broken VOC annotation {xml_path}: missing <{tag}>")
    return child.text.strip()


def _xml_number(node: ET.Element, tag: str, xml_path: Path) -> float:
    text = _xml_text(node, tag, xml_path)
    try:
        return float(text)
    except ValueError:
        raise SiseError(
            f"broken VOC annotation {xml_path}: <{tag}> is {text!r}, not a number"
        ) from None


class VOCDetection2007:
    """PASCAL VOC detection split as evaluation pairs (also reads the synthetic datasets).

    Layout: ``VOCdevkit/VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml,
    ImageSets/Main/<split>.txt}``; ``root`` may point at ``VOCdevkit`` or at ``VOC2007``.

    Classes: ``class_names`` if given, else ``classes.txt`` (one name per line) in the year
    folder or in ``root`` if present (the synthetic datasets write one), else the 20
    :data:`VOC_CLASSES`.

    Difficult objects (TorchRay's pointing-game protocol): with ``include_difficult=False`` a
    class that appears in an image only through ``difficult`` objects yields no pair; a kept
    pair's boxes still include its difficult boxes, since they are objects of the class and a
    map pointing at one is not wrong. ``EvalPair.difficult`` gives the flag of each box.

    Args:
        root: the ``VOCdevkit`` folder or the ``VOC2007`` folder inside it.
        split: name of a file in ``ImageSets/Main`` (``test``, ``trainval``, ``train``, ``val``).
        include_difficult: also yield pairs whose boxes are all difficult.
        class_names: custom class list, in class-index order.
        year: the year folder to look for under ``VOCdevkit``.

    Raises:
        SiseError: for a missing folder or file, a broken XML file (named), an unknown class
            name, or a split without images.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        *,
        include_difficult: bool = False,
        class_names: Sequence[str] | None = None,
        year: str = "2007",
    ) -> None:
        root = Path(root)
        if (root / "Annotations").is_dir():
            base = root
        elif (root / f"VOC{year}" / "Annotations").is_dir():
            base = root / f"VOC{year}"
        else:
            raise SiseError(
                f"no VOC dataset at {root}: expected {root}/VOC{year}/Annotations or "
                f"{root}/Annotations (pass the VOCdevkit or the VOC{year} folder)"
            )
        self.root = base
        self.split = split
        self.include_difficult = include_difficult
        if class_names is not None:
            names = list(class_names)
        elif (base / "classes.txt").is_file():
            names = _read_class_list(base / "classes.txt")
        elif (root / "classes.txt").is_file():
            names = _read_class_list(root / "classes.txt")
        else:
            names = list(VOC_CLASSES)
        if not names or len(set(names)) != len(names):
            raise SiseError(f"class names must be a non-empty list without repeats, got {names}")
        self.class_names: list[str] = names
        self._index = {name: i for i, name in enumerate(names)}

        split_file = base / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            known = sorted(p.stem for p in (base / "ImageSets" / "Main").glob("*.txt"))
            raise SiseError(f"split file {split_file} not found; available splits: {known}")
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise SiseError(f"split {split!r} ({split_file}) lists no images")

        self._images: list[EvalImage] = []
        self._pairs: list[EvalPair] = []
        for image_id in ids:
            pairs = self._read_image(image_id)
            self._pairs.extend(pairs)
            self._images.append(
                EvalImage(image_id, self._image_path(image_id), tuple(p.class_index for p in pairs))
            )
        if not self._pairs:
            raise SiseError(f"split {split!r} of {base} has no annotated objects to evaluate")

    def _image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def _read_image(self, image_id: str) -> list[EvalPair]:
        xml_path = self.root / "Annotations" / f"{image_id}.xml"
        image_path = self._image_path(image_id)
        if not xml_path.is_file():
            raise SiseError(f"annotation {xml_path} of image {image_id!r} is missing")
        if not image_path.is_file():
            raise SiseError(f"image file {image_path} is missing")
        try:
            annotation = ET.parse(xml_path).getroot()
        except ET.ParseError as error:
            raise SiseError(f"broken VOC annotation {xml_path}: {error}") from None
        size = annotation.find("size")
        width = int(_xml_number(size, "width", xml_path)) if size is not None else 0
        height = int(_xml_number(size, "height", xml_path)) if size is not None else 0
        if width <= 0 or height <= 0:
            # Some tools write <size> as 0; the JPEG header is authoritative.
            with Image.open(image_path) as image:
                width, height = image.size

        found: dict[int, list[tuple[Box, bool]]] = {}
        for obj in annotation.iter("object"):
            name = _xml_text(obj, "name", xml_path)
            if name not in self._index:
                raise SiseError(
                    f"unknown class {name!r} in {xml_path}; known classes: {self.class_names} "
                    "(pass class_names= or write classes.txt for a custom dataset)"
                )
            difficult_node = obj.find("difficult")
            difficult = difficult_node is not None and (difficult_node.text or "0").strip() == "1"
            bndbox = obj.find("bndbox")
            if bndbox is None:
                raise SiseError(f"broken VOC annotation {xml_path}: an object has no <bndbox>")
            xmin, ymin, xmax, ymax = (
                _xml_number(bndbox, tag, xml_path) for tag in ("xmin", "ymin", "xmax", "ymax")
            )
            if xmax < xmin or ymax < ymin:
                raise SiseError(f"broken VOC annotation {xml_path}: box with max < min")
            # 1-based inclusive pixel indices -> continuous [x0, x1) coordinates
            box = (xmin - 1.0, ymin - 1.0, xmax, ymax)
            found.setdefault(self._index[name], []).append((box, difficult))

        pairs = []
        for class_index in sorted(found):
            entries = found[class_index]
            flags = [difficult for _, difficult in entries]
            if all(flags) and not self.include_difficult:
                continue
            others = [
                box for other in sorted(found) if other != class_index for box, _ in found[other]
            ]
            pairs.append(
                EvalPair(
                    image_id=image_id,
                    image_path=image_path,
                    class_index=class_index,
                    class_name=self.class_names[class_index],
                    boxes=[box for box, _ in entries],
                    width=width,
                    height=height,
                    difficult=flags,
                    crowd=[False] * len(entries),
                    other_boxes=others,
                )
            )
        return pairs

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> EvalPair:
        return self._pairs[index]

    def __iter__(self) -> Iterator[EvalPair]:
        return iter(self._pairs)

    def images(self) -> list[EvalImage]:
        """Every image of the split, in split order, with the classes of its pairs."""
        return list(self._images)


# --------------------------------------------------------------------------------------------
# MS COCO


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
    them); an annotation without a ``segmentation`` leaves the pair's mask None.

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
        if self.with_masks and all("segmentation" in ann for ann in record.annotations):
            union = np.zeros((image["height"], image["width"]), dtype=bool)
            for ann in record.annotations:
                union |= self.coco.annToMask(ann).astype(bool)
            mask = union
        return EvalPair(
            image_id=str(image["id"]),
            image_path=self._path(image),
            class_index=record.class_index,
            class_name=self.class_names[record.class_index],
            boxes=[_coco_box(ann) for ann in record.annotations],
            width=int(image["width"]),
            height=int(image["height"]),
            difficult=[False] * len(record.annotations),
            crowd=[bool(ann.get("iscrowd", 0)) for ann in record.annotations],
            mask=mask,
            other_boxes=[_coco_box(ann) for ann in record.others],
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


# --------------------------------------------------------------------------------------------
# what the benchmark needs of a dataset, and the --dataset argument


class Dataset(Protocol):
    """What the benchmark needs of a dataset: its evaluation pairs, in a fixed order, and its
    images. :class:`VOCDetection2007` and :class:`COCODetection2014` are such datasets.

    Attributes:
        class_names: the class of each model output, in index order.
    """

    @property
    def class_names(self) -> Sequence[str]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> EvalPair: ...

    def __iter__(self) -> Iterator[EvalPair]: ...

    def images(self) -> list[EvalImage]:
        """Every image, in order, with the classes of its pairs."""
        ...


#: The dataset kinds of ``--dataset KIND[:PATH]``, with the names each kind also answers to.
DATASET_KINDS: dict[str, tuple[str, ...]] = {
    "voc": ("voc", "voc2007"),
    "coco": ("coco", "coco2014"),
    "synthetic": ("synthetic",),
    "photos": ("photos",),
}

#: Kinds whose pairs depend on the model (its classes, its predictions): load the model first.
NEEDS_MODEL: frozenset[str] = frozenset({"photos"})


def dataset_kind(spec: str) -> str:
    """The kind (``voc``, ``coco``, ``synthetic`` or ``photos``) a ``--dataset`` names."""
    name = spec.partition(":")[0].strip().lower()
    for kind, names in DATASET_KINDS.items():
        if name in names:
            return kind
    raise SiseError(
        f"unknown dataset {spec!r}: use voc2007:PATH, coco2014:PATH, synthetic[:PATH] or "
        "photos[:PATH]"
    )


def load_dataset(
    spec: str, split: str | None = None, *, loaded: LoadedModel | None = None
) -> tuple[str, Dataset, dict[str, str]]:
    """A ``--dataset`` argument as ``(kind, dataset, identity)``.

    * ``voc2007:PATH``: :class:`VOCDetection2007` (split ``test`` by default);
    * ``coco2014:PATH``: :class:`COCODetection2014` (split ``val2014``, without masks);
    * ``synthetic[:PATH]``: the synthetic shapes in the VOC layout; without a path, or with a
      path that holds no dataset yet, the held-out split of the data the shipped synthetic models
      were trained on is generated (:func:`sise.eval.data.synthetic.synthetic_dataset`);
    * ``photos[:PATH]``: photos labelled for an ImageNet model
      (:func:`sise.eval.data.photos.photo_dataset`); needs ``loaded``, the model.

    ``identity`` describes the data in the run configuration, so a benchmark resumes only on the
    same data: the folder and split, or for the generated synthetic data their content.
    """
    kind = dataset_kind(spec)
    path = spec.partition(":")[2]
    if kind == "voc":
        if not path:
            raise SiseError("--dataset voc2007 needs the folder: voc2007:PATH/TO/VOCdevkit")
        voc = VOCDetection2007(path, split or "test")
        return "voc", voc, {"kind": "voc2007", "root": str(voc.root.resolve()), "split": voc.split}
    if kind == "coco":
        if not path:
            raise SiseError("--dataset coco2014 needs the folder: coco2014:PATH/TO/COCO")
        if not Path(path).is_dir():
            raise SiseError(f"no COCO dataset folder at {path}: check the path")
        split = split or "val2014"
        coco = COCODetection2014(path, split, with_masks=False)
        return "coco", coco, {"kind": "coco2014", "root": str(Path(path).resolve()), "split": split}
    if kind == "photos":
        if loaded is None:
            raise SiseError("--dataset photos needs the model: pass loaded= to load_dataset")
        from sise.eval.data.photos import photo_dataset  # only this kind needs it

        photos, identity = photo_dataset(path or None, loaded)
        return "photos", photos, identity
    root = Path(path) if path else None
    has_data = root is not None and (
        (root / "Annotations").is_dir() or (root / "VOC2007" / "Annotations").is_dir()
    )
    if root is None or not has_data:
        root = synthetic_dataset(root)
    synthetic = VOCDetection2007(root, split or "test")
    return (
        "synthetic",
        synthetic,
        {"kind": "synthetic", "content": _content_digest(synthetic), "split": synthetic.split},
    )


def _content_digest(dataset: VOCDetection2007) -> str:
    """CRC-32s of the class list, the split file and the first image: generated data are the
    same wherever they are written, so they are identified by content, not by path."""
    classes = dataset.root / "classes.txt"
    split_file = dataset.root / "ImageSets" / "Main" / f"{dataset.split}.txt"
    digest = f"{zlib.crc32(classes.read_bytes() if classes.is_file() else b''):08x}"
    digest += f"{zlib.crc32(split_file.read_bytes()):08x}"
    return digest + f"{zlib.crc32(dataset[0].image_path.read_bytes()):08x}"


def select_pairs(dataset: Dataset, limit: int | None) -> list[EvalPair]:
    """The pairs of the first ``limit`` images of the split (all their classes), in order."""
    if limit is not None and limit < 1:
        raise SiseError(f"--limit must be >= 1, got {limit}")
    images = dataset.images()
    keep = {image.image_id for image in (images if limit is None else images[:limit])}
    pairs = [pair for pair in dataset if pair.image_id in keep]
    if not pairs:
        raise SiseError("the selected images have no ground-truth class to explain")
    return pairs
