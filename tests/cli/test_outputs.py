"""Outputs are checked before any work: writable, and never one of the inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sise.cli import main


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
