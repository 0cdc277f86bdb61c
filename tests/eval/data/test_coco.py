"""The COCO reader on a tiny fixture dataset written in the real on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sise.errors import SiseError
from sise.eval import (
    COCODetection2014,
    gt_mask,
    pointing_region,
)


def write_jpeg(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 30, 200)).save(path)


def polygon_rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def coco_data() -> dict:
    return {
        "images": [
            {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 6, "height": 5},
            {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "width": 6, "height": 5},
            {"id": 9, "file_name": "COCO_val2014_000000000009.jpg", "width": 6, "height": 5},
        ],
        # ids out of order and not contiguous, like COCO's
        "categories": [
            {"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 42,
                "category_id": 18,
                "segmentation": polygon_rect(1, 1, 4, 3),
                "area": 6.0,
                "bbox": [1, 1, 3, 2],
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 42,
                "category_id": 1,
                # column-major uncompressed RLE: rows 2-4 of columns 1 and 2
                "segmentation": {"counts": [7, 3, 2, 3, 15], "size": [5, 6]},
                "area": 6.0,
                "bbox": [1, 2, 2, 3],
                "iscrowd": 1,
            },
            {
                "id": 3,
                "image_id": 42,
                "category_id": 18,
                "segmentation": polygon_rect(4, 3, 6, 5),
                "area": 4.0,
                "bbox": [4, 3, 2, 2],
                "iscrowd": 0,
            },
            {
                "id": 4,
                "image_id": 7,
                "category_id": 3,
                "segmentation": polygon_rect(0, 0, 2, 2),
                "area": 4.0,
                "bbox": [0, 0, 2, 2],
                "iscrowd": 0,
            },
        ],
    }


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    data = coco_data()
    for image in data["images"]:
        write_jpeg(root / "val2014" / image["file_name"], image["width"], image["height"])
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return root


def grid(cells: list[tuple[slice, slice]], shape: tuple[int, int] = (5, 6)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for rows, cols in cells:
        mask[rows, cols] = True
    return mask


def test_coco_pairs_boxes_and_masks(coco_root: Path) -> None:
    data = COCODetection2014(coco_root)
    assert data.class_names == ["person", "car", "dog"]
    assert data.category_ids == [1, 3, 18]
    pairs = list(data)
    assert [(p.image_id, p.class_index, p.class_name) for p in pairs] == [
        ("42", 0, "person"),
        ("42", 2, "dog"),
        ("7", 1, "car"),
    ]
    person, dog, car = pairs
    assert person.image_path == coco_root / "val2014" / "COCO_val2014_000000000042.jpg"
    assert (person.width, person.height) == (6, 5)
    # xywh -> xyxy
    assert person.boxes == [(1.0, 2.0, 3.0, 5.0)]
    assert dog.boxes == [(1.0, 1.0, 4.0, 3.0), (4.0, 3.0, 6.0, 5.0)]
    assert car.boxes == [(0.0, 0.0, 2.0, 2.0)]
    assert (person.crowd, dog.crowd, car.crowd) == ([True], [False, False], [False])
    assert dog.difficult == [False, False]
    assert person.mask is not None and dog.mask is not None and car.mask is not None
    assert np.array_equal(person.mask, grid([(slice(2, 5), slice(1, 3))]))
    dog_mask = grid([(slice(1, 3), slice(1, 4)), (slice(3, 5), slice(4, 6))])
    assert np.array_equal(dog.mask, dog_mask)
    assert np.array_equal(car.mask, grid([(slice(0, 2), slice(0, 2))]))
    # segmentation as G, at full and at double resolution (nearest neighbour)
    assert np.array_equal(gt_mask(dog, 5, 6, use_segmentation=True).numpy(), dog_mask)
    double = gt_mask(dog, 10, 12, use_segmentation=True).numpy()
    assert np.array_equal(double, np.kron(dog_mask, np.ones((2, 2), dtype=bool)))
    # boxes as G (the default) match the rectangles here
    assert np.array_equal(gt_mask(dog, 5, 6).numpy(), dog_mask)
    assert [image.class_indices for image in data.images()] == [(0, 2), (1,), ()]
    assert data[1].boxes == dog.boxes
    # the other classes' boxes of the same image (the crowd person included), none for car
    assert person.other_boxes == dog.boxes
    assert dog.other_boxes == person.boxes
    assert car.other_boxes == []


def test_coco_pointing_region_is_the_segmentations_crowds_included(coco_root: Path) -> None:
    """TorchRay's pointing game takes the union of the class's segmentations at the original
    size, decoded from the pairs even when the reader decodes no masks."""
    with_masks = list(COCODetection2014(coco_root))
    without = list(COCODetection2014(coco_root, with_masks=False))
    for pair, bare in zip(with_masks, without, strict=True):
        assert bare.mask is None and len(bare.segmentations) == len(bare.boxes)
        assert np.array_equal(pointing_region(bare).numpy(), pair.mask)
    assert without[0].crowd == [True]  # the person is a crowd region, an RLE
    # a triangle covers less than its box
    bare = without[2]
    bare.segmentations = [[[0, 0, 2, 0, 0, 2]]]
    region = pointing_region(bare).numpy()
    assert region[0, 0] and not region[1, 1] and region.sum() < gt_mask(bare, 5, 6).sum()
    # an annotation without a segmentation adds its box
    bare.segmentations = [None]
    assert np.array_equal(pointing_region(bare).numpy(), gt_mask(bare, 5, 6).numpy())


def test_coco_without_crowd_and_masks(coco_root: Path) -> None:
    data = COCODetection2014(coco_root, include_crowd=False, with_masks=False)
    assert [(p.image_id, p.class_name) for p in data] == [("42", "dog"), ("7", "car")]
    assert all(p.mask is None for p in data)
    assert data[0].other_boxes == []  # the crowd person was dropped


def test_coco_errors(coco_root: Path, tmp_path: Path) -> None:
    ann_file = coco_root / "annotations" / "instances_val2014.json"
    with pytest.raises(SiseError, match=r"instances_train2014.json not found"):
        COCODetection2014(coco_root, split="train2014")
    (coco_root / "annotations" / "instances_other.json").write_text("{}")
    with pytest.raises(SiseError, match=r"image folder .*other not found"):
        COCODetection2014(coco_root, split="other")
    ann_file.write_text('{"images": [')
    with pytest.raises(SiseError, match=r"broken COCO annotation file .*instances_val2014.json"):
        COCODetection2014(coco_root)
    ann_file.write_text(json.dumps({"images": []}))
    with pytest.raises(SiseError, match="needs the lists"):
        COCODetection2014(coco_root)
    data = coco_data()
    data["annotations"][3]["category_id"] = 99
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SiseError, match=r"annotation 4 .* unknown category id 99"):
        COCODetection2014(coco_root)
    data = coco_data()
    data["annotations"] = []
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SiseError, match="no annotated images"):
        COCODetection2014(coco_root)
