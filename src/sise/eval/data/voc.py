"""PASCAL VOC 2007: the reader of its detection splits as evaluation pairs, and the annotation
writer of the generated data sets (synthetic, photos), which are written in its layout.

Boxes follow :mod:`sise.eval.data.pairs`: VOC's 1-based inclusive ``xmin..xmax`` becomes
``x0 = xmin - 1, x1 = xmax``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from sise.errors import SiseError
from sise.eval.data.pairs import Box, EvalImage, EvalPair, PairList
from sise.models.classes import VOC_CLASSES

__all__ = ["VOC_CLASSES", "VOCDetection2007", "voc_annotation_xml"]


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


class VOCDetection2007(PairList):
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
