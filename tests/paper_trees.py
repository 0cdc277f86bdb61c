"""Miniature PASCAL VOC 2007 and MS COCO 2014 trees in the real on-disk layouts, with the
paper's class lists, for the paper's protocol end to end (and TorchRay's own code on the same
files): ``VOCdevkit/VOC2007/{JPEGImages, Annotations, ImageSets/Main/test.txt}`` with
``difficult`` flags, and COCO's ``annotations/instances_val2014.json`` + ``val2014/`` with a crowd
region; plus difficult-subset files in TorchRay's format.

The pairs, by hand (VOC classes: cat 7, chair 8, dog 11, person 14; COCO: person 0, car 2,
dog 16):

* VOC ``000001`` (48 × 36): two dogs, one difficult, and a person who is only difficult:
  one pair, the dog (both boxes); ``000002`` (36 × 48, portrait): a cat and a chair, two pairs;
  ``000003`` (48 × 36): a person, and a bird who is only difficult: one pair, the person;
  ``000004`` (40 × 40): only a difficult sofa: no pair.
* COCO image 1 (48 × 36): a crowd of people (its only person, L-shaped) and a dog (a triangle):
  two pairs, the person from the crowd alone; image 2 (36 × 48): two cars, one pair; image 3: no annotation, no pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sise.models.classes import COCO_CLASSES, VOC_CLASSES

#: The (image id, class name) pairs of the VOC tree, in reading order.
VOC_PAIRS = [("000001", "dog"), ("000002", "cat"), ("000002", "chair"), ("000003", "person")]
#: Those of the COCO tree.
COCO_PAIRS = [("1", "person"), ("1", "dog"), ("2", "car")]
#: The pairs in the difficult subsets that :func:`write_difficult_files` writes.
VOC_DIFFICULT = [("000001", "dog"), ("000002", "chair"), ("000003", "person")]
COCO_DIFFICULT = [("1", "person"), ("2", "car")]

#: COCO's 80 category ids, in increasing order (class index i is the i-th).
COCO_CATEGORY_IDS = [
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
    *range(72, 83), *range(84, 91),
]  # fmt: skip


def _photo(path: Path, width: int, height: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def _voc_object(name: str, box: tuple[int, int, int, int], difficult: bool = False) -> str:
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def write_voc_tree(root: Path) -> Path:
    """The VOC tree under ``root``; returns ``root / "VOCdevkit"``."""
    base = root / "VOCdevkit" / "VOC2007"
    images = {
        "000001": (
            (48, 36),
            [
                _voc_object("dog", (5, 5, 20, 20)),
                _voc_object("dog", (30, 10, 45, 30), difficult=True),
                _voc_object("person", (1, 1, 10, 10), difficult=True),
            ],
        ),
        "000002": ((36, 48), [_voc_object("cat", (3, 3, 30, 20)), _voc_object("chair", (10, 25, 30, 45))]),
        "000003": (
            (48, 36),
            [_voc_object("person", (1, 1, 48, 36)), _voc_object("bird", (2, 2, 5, 5), True)],
        ),
        "000004": ((40, 40), [_voc_object("sofa", (5, 5, 30, 30), difficult=True)]),
    }  # fmt: skip
    (base / "Annotations").mkdir(parents=True)
    for seed, (image_id, ((width, height), objects)) in enumerate(images.items()):
        _photo(base / "JPEGImages" / f"{image_id}.jpg", width, height, seed)
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{''.join(objects)}</annotation>"
        )
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "test.txt").write_text("\n".join(images) + "\n")
    return root / "VOCdevkit"


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco_tree(root: Path) -> Path:
    """The COCO tree under ``root``; returns ``root / "coco"``."""
    base = root / "coco"
    ids = dict(zip(COCO_CLASSES, COCO_CATEGORY_IDS, strict=True))
    images = [
        {"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "width": 48, "height": 36},
        {"id": 2, "file_name": "COCO_val2014_000000000002.jpg", "width": 36, "height": 48},
        {"id": 3, "file_name": "COCO_val2014_000000000003.jpg", "width": 40, "height": 40},
    ]
    # the crowd, L-shaped, as a column-major uncompressed RLE (COCO's crowds)
    crowd = np.zeros((36, 48), dtype=bool)
    crowd[20:36, 2:10] = True
    crowd[30:36, 10:20] = True
    flat = crowd.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    annotations = [
        (1, "person", {"counts": counts, "size": [36, 48]}, [2, 20, 18, 16], 1),
        (1, "dog", [[25, 5, 45, 5, 25, 25]], [25, 5, 20, 20], 0),  # a triangle in its box
        (2, "car", _rect(2, 2, 12, 12), [2, 2, 10, 10], 0),
        (2, "car", _rect(20, 30, 34, 46), [20, 30, 14, 16], 0),
    ]
    data = {
        "images": images,
        "categories": [{"id": ids[name], "name": name} for name in COCO_CLASSES],
        "annotations": [
            {
                "id": number,
                "image_id": image,
                "category_id": ids[name],
                "segmentation": segmentation,
                "area": float(box[2] * box[3]),
                "bbox": box,
                "iscrowd": crowd_flag,
            }
            for number, (image, name, segmentation, box, crowd_flag) in enumerate(annotations, 1)
        ],
    }
    for seed, image in enumerate(images):
        _photo(base / "val2014" / image["file_name"], image["width"], image["height"], 10 + seed)
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return base


def _flag_line(name: str, classes: tuple[str, ...], flagged: set[str]) -> str:
    return "\t".join([name, *("1" if c in flagged else "0" for c in classes)])


def write_difficult_files(root: Path) -> tuple[Path, Path]:
    """Difficult-subset files in TorchRay's format for the two trees (VOC, COCO): VOC's flags
    000001's dog and 000002's chair (not its cat), and does not list 000003 (so its person is
    in); COCO's flags image 1's person (not its dog) and does not list image 2."""
    voc = root / "voc_difficult.txt"
    voc.write_text(
        "\n".join(
            [
                _flag_line("000001", VOC_CLASSES, {"dog"}),
                _flag_line("000002", VOC_CLASSES, {"chair"}),
                _flag_line("000004", VOC_CLASSES, {"sofa"}),
            ]
        )
        + "\n"
    )
    coco = root / "coco_difficult.txt"
    coco.write_text(_flag_line("COCO_val2014_000000000001", COCO_CLASSES, {"person"}) + "\n")
    return voc, coco
