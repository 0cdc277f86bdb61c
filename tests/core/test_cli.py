"""The command line, end to end, on the embedded default (real photo, real weights)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from sise import SiseError
from sise.cli.commands import main


@pytest.mark.slow
def test_explain_embedded_default(tmp_path, capsys):
    out = tmp_path / "cat.png"
    assert main(["explain", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "1. Egyptian cat" in printed
    assert "explained class: Egyptian cat (class 285" in printed
    overlay = np.asarray(Image.open(out))
    panel = np.asarray(Image.open(tmp_path / "cat_layers.png"))
    assert overlay.shape == (300, 451, 3)  # the photo's own size
    assert overlay.std() > 20  # a real picture, not a blank
    assert panel.shape[1] > 3 * panel.shape[0]  # input, five layers and the fused map in a row


def test_explain_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "missing.jpg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["explain", "--target", "egyptian kat", "--no-progress"]) == 2
    assert "close names" in capsys.readouterr().err
    assert main(["explain", "--method", "nonsense", "--no-progress"]) == 2
    assert "unknown method" in capsys.readouterr().err


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


@pytest.fixture
def tiny_cli(monkeypatch, small_cnn):
    """``sise.cli.commands`` with a small CNN instead of the demo model; records each explainer built."""
    import torch

    import sise.cli.commands as cli
    from sise.models.loading import LoadedModel

    loaded = LoadedModel(
        small_cnn, [f"class {i}" for i in range(5)], (32, 32), (0.5,) * 3, (0.5,) * 3, "tiny"
    )

    built: dict[str, object] = {}
    real = cli.make_explainer

    def recording(name, model, **options):
        explainer = real(name, model, **options)
        built[explainer.name] = explainer
        return explainer

    monkeypatch.setattr(cli, "_load_model", lambda args: loaded)
    monkeypatch.setattr(cli, "make_explainer", recording)
    torch.manual_seed(0)
    return built


def test_a_flag_applies_to_every_method_that_takes_it(tiny_cli, tmp_path):
    out = tmp_path / "rise.png"
    argv = ["explain", "--method", "rise", "--baseline", "blur", "--batch-size", "8"]
    assert main([*argv, "--option", "rise.n_masks=16", "--out", str(out), "--no-progress"]) == 0
    assert tiny_cli["rise"].baseline == "blur"
    assert tiny_cli["rise"].batch_size == 8
    assert out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "gradcam", "--baseline", "blur"], "--baseline does not apply to Grad-CAM"),
        (["--method", "rise", "--gate", "soft"], "--gate does not apply to RISE: .* of SISE"),
        (["--method", "fullgrad", "--mu", "0.5"], "--mu does not apply to FullGrad"),
        (["--method", "ig", "--adaptive"], "--adaptive does not apply to Integrated Gradients"),
        (["--method", "gradcampp", "--batch-size", "8"], "--batch-size does not apply"),
    ],
)
def test_a_flag_the_method_does_not_take_is_refused(tiny_cli, capsys, argv, message):
    assert main(["explain", *argv]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not tiny_cli  # refused before anything was built


def test_method_names_in_any_spelling(tiny_cli, tmp_path, capsys):
    out = tmp_path / "both.png"
    assert main(["compare", "--methods", "grad-cam, Grad-CAM++", "--out", str(out)]) == 0
    assert set(tiny_cli) == {"gradcam", "gradcampp"}
    assert main(["explain", "--method", "Integrated Gradients", "--out", str(out)]) == 0
    assert "Integrated Gradients:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "0"], "--size: 0 px is out of range"),
        (["--size", "-5"], "--size: -5 px is out of range"),
        (["--size", "100000"], "--size: 100000 px is out of range"),
        (["--size", "big"], "--size: 'big' is not a whole number"),
        (["--device", "bogus"], "--device: unknown device 'bogus'"),
        (["--device", "meta"], "--device: unsupported device 'meta'"),
        (["--batch-size", "0"], "--batch-size: 0 must be at least 1"),
        (["--mu", "nan"], "--mu: nan is out of range"),
    ],
)
def test_bad_flags_are_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["explain", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cuda_without_a_gpu_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        main(["explain", "--device", "cuda"])
    assert "no CUDA GPU" in capsys.readouterr().err


def test_missing_class_file(tmp_path, capsys):
    assert main(["explain", "--classes", str(tmp_path / "missing.txt")]) == 2
    assert "--classes" in (err := capsys.readouterr().err) and "does not exist" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["explain", "--classes", str(empty)]) == 2
    assert "holds no class names" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (".", "is a folder"),
        ("map.gif", "extension '.gif'"),
        ("map", "no extension"),
        ("notes.txt/map.png", "is a file, not a folder"),
    ],
)
def test_bad_out_is_refused_before_the_work(tiny_cli, tmp_path, capsys, out, message):
    (tmp_path / "notes.txt").write_text("a file")
    assert main(["explain", "--out", str(tmp_path / out)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "top-5" not in captured.out and not tiny_cli


def test_compare_with_no_method(capsys):
    assert main(["compare", "--methods", ","]) == 2
    assert "names no method" in capsys.readouterr().err


def test_an_input_is_never_overwritten(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    before = photo.read_bytes()
    assert main(["explain", str(photo), "--out", str(photo)]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    # the SISE panel goes beside the overlay: it may not replace an input either
    panel_input = tmp_path / "x_layers.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(panel_input)
    assert main(["explain", str(panel_input), "--out", str(tmp_path / "x.png")]) == 2
    assert photo.read_bytes() == before


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    from sise.viz import save_overlay

    out = tmp_path / "overlay.png"
    rgb = np.zeros((8, 8, 3), np.uint8)
    save_overlay(out, rgb, np.zeros((8, 8)))
    before = out.read_bytes()

    def full_disk(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(SiseError, match=r"could not write.*No space left"):
        save_overlay(out, rgb, np.ones((8, 8)))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.png"]  # no temporary left


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


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import sise.cli.commands as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_model", interrupted)
    assert main(["explain"]) == 130
    assert capsys.readouterr().err == "sise: interrupted\n"


def test_benchmark_score_defaults_to_softmax_on_the_single_label_photo_set() -> None:
    from sise.cli.commands import _default_benchmark_score

    assert _default_benchmark_score("photos") == "softmax"
    assert _default_benchmark_score("Photos:/data/set") == "softmax"
    assert _default_benchmark_score("voc2007:/data/VOCdevkit") == "sigmoid"
    assert _default_benchmark_score("synthetic") == "sigmoid"


# --- many images --------------------------------------------------------------------------------


def _photos(folder, names=("a.jpg", "b.png"), corrupt="c.jpg"):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    if corrupt:
        (folder / corrupt).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


def test_a_folder_with_a_corrupt_image(tiny_cli, tmp_path, capsys):
    import json

    photos = _photos(tmp_path / "photos")
    out = tmp_path / "results"
    argv = ["explain", str(photos), "--out-dir", str(out), "--save-maps", "--no-progress"]
    assert main([*argv, "--pack", "2"]) == 1  # a and b in one call, then c
    captured = capsys.readouterr()
    assert re.search(r"error: .*c\.jpg.* (corrupt|not an image)", captured.err)
    assert "a.jpg" not in captured.err and "b.png" not in captured.err
    assert "3 image(s): 2 explained, 0 already done, 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "a_sise.npz",
        "a_sise.png",
        "a_sise_layers.png",
        "b_sise.npz",
        "b_sise.png",
        "b_sise_layers.png",
        "results.jsonl",
    ]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["image"] for line in lines] == [
        str((photos / n).resolve()) for n in ("a.jpg", "b.png")
    ]
    for line in lines:
        assert line["model"] == "tiny" and line["method"] == "sise"
        assert line["class_name"] == f"class {line['class_index']}"
        assert 0 < line["score"] <= 1 and line["forward_passes"] > 1 and line["seconds"] > 0
    with np.load(out / "a_sise.npz") as saved:
        assert saved["map"].shape == (32, 32) and 0 <= saved["map"].min() <= saved["map"].max() <= 1
        assert int(saved["class_index"]) == lines[0]["class_index"]
        assert saved["layer_maps"].shape[1:] == (32, 32)
        batched = saved["map"]
    # the batched call gives each image the map it gets alone
    alone = tmp_path / "alone"
    assert main(["explain", str(photos / "a.jpg"), "--out-dir", str(alone), "--save-maps"]) == 0
    with np.load(alone / "a_sise.npz") as saved:
        np.testing.assert_allclose(saved["map"], batched, atol=1e-5)

    # a rerun skips the two done, reports the bad one again and rewrites nothing
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "2 image(s) already done" in captured.out and "c.jpg" in captured.err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written
    # other settings are another run: nothing is skipped
    assert main([*argv, "--target", "2"]) == 1
    assert "0 already done" in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == 4


def test_globs_and_a_run_into_the_photos_folder(tiny_cli, tmp_path, capsys):
    photos = _photos(tmp_path / "photos", corrupt=None)
    pattern = str(photos / "*.jpg")
    assert main(["explain", pattern, "--method", "gradcam", "--out-dir", str(photos)]) == 0
    assert (photos / "a_gradcam.png").exists() and not (photos / "b_gradcam.png").exists()
    # the folder now holds an output: a rerun on the folder does not explain it
    assert main(["explain", str(photos), "--method", "gradcam", "--out-dir", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "2 image(s): 1 explained, 1 already done" in out
    assert not (photos / "a_gradcam_gradcam.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{photos}", "--out", "{tmp}/x.png"], "--out names the picture of one image"),
        (["{tmp}/nothing*.jpg"], "matches no file"),
        (["{tmp}/empty"], "holds no image file"),
        (["{photos}/a.jpg", "{photos}/b.png", "--out-dir", "{photos}/a.jpg"], "is a file"),
    ],
)
def test_many_images_bad_input(tiny_cli, tmp_path, capsys, argv, message):
    photos = _photos(tmp_path / "photos", corrupt=None)
    (tmp_path / "empty").mkdir()
    argv = [a.format(photos=photos, tmp=tmp_path) for a in argv]
    assert main(["explain", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not tiny_cli  # refused before any work


def test_an_output_may_not_be_an_input_under_another_name(tiny_cli, tmp_path, capsys):
    photos = _photos(tmp_path / "photos", corrupt=None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_sise.png").symlink_to(photos / "b.png")  # writing a's overlay would replace b
    assert main(["explain", str(photos), "--out-dir", str(out)]) == 2
    assert "is an input of this command" in capsys.readouterr().err


def test_version(capsys):
    import tomllib
    from pathlib import Path

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"sise {version}"


def test_defaults_are_the_demo_model_and_automatic_batches():
    from sise.cli.commands import build_parser
    from sise.models.loading import DEMO_MODEL

    parser = build_parser()
    bench = parser.parse_args(["benchmark", "--dataset", "photos"])
    assert bench.model == DEMO_MODEL and bench.batch_size == "auto"
    explain = parser.parse_args(["explain", "--batch-size", "auto"])
    assert explain.batch_size == "auto"


def test_explain_batch_size_defaults_to_auto(tiny_cli, tmp_path):
    assert main(["explain", "--out", str(tmp_path / "x.png"), "--no-progress"]) == 0
    assert tiny_cli["sise"].batch_size == "auto"
    assert (
        main(
            [
                "explain",
                "--method",
                "rise",
                "--option",
                "rise.n_masks=8",
                "--out",
                str(tmp_path / "y.png"),
            ]
        )
        == 0
    )
    assert tiny_cli["rise"].batch_size == "auto"
