"""TorchRay's VOC/COCO models: files in TorchRay's published layout (random weights) load as
TorchRay loads them, checked against TorchRay itself where it is installed and against
hand-derived facts everywhere."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from torchray_files import file_key, torchray_file_state

from sise.core.layers import discover_layers
from sise.images import load_image, sample_image_path
from sise.models.classes import COCO_CLASSES, VOC_CLASSES
from sise.models.loading import LoadedModel, load_model
from sise.models.preprocessing import CAFFE_MEAN, CAFFE_STD
from sise.models.torchray import torchray_architecture

CLASSES = {"voc": VOC_CLASSES, "coco": COCO_CLASSES}
FIRST_CONV = {"vgg16": "features.0.weight", "resnet50": "conv1.weight"}
PAPER_LAYERS = {
    "vgg16": ["features.3", "features.8", "features.15", "features.22", "features.29"],
    "resnet50": ["relu", "layer1", "layer2", "layer3", "layer4"],
}


@dataclass
class Case:
    arch: str
    dataset: str
    path: Path
    state: dict[str, Tensor]  # as written in the file
    loaded: LoadedModel


@pytest.fixture(
    scope="module",
    params=[("vgg16", "voc"), ("vgg16", "coco"), ("resnet50", "voc"), ("resnet50", "coco")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def case(request, tmp_path_factory) -> Iterator[Case]:
    """One TorchRay file and the model loaded from it (module scope: VGG16 takes seconds)."""
    arch, dataset = request.param
    # VOC's VGG16 file stores the classifier as convolutions, COCO's as linear layers
    state = torchray_file_state(
        arch, len(CLASSES[dataset]), seed=len(dataset), conv_classifier=dataset == "voc"
    )
    path = tmp_path_factory.mktemp("torchray") / f"{arch}_{dataset}.pth.tar"
    torch.save(state, path)
    loaded = load_model(f"torchray-{arch}:{path}")  # the dataset from the head's size
    yield Case(arch, dataset, path, state, loaded)


def test_published_layout_loads(case: Case) -> None:
    loaded = case.loaded
    assert loaded.name == f"torchray-{case.arch}-{case.dataset}"
    assert loaded.class_names == list(CLASSES[case.dataset])
    assert loaded.resize == "shorter-side" and loaded.input_size == (224, 224)
    assert loaded.mean == CAFFE_MEAN and loaded.std == CAFFE_STD
    assert not loaded.model.training
    # every tensor, found under the file's name: classifier renamed, BGR → RGB, norms merged
    for key, value in loaded.model.state_dict().items():
        if key.endswith("num_batches_tracked"):  # not in Caffe's files
            assert int(value) == 0
            continue
        stored = case.state[file_key(case.arch, key)]
        if key == FIRST_CONV[case.arch]:
            assert torch.equal(value[:, 0], stored[:, 2]) and torch.equal(value[:, 2], stored[:, 0])
            stored = stored[:, [2, 1, 0]]
        assert torch.equal(value, stored.reshape(value.shape)), key
    with torch.no_grad():
        out = loaded.model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, len(CLASSES[case.dataset]))


def test_same_scores_as_torchray(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """TorchRay's ``get_model`` + ``get_transform`` on the same file and photo."""
    torchray_models = pytest.importorskip(
        "torchray.benchmark.models", reason="TorchRay is not installed (pip install torchray)"
    )

    def from_file(url: str, *args: object, **kwargs: object) -> dict[str, Tensor]:
        assert f"{case.arch}_{case.dataset}" in url
        return torch.load(case.path, weights_only=True)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", from_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecated pretrained=False
        theirs = torchray_models.get_model(case.arch, case.dataset)
    assert repr(theirs) == repr(case.loaded.model)  # the same patched modules
    their_state = theirs.state_dict()
    assert their_state.keys() == case.loaded.model.state_dict().keys()
    for key, value in case.loaded.model.state_dict().items():
        assert torch.equal(value, their_state[key]), key
    rgb = load_image(sample_image_path("chelsea"))  # 451 × 300: the input is 336 × 224
    their_input = torchray_models.get_transform(case.dataset)(Image.fromarray(rgb))[None]
    ours = case.loaded.preprocess(rgb)
    assert ours.shape == their_input.shape == (1, 3, 224, 336)
    assert torch.equal(ours, their_input)  # the same float32 operations
    with torch.no_grad():
        their_scores, our_scores = theirs(their_input), case.loaded.model(ours)
    assert our_scores.shape == (1, len(CLASSES[case.dataset]))
    assert our_scores.std() > 0.1  # scores that differ, so that the comparison means something
    assert (our_scores - their_scores).abs().max() <= 1e-4


def _with_zero_weights(arch: str) -> nn.Module:
    with torch.device("meta"):
        model = torchray_architecture(arch, 20)
    model = model.to_empty(device="cpu").eval()
    for tensor in model.state_dict().values():
        tensor.zero_()
    return model


def _output_sizes(model: nn.Module, kind: type[nn.Module], shape: tuple[int, int]) -> list:
    sizes: list[tuple[int, int]] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[2:])))
        for m in model.modules()
        if isinstance(m, kind)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, *shape))
    for hook in hooks:
        hook.remove()
    return sizes


def test_caffe_pooling_sizes() -> None:
    """Caffe's pooling rounds up: out = ceil((n + 2 pad - k) / stride) + 1. Worked by hand for
    TorchRay's input of a 451 × 300 photo (224 × 336) and for 224 × 226."""
    vgg = _with_zero_weights("vgg16")
    # 2 × 2 stride-2 pools: 336 → 168 → 84 → 42 → 21 → 11 (torchvision rounds down to 10)
    assert _output_sizes(vgg, nn.MaxPool2d, (224, 336)) == [
        (112, 168), (56, 84), (28, 42), (14, 21), (7, 11)
    ]  # fmt: skip
    resnet = _with_zero_weights("resnet50")
    # conv1 (7 × 7, stride 2, pad 3): 226 → 113; stem pool (3 × 3, stride 2, no pad):
    # ceil(110 / 2) + 1 = 56 (torchvision's, pad 1 rounded down, gives 57)
    assert _output_sizes(resnet, nn.MaxPool2d, (224, 226)) == [(56, 56)]
    stages = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4]
    sizes: list[tuple[int, int]] = []
    for stage in stages:
        stage.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[2:])))
    with torch.no_grad():
        resnet(torch.zeros(1, 3, 224, 226))
    assert sizes == [(56, 56), (28, 28), (14, 14), (7, 7)]


def test_caffe_architecture_patches() -> None:
    with torch.device("meta"):
        vgg = torchray_architecture("vgg16", 20)
        resnet = torchray_architecture("resnet50", 80)
    pools = [m for m in vgg.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(pool.ceil_mode for pool in pools)
    assert vgg.classifier[6].out_features == 20
    assert resnet.conv1.bias is not None
    assert (resnet.maxpool.kernel_size, resnet.maxpool.stride) == (3, 2)
    assert resnet.maxpool.padding == 0 and resnet.maxpool.ceil_mode
    for stage in (resnet.layer2, resnet.layer3, resnet.layer4):
        assert stage[0].conv1.stride == (2, 2) and stage[0].conv2.stride == (1, 1)
        assert stage[0].downsample[0].stride == (2, 2)
    assert resnet.layer1[0].conv1.stride == (1, 1) and resnet.fc.out_features == 80


@pytest.mark.parametrize("arch", ["vgg16", "resnet50"])
def test_layer_discovery_gives_the_papers_layers(arch: str) -> None:
    """The inputs of VGG16's five max-pools; ResNet-50's stem and four stages."""
    model = _with_zero_weights(arch)
    assert discover_layers(model, torch.zeros(1, 3, 224, 224)) == PAPER_LAYERS[arch]
    if arch == "resnet50":  # the same at the shape TorchRay's transform gives a 451 × 300 photo
        assert discover_layers(model, torch.zeros(1, 3, 224, 336)) == PAPER_LAYERS[arch]


def test_vgg16_layer_discovery_on_a_non_square_input() -> None:
    """VGG16's adaptive 7 × 7 average pool resizes a 7 × 11 map (TorchRay's input of a
    451 × 300 photo) to the fixed grid its classifier reads: not a stage, no sixth layer."""
    model = _with_zero_weights("vgg16")
    assert discover_layers(model, torch.zeros(1, 3, 224, 336)) == PAPER_LAYERS["vgg16"]


def test_explicit_dataset_and_wrapped_files(tmp_path: Path) -> None:
    state = torchray_file_state("resnet50", 20)
    path = tmp_path / "resnet50_voc.pth"
    # wrapped, with DataParallel prefixes and a non-tensor entry: read_checkpoint unwraps it
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = load_model("torchray-resnet50-voc", path, num_classes=20, input_size=(64, 64))
    assert loaded.name == "torchray-resnet50-voc" and loaded.input_size == (64, 64)
    assert torch.equal(loaded.model.fc.weight, state["fc.weight"])
    # the fully-convolutional form of the head
    state["fc.weight"] = state["fc.weight"].reshape(20, 2048, 1, 1)
    torch.save({"model": state}, path)
    loaded = load_model(f"torchray-resnet50:{path}", class_names=[f"c{i}" for i in range(20)])
    assert torch.equal(loaded.model.fc.weight, state["fc.weight"].reshape(20, 2048))
    assert loaded.class_names[3] == "c3"


def test_random_init() -> None:
    torch.manual_seed(0)
    loaded = load_model("torchray-resnet50-coco", random_init=True)
    assert loaded.name == "torchray-resnet50-coco" and len(loaded.class_names) == 80
    assert loaded.model.conv1.bias is not None
