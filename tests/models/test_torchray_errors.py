"""What a TorchRay name says about a file it cannot load: each message names the problem and
what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchray_files import torchray_file_state, torchvision_state

from sise.errors import SiseError
from sise.models.loading import load_model


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    files = {}
    for name, state in [
        ("voc", torchray_file_state("resnet50", 20)),
        ("coco", torchray_file_state("resnet50", 80, seed=1)),
        ("ten", torchray_file_state("resnet50", 10, seed=2)),
    ]:
        files[name] = folder / f"resnet50_{name}.pth"
        torch.save(state, files[name])
    return files


def test_wrong_dataset(resnet_files: dict[str, Path]) -> None:
    with pytest.raises(SiseError, match=r"80-way head fc.weight \(a coco checkpoint\?\).*20"):
        load_model("torchray-resnet50-voc", resnet_files["coco"])
    with pytest.raises(SiseError, match=r"torchray-resnet50:FILE to read the dataset"):
        load_model(f"torchray-resnet50-voc:{resnet_files['coco']}")
    with pytest.raises(
        SiseError, match=r"10-way head.*20 \(VOC\) or 80 \(COCO\).*--num-classes 10"
    ):
        load_model(f"torchray-resnet50:{resnet_files['ten']}")
    with pytest.raises(SiseError, match="has 20 outputs, not 80: leave out --num-classes"):
        load_model(f"torchray-resnet50:{resnet_files['voc']}", num_classes=80)


def test_truncated_file(resnet_files: dict[str, Path], tmp_path: Path) -> None:
    whole = resnet_files["voc"].read_bytes()
    truncated = tmp_path / "resnet50_voc.pth"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        SiseError,
        match=r"state dict \(a truncated or interrupted download .*: fetch the file again\)",
    ):
        load_model(f"torchray-resnet50:{truncated}")
    with pytest.raises(SiseError, match="does not exist"):
        load_model(f"torchray-resnet50:{tmp_path / 'missing.pth'}")


@pytest.mark.parametrize(("arch", "family"), [("vgg16", "VGG"), ("resnet50", "ResNet")])
def test_torchvision_layout(tmp_path: Path, arch: str, family: str) -> None:
    path = tmp_path / f"{arch}_finetune.pth"
    torch.save(torchvision_state(arch, 20), path)
    with pytest.raises(
        SiseError,
        match=rf"torchvision's {family} layout, not in TorchRay's.*--model {arch} --checkpoint "
        "FILE --num-classes K",
    ):
        load_model(f"torchray-{arch}:{path}")
    # under its own name it loads, with ImageNet preprocessing
    loaded = load_model(arch, path, num_classes=20, input_size=(32, 32))
    assert loaded.resize == "stretch" and loaded.mean == (0.485, 0.456, 0.406)


def test_torchray_file_under_another_name(resnet_files: dict[str, Path]) -> None:
    with pytest.raises(SiseError, match=r"is TorchRay's resnet50.*--model torchray-resnet50:FILE"):
        load_model("resnet50", resnet_files["voc"], num_classes=20)
    with pytest.raises(
        SiseError, match="holds TorchRay's resnet50, not vgg16: use torchray-resnet50"
    ):
        load_model(f"torchray-vgg16:{resnet_files['voc']}")


def test_files_that_fit_neither(resnet_files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(SiseError, match="neither a TorchRay checkpoint nor a torchvision"):
        load_model(f"torchray-vgg16:{other}")
    broken = torch.load(resnet_files["voc"], weights_only=True)
    del broken["layer4.2.bn3.0.running_var"]
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(SiseError, match=r"missing \['layer4.2.bn3.running_var'\].*extra.weight"):
        load_model(f"torchray-resnet50:{path}")


def test_names(resnet_files: dict[str, Path]) -> None:
    with pytest.raises(SiseError, match="unknown TorchRay model 'torchray-alexnet'"):
        load_model(f"torchray-alexnet:{resnet_files['voc']}")
    with pytest.raises(SiseError, match="unknown TorchRay dataset 'imagenet'"):
        load_model(f"torchray-resnet50-imagenet:{resnet_files['voc']}")
    with pytest.raises(SiseError, match="needs TorchRay's checkpoint file: torchray-vgg16:FILE"):
        load_model("torchray-vgg16")
    with pytest.raises(SiseError, match="give it once"):
        load_model(f"torchray-resnet50:{resnet_files['voc']}", resnet_files["voc"])
    with pytest.raises(SiseError, match=r"not square.*\(size, size\)"):
        load_model(f"torchray-resnet50:{resnet_files['voc']}", input_size=(224, 300))
