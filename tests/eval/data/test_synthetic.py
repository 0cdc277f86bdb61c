"""The synthetic VOC-format dataset: determinism, valid boxes, and the VOC reader reads it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sise.errors import SiseError
from sise.eval import SYNTHETIC_CLASSES, VOCDetection2007, make_synthetic_voc
from sise.eval.data.synthetic import _background, _render


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_files_other_seed_other_images(tmp_path: Path) -> None:
    first = files(make_synthetic_voc(tmp_path / "a", 6, image_size=48, seed=3))
    again = files(make_synthetic_voc(tmp_path / "b", 6, image_size=48, seed=3))
    other = files(make_synthetic_voc(tmp_path / "c", 6, image_size=48, seed=4))
    assert first == again
    assert len(first) == 6 * 2 + 3 + 1  # images, annotations, 3 split files, classes.txt
    image = "VOC2007/JPEGImages/000001.jpg"
    assert first[image] != other[image]
    # image i only depends on (seed, i): a longer dataset starts with the same images
    longer = files(make_synthetic_voc(tmp_path / "d", 8, image_size=48, seed=3))
    assert longer[image] == first[image]


def test_layout_splits_and_boxes(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path, 12, image_size=64, seed=0, test_fraction=0.25)
    base = root / "VOC2007"
    assert (base / "classes.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    main = base / "ImageSets" / "Main"
    train = (main / "train.txt").read_text().split()
    test = (main / "test.txt").read_text().split()
    assert len(test) == 3 and len(train) == 9
    assert sorted(train + test) == [f"{i:06d}" for i in range(1, 13)]
    assert (main / "trainval.txt").read_text().split() == train
    for image_id in train + test:
        with Image.open(base / "JPEGImages" / f"{image_id}.jpg") as image:
            assert image.size == (64, 64) and image.mode == "RGB"
        annotation = ET.parse(base / "Annotations" / f"{image_id}.xml").getroot()
        objects = annotation.findall("object")
        assert 1 <= len(objects) <= 3
        boxes = []
        for obj in objects:
            assert obj.findtext("name") in SYNTHETIC_CLASSES
            xmin, ymin, xmax, ymax = (
                int(obj.findtext(f"bndbox/{t}") or 0) for t in ("xmin", "ymin", "xmax", "ymax")
            )
            # 1-based inclusive, inside the image; a shape spans at least ~3/4 of its
            # square (a triangle's height is 1.5 r), whose side is at least 24 % of the image
            assert 1 <= xmin < xmax <= 64 and 1 <= ymin < ymax <= 64
            assert max(xmax - xmin, ymax - ymin) + 1 >= 0.7 * 0.24 * 64
            boxes.append((xmin, ymin, xmax, ymax))
        # objects never overlap
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_boxes_are_tight_around_the_objects() -> None:
    """Each box is the tight box of its object: every border line of it touches the object.

    White-box: the renderer draws the background first from the same random stream, so
    replaying that stream gives the image without objects; object pixels are those that differ
    from it by far more than the sensor noise (sigma 6).
    """
    for index in range(6):
        image, objects = _render(np.random.default_rng([7, index]), 96, 3)
        background = np.asarray(_background(np.random.default_rng([7, index]), 96), dtype=float)
        changed = np.abs(image - background).max(axis=2) > 45
        covered = np.zeros((96, 96), dtype=bool)
        for _, (c0, r0, c1, r1) in objects:
            covered[r0 : r1 + 1, c0 : c1 + 1] = True
            box = changed[r0 : r1 + 1, c0 : c1 + 1]
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
        # nothing but objects changed the image
        assert not (changed & ~covered).any()


def test_reader_reads_it_back(tmp_path: Path) -> None:
    root = make_synthetic_voc(tmp_path, 10, image_size=64, seed=2)
    data = VOCDetection2007(root, split="test")
    assert data.class_names == list(SYNTHETIC_CLASSES)
    base = root / "VOC2007"
    expected = []
    for image_id in (base / "ImageSets" / "Main" / "test.txt").read_text().split():
        annotation = ET.parse(base / "Annotations" / f"{image_id}.xml").getroot()
        per_class: dict[int, list[tuple[float, float, float, float]]] = {}
        for obj in annotation.findall("object"):
            xmin, ymin, xmax, ymax = (
                float(obj.findtext(f"bndbox/{t}") or 0) for t in ("xmin", "ymin", "xmax", "ymax")
            )
            index = SYNTHETIC_CLASSES.index(obj.findtext("name") or "")
            per_class.setdefault(index, []).append((xmin - 1, ymin - 1, xmax, ymax))
        expected += [(image_id, c, per_class[c]) for c in sorted(per_class)]
    assert [(p.image_id, p.class_index, p.boxes) for p in data] == expected
    assert all((p.width, p.height) == (64, 64) and not any(p.difficult) for p in data)
    # round(10 * 0.25) = 2 test images
    assert [image.image_id for image in data.images()] == sorted({p.image_id for p in data})
    assert len(data.images()) == 2


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SiseError, match="n_images"):
        make_synthetic_voc(tmp_path, 1)
    with pytest.raises(SiseError, match="image_size"):
        make_synthetic_voc(tmp_path, 4, image_size=16)
    with pytest.raises(SiseError, match="test_fraction"):
        make_synthetic_voc(tmp_path, 4, test_fraction=1.0)
