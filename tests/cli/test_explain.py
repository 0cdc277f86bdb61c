"""``sise explain`` on one photo, end to end on the embedded default (real photo, real weights)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sise.cli import main


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


def test_explain_batch_size_defaults_to_auto(tiny_cli, tmp_path):
    assert main(["explain", "--out", str(tmp_path / "x.png"), "--no-progress"]) == 0
    assert tiny_cli["sise"].runtime.batch_size == "auto"
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
    assert tiny_cli["rise"].runtime.batch_size == "auto"
