"""``sise explain`` on many images: folders, patterns, results.jsonl, resuming."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from sise.cli import main


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


def test_many_images_show_each_method_s_progress_and_one_line_when_all_done(
    tiny_cli, tmp_path, capsys
):
    photos = _photos(tmp_path / "photos", corrupt=None)
    out = tmp_path / "out"
    argv = ["explain", str(photos), "--out-dir", str(out), "--method", "rise"]
    assert main([*argv, "--option", "rise.n_masks=16", "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    # the bar over the images does not sit at 0/2: RISE's bar counts its masks under it
    assert "sise explain" in captured.err and "RISE masked forwards" in captured.err
    # a full rerun: one line, no empty bar
    assert main([*argv, "--option", "rise.n_masks=16", "--batch-size", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.out == (
        f"2 image(s): 0 explained, 2 already done: all are in {out / 'results.jsonl'}, "
        "nothing to explain\n"
    )
    assert "image" not in captured.err


def test_pack_with_photos_of_other_shapes(tiny_cli, tmp_path, monkeypatch, capsys):
    """A model that keeps each photo's aspect ratio (TorchRay's shorter-side resize) gives two
    shapes of input: --pack explains each run of one size together instead of failing on
    torch.cat (which it did for every pack of mixed shapes)."""
    import json

    import torch

    from sise.models.loading import LoadedModel

    def keep_aspect(self, rgb):  # 32 px on the shorter side, as TorchRay's transform does
        h, w = rgb.shape[:2]
        size = (32, round(32 * w / h)) if h <= w else (round(32 * h / w), 32)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        return torch.nn.functional.interpolate(x, size=size, mode="bilinear")

    monkeypatch.setattr(LoadedModel, "preprocess", keep_aspect)
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in [("a.png", (40, 48)), ("b.png", (40, 48)), ("c.png", (64, 40))]:
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / name)
    out = tmp_path / "results"
    argv = ["explain", str(folder), "--out-dir", str(out), "--method", "gradcam", "--no-progress"]
    assert main([*argv, "--pack", "3"]) == 0, capsys.readouterr().err
    assert "3 image(s): 3 explained" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["image"].rsplit("/", 1)[1] for line in lines] == ["a.png", "b.png", "c.png"]
    assert Image.open(out / "c_gradcam.png").size == (40, 64)  # the overlay keeps c's shape
