"""The VOC reader on a tiny fixture dataset written in the real on-disk format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sise.errors import SiseError
from sise.eval import (
    VOC_CLASSES,
    EvalImage,
    EvalPair,
    VOCDetection2007,
    gt_mask,
)


def write_jpeg(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 30, 200)).save(path)


def voc_object(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
    )


def voc_xml(image_id: str, size: tuple[int, int] | None, objects: list[str]) -> str:
    size_xml = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        if size
        else ""
    )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
        f"{size_xml}<segmented>0</segmented>{''.join(objects)}</annotation>"
    )


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    """VOCdevkit with 4 test images: mixed difficult flags, a 1-pixel box, no objects, no size."""
    base = tmp_path / "VOCdevkit" / "VOC2007"
    images = {
        # id: ((width, height), size written in the XML?, objects)
        "000001": (
            (20, 10),
            True,
            [
                voc_object("dog", (1, 2, 5, 4)),
                voc_object("dog", (10, 3, 12, 9), difficult=1),
                voc_object("person", (1, 1, 20, 10)),  # the whole image
            ],
        ),
        "000002": (
            (8, 8),
            True,
            [voc_object("person", (2, 2, 6, 6), difficult=1), voc_object("cat", (4, 7, 4, 7))],
        ),
        "000003": ((8, 8), True, []),
        "000004": ((16, 12), False, [voc_object("bird", (2, 3, 6, 5))]),
    }
    (base / "Annotations").mkdir(parents=True)
    for image_id, (size, with_size, objects) in images.items():
        write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", *size)
        xml = voc_xml(image_id, size if with_size else None, objects)
        (base / "Annotations" / f"{image_id}.xml").write_text(xml)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n000003\n000004\n")
    return tmp_path / "VOCdevkit"


def test_voc_pairs(voc_root: Path) -> None:
    data = VOCDetection2007(voc_root)
    assert data.class_names == list(VOC_CLASSES)
    jpeg = voc_root / "VOC2007" / "JPEGImages"
    expected = [
        EvalPair(
            "000001",
            jpeg / "000001.jpg",
            11,
            "dog",
            [(0.0, 1.0, 5.0, 4.0), (9.0, 2.0, 12.0, 9.0)],
            width=20,
            height=10,
            difficult=[False, True],
            crowd=[False, False],
            other_boxes=[(0.0, 0.0, 20.0, 10.0)],  # the person
        ),
        EvalPair(
            "000001",
            jpeg / "000001.jpg",
            14,
            "person",
            [(0.0, 0.0, 20.0, 10.0)],
            20,
            10,
            [False],
            [False],
            other_boxes=[(0.0, 1.0, 5.0, 4.0), (9.0, 2.0, 12.0, 9.0)],  # both dogs
        ),
        # 000002's person is difficult only: skipped as a pair, still an object beside the cat
        EvalPair(
            "000002",
            jpeg / "000002.jpg",
            7,
            "cat",
            [(3.0, 6.0, 4.0, 7.0)],
            8,
            8,
            [False],
            [False],
            other_boxes=[(1.0, 1.0, 6.0, 6.0)],
        ),
        # 000004 has no <size>: read from the JPEG header
        EvalPair(
            "000004",
            jpeg / "000004.jpg",
            2,
            "bird",
            [(1.0, 2.0, 6.0, 5.0)],
            16,
            12,
            [False],
            [False],
        ),
    ]
    assert list(data) == expected
    assert len(data) == 4
    assert data[2] == expected[2]
    assert all(pair.mask is None for pair in data)
    assert data.images() == [
        EvalImage("000001", jpeg / "000001.jpg", (11, 14)),
        EvalImage("000002", jpeg / "000002.jpg", (7,)),
        EvalImage("000003", jpeg / "000003.jpg", ()),
        EvalImage("000004", jpeg / "000004.jpg", (2,)),
    ]


def test_voc_include_difficult_and_year_folder_root(voc_root: Path) -> None:
    data = VOCDetection2007(voc_root / "VOC2007", include_difficult=True)
    assert [(p.image_id, p.class_name, p.difficult) for p in data] == [
        ("000001", "dog", [False, True]),
        ("000001", "person", [False]),
        ("000002", "cat", [False]),
        ("000002", "person", [True]),
        ("000004", "bird", [False]),
    ]
    assert data[3].boxes == [(1.0, 1.0, 6.0, 6.0)]


def test_voc_gt_mask_full_and_half_resolution(voc_root: Path) -> None:
    data = VOCDetection2007(voc_root)
    dog, _, cat, _ = list(data)
    # at the original size a VOC box covers exactly its 1-based inclusive pixels
    full = np.zeros((10, 20), dtype=bool)
    full[1:4, 0:5] = True  # rows 2..4, cols 1..5 (1-based)
    full[2:9, 9:12] = True  # the difficult dog: rows 3..9, cols 10..12
    assert np.array_equal(gt_mask(dog, 10, 20).numpy(), full)
    # at half size: (0, .5, 2.5, 2) -> rows 0-1, cols 0-1; (4.5, 1, 6, 4.5) -> rows 1-3, cols 4-5
    half = np.zeros((5, 10), dtype=bool)
    half[0:2, 0:2] = True
    half[1:4, 4:6] = True
    assert np.array_equal(gt_mask(dog, 5, 10).numpy(), half)
    # the 1-pixel box: exactly pixel (6, 3); at 4x4 it covers no pixel centre and keeps the
    # pixel under its middle (3.25, 1.75) -> (3, 1)
    one = torch.zeros(8, 8, dtype=torch.bool)
    one[6, 3] = True
    assert torch.equal(gt_mask(cat, 8, 8), one)
    assert gt_mask(cat, 4, 4).nonzero().tolist() == [[3, 1]]
    with pytest.raises(SiseError, match="no segmentation"):
        gt_mask(cat, 8, 8, use_segmentation=True)


def test_voc_custom_classes(voc_root: Path) -> None:
    base = voc_root / "VOC2007"
    names = ["bird", "cat", "dog", "person"]
    data = VOCDetection2007(voc_root, class_names=names)
    assert [(p.class_index, p.class_name) for p in data] == [
        (2, "dog"),
        (3, "person"),
        (1, "cat"),
        (0, "bird"),
    ]
    (base / "classes.txt").write_text("person\ndog\ncat\nbird\n")
    from_file = VOCDetection2007(voc_root)
    assert from_file.class_names == ["person", "dog", "cat", "bird"]
    # within an image, pairs follow the class index
    assert [(p.image_id, p.class_index) for p in from_file] == [
        ("000001", 0),
        ("000001", 1),
        ("000002", 2),
        ("000004", 3),
    ]


def test_voc_errors(voc_root: Path, tmp_path: Path) -> None:
    base = voc_root / "VOC2007"
    with pytest.raises(SiseError, match="no VOC dataset"):
        VOCDetection2007(tmp_path / "missing")
    with pytest.raises(SiseError, match="available splits: \\['test'\\]"):
        VOCDetection2007(voc_root, split="val")
    (base / "ImageSets" / "Main" / "empty.txt").write_text("\n")
    with pytest.raises(SiseError, match="lists no images"):
        VOCDetection2007(voc_root, split="empty")
    with pytest.raises(SiseError, match=r"unknown class 'dog'.*000001.xml"):
        VOCDetection2007(voc_root, class_names=["cat", "person", "bird"])
    (base / "Annotations" / "000002.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(SiseError, match=r"broken VOC annotation .*000002.xml"):
        VOCDetection2007(voc_root)
    (base / "Annotations" / "000002.xml").write_text(
        voc_xml("000002", (8, 8), ["<object><name>cat</name></object>"])
    )
    with pytest.raises(SiseError, match=r"000002.xml: an object has no <bndbox>"):
        VOCDetection2007(voc_root)
    (base / "Annotations" / "000002.xml").unlink()
    with pytest.raises(SiseError, match=r"000002.xml of image '000002' is missing"):
        VOCDetection2007(voc_root)
