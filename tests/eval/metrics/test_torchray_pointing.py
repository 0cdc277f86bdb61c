"""TorchRay's pointing game, against TorchRay's own code: its ``PointingGame`` on hand-made
regions and points, and its ``PointingGameBenchmark`` (all pairs and the difficult subset, from
the files in its package) on the miniature VOC and COCO trees of tests/paper_trees.py.

TorchRay (CC-BY-NC) is the reference, installed by the test extra; without it these tests skip.
Its own VOC / COCO dataset classes do not run on today's torchvision, so torchvision's, which
they extend, read the trees for it (TorchRay's benchmark accepts those)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from paper_trees import write_coco_tree, write_voc_tree

from sise.eval.data import load_dataset, pointing_region, select_pairs
from sise.eval.data.difficult_subset import read_difficult_subset
from sise.eval.metrics import pointing_game_accuracy, pointing_game_hits_original
from sise.models.preprocessing import CAFFE_MEAN, CAFFE_STD, Preprocessing

REASON = "torchray, the reference, is not installed (pip install torchray==1.0.0.2)"
pointing_game = pytest.importorskip("torchray.benchmark.pointing_game", reason=REASON)
common = pytest.importorskip("torchray.attribution.common", reason=REASON)
torchray_data = pytest.importorskip("torchray.benchmark.datasets", reason=REASON)


def _torchray_point(saliency: torch.Tensor, height: int, width: int) -> tuple[int, int]:
    """The point TorchRay's benchmark takes from a saliency map: resized to the image by its
    ``resize_saliency`` (bilinear), then the first maximum, as ``(x, y)``."""
    resized = common.resize_saliency(None, saliency[None, None], (width, height), "bilinear")
    peak = int(resized.view(-1).argmax())
    return peak % width, peak // width


def _random_region(generator: torch.Generator, height: int, width: int) -> torch.Tensor:
    region = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
        y0, x0 = (int(torch.randint(0, n, (1,), generator=generator)) for n in (height, width))
        h, w = (int(torch.randint(1, 12, (1,), generator=generator)) for _ in range(2))
        region[y0 : y0 + h, x0 : x0 + w] = True
    return region


def test_hits_are_torchrays_on_hand_made_regions_and_points() -> None:
    generator = torch.Generator().manual_seed(0)
    outcomes = set()
    for case in range(300):
        height, width = (int(torch.randint(5, 70, (1,), generator=generator)) for _ in range(2))
        region = _random_region(generator, height, width)
        low = tuple(int(torch.randint(2, 24, (1,), generator=generator)) for _ in range(2))
        saliency = torch.rand(low, generator=generator)
        if case % 10 == 0:
            saliency = torch.zeros(low)  # a constant map: TorchRay points at the first pixel
        tolerance = [15, 5, 1, 0][case % 4]
        point = _torchray_point(saliency, height, width)
        theirs = pointing_game.PointingGame(1, tolerance=tolerance).evaluate(region, point)
        ours = pointing_game_hits_original(saliency[None], [region], tolerance)
        assert bool(ours[0]) == (theirs == 1), (case, point, tolerance)
        outcomes.add(theirs)
    assert outcomes == {1, -1}  # both hits and misses were compared


def test_the_tolerance_disc_is_open_as_torchrays() -> None:
    """A region pixel at exactly the tolerance (9² + 12² = 15²) is outside; one nearer is in."""
    for offset, hit in (((9, 12), False), ((9, 11), True), ((0, 15), False), ((0, 14), True)):
        region = torch.zeros(40, 40, dtype=torch.bool)
        region[5 + offset[0], 5 + offset[1]] = True
        saliency = torch.zeros(40, 40)
        saliency[5, 5] = 1.0
        theirs = pointing_game.PointingGame(1, tolerance=15).evaluate(region, (5, 5))
        assert (theirs == 1) == hit
        assert bool(pointing_game_hits_original(saliency[None], [region])[0]) == hit


def test_accuracy_is_torchrays_mean_of_class_accuracies() -> None:
    generator = torch.Generator().manual_seed(1)
    classes = torch.cat([torch.arange(20), torch.randint(0, 20, (180,), generator=generator)])
    hits = torch.rand(200, generator=generator) < 0.6
    game = pointing_game.PointingGame(20)
    for hit, class_id in zip(hits.tolist(), classes.tolist(), strict=True):
        game.aggregate(1 if hit else -1, class_id)
    assert pointing_game_accuracy(hits, classes) == pytest.approx(100 * float(game.accuracy))


def _compare_with_benchmark(kind: str, spec: str, their_dataset: object, name_of: object) -> None:
    """Every (image, class) pair of the tree through TorchRay's PointingGameBenchmark (all pairs
    and the difficult subset of its package) and through sise: the same pairs evaluated, the same
    hits, the same regions."""
    _, dataset, _ = load_dataset(spec)
    subset = read_difficult_subset(kind)  # from the installed torchray package
    transform = Preprocessing((32, 32), CAFFE_MEAN, CAFFE_STD, "shorter-side")
    generator = torch.Generator().manual_seed(2)
    ours: dict[tuple[str, int], tuple[bool, bool]] = {}
    maps: dict[tuple[str, int], torch.Tensor] = {}
    for index, pair in enumerate(select_pairs(dataset, None)):
        key = (pair.image_path.stem, pair.class_index)
        shape = transform.input_shape(pair.height, pair.width)
        region = pointing_region(pair)
        # maps drawn to the region (hits, most likely) or peaking in a corner far from it
        noise = torch.rand(shape, generator=generator) / 10
        maps[key] = noise + F.interpolate(region[None, None].float(), size=shape)[0, 0]
        far = [
            (y, x)
            for y, x in ((0, 0), (0, 1), (1, 0), (1, 1))
            if not region[y * (pair.height - 5) :][:5, x * (pair.width - 5) :][:, :5].any()
        ]
        if index % 2 == 1 and far:
            maps[key] = noise
            maps[key][far[0][0] * (shape[0] - 1), far[0][1] * (shape[1] - 1)] = 1.0
        hit = bool(pointing_game_hits_original(maps[key][None], [region], 3)[0])
        ours[key] = (hit, subset.contains(pair))
    benchmarks = [pointing_game.PointingGameBenchmark(their_dataset, 3, d) for d in (False, True)]
    theirs: dict[tuple[str, int], tuple[int, int]] = {}
    as_class_ids = (
        torchray_data.voc_as_class_ids if kind == "voc" else torchray_data.coco_as_class_ids
    )
    for index in range(len(their_dataset)):  # type: ignore[arg-type]
        label = their_dataset[index][1]  # type: ignore[index]
        if not label:
            continue  # an image without annotations: TorchRay has nothing to evaluate
        name = name_of(label)  # type: ignore[operator]
        height, width = (
            torchray_data.voc_as_image_size(label)[::-1]
            if kind == "voc"
            else torchray_data.coco_as_image_size(their_dataset, label)[::-1]
        )
        for class_id in as_class_ids(label):
            saliency = maps.get((name, class_id), torch.zeros(4, 4))
            point = _torchray_point(saliency, height, width)
            theirs[(name, class_id)] = tuple(b.evaluate(label, class_id, point) for b in benchmarks)
            if (name, class_id) in ours:
                mask = (
                    torchray_data.voc_as_mask(label, class_id)
                    if kind == "voc"
                    else torchray_data.coco_as_mask(their_dataset, label, class_id)
                )
                pair = next(
                    p for p in dataset if (p.image_path.stem, p.class_index) == (name, class_id)
                )
                assert torch.equal(pointing_region(pair), mask), (name, class_id)
    assert {key for key, (every, _) in theirs.items() if every != 0} == set(ours)
    assert {key for key, (_, hard) in theirs.items() if hard != 0} == {
        key for key, (_, inside) in ours.items() if inside
    }
    for key, (hit, _) in ours.items():
        assert (theirs[key][0] == 1) == hit, key
    assert {outcome for outcome, _ in theirs.values()} >= {1, -1}


def test_voc_protocol_is_torchrays_benchmark(tmp_path: Path) -> None:
    from torchvision.datasets import VOCDetection

    write_voc_tree(tmp_path)
    their_dataset = VOCDetection(str(tmp_path), year="2007", image_set="test")
    _compare_with_benchmark(
        "voc",
        f"voc2007:{tmp_path / 'VOCdevkit'}",
        their_dataset,
        lambda label: label["annotation"]["filename"].split(".")[0],
    )


def test_coco_protocol_is_torchrays_benchmark(tmp_path: Path) -> None:
    from torchvision.datasets import CocoDetection

    root = write_coco_tree(tmp_path)
    their_dataset = CocoDetection(
        str(root / "val2014"), str(root / "annotations" / "instances_val2014.json")
    )
    _compare_with_benchmark(
        "coco",
        f"coco2014:{root}",
        their_dataset,
        lambda label: torchray_data.coco_as_image_name(their_dataset, label),
    )
