"""One checkpoint unwrapper for the whole package (sise.models.checkpoints.read_checkpoint)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from sise import SiseError
from sise.eval.benchmark import models as zoo
from sise.models import loading
from sise.models.checkpoints import read_checkpoint
from sise.models.loading import load_model


def test_zoo_uses_the_same_unwrapper():
    assert zoo.read_checkpoint is read_checkpoint
    assert loading.read_checkpoint is read_checkpoint


@pytest.mark.parametrize(
    "wrap",
    [
        lambda state: state,
        lambda state: {"state_dict": state, "epoch": 7},
        lambda state: {"model": {"state_dict": state}, "optimizer": {"lr": 0.1}},
        lambda state: {"model_state_dict": {f"module.{k}": v for k, v in state.items()}},
        lambda state: {"model": {f"_orig_mod.{k}": v for k, v in state.items()}, "step": 3},
        lambda state: {**state, "best_accuracy": 0.93},
    ],
    ids=["flat", "state_dict", "nested", "data_parallel", "compiled", "metadata"],
)
def test_every_wrapping_loads(tmp_path, wrap):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=3)
    path = tmp_path / "weights.pth"
    torch.save(wrap(reference.state_dict()), path)
    state = read_checkpoint(path)
    assert state.keys() == reference.state_dict().keys()
    loaded = load_model("resnet18", path, num_classes=3, input_size=(32, 32))
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(SiseError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(SiseError, match=r"could not read checkpoint.*fetch the file again"):
        read_checkpoint(garbage)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(SiseError, match="holds a list, not a state dict"):
        read_checkpoint(listed)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(SiseError, match="holds no tensors"):
        read_checkpoint(empty)
