"""What ``sise explain`` and ``sise compare`` read: the model, its class names."""

from __future__ import annotations

from sise.cli import main


def test_torchvision_model_from_a_local_checkpoint(tmp_path, capsys):
    import torch
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "resnet18_3classes.pth"
    torch.save({"state_dict": torchvision.models.resnet18(num_classes=3).state_dict()}, weights)
    classes = tmp_path / "classes.txt"
    classes.write_text("ant\nbee\ncricket\n")
    out = tmp_path / "x.png"
    argv = ["explain", "--model", "resnet18", "--checkpoint", str(weights), "--num-classes", "3"]
    argv += ["--classes", str(classes), "--target", "bee", "--size", "64", "--adaptive"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "explained class: bee (class 1" in printed
    assert out.exists() and (tmp_path / "x_layers.png").exists()


def test_missing_class_file(tmp_path, capsys):
    assert main(["explain", "--classes", str(tmp_path / "missing.txt")]) == 2
    assert "--classes" in (err := capsys.readouterr().err) and "does not exist" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["explain", "--classes", str(empty)]) == 2
    assert "holds no class names" in capsys.readouterr().err


def test_offline_torchvision_name_is_one_line(monkeypatch, capsys):
    from urllib.error import URLError

    import torchvision.models._api

    def offline(*args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    assert main(["explain", "--model", "resnet18", "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "could not get the pretrained weights of 'resnet18'" in err
    assert "--checkpoint" in err and err.count("\n") == 1
