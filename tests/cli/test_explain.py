"""``sise explain`` on one photo, end to end on the embedded default (real photo, real weights)."""

from __future__ import annotations

import re

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


def test_explain_adaptive_has_its_own_file_and_label(tiny_cli, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--no-progress"]) == 0
    assert main(["explain", "--adaptive", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # plain SISE's files are not overwritten by Ada-SISE's
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chelsea_ada-sise.png",
        "chelsea_ada-sise_layers.png",
        "chelsea_sise.png",
        "chelsea_sise_layers.png",
    ]
    assert "\nAda-SISE: " in printed and "\nSISE: " in printed
    assert tiny_cli["sise"].selection == "adaptive"


def test_explain_says_one_forward_pass_and_the_estimate(tiny_cli, tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert main(["explain", "--method", "gradcam", "--out", out]) == 0
    printed = capsys.readouterr().out
    # "1 forward pass", not "1 forward passes"; no estimate for one pass (timing the model would
    # cost about 40)
    assert ", 1 forward pass\n" in printed and "1 forward passes" not in printed
    assert "under a second" not in printed and "about" not in printed
    assert main(["explain", "--method", "rise", "--out", out, "--option", "rise.n_masks=8"]) == 0
    printed = capsys.readouterr().out
    assert "RISE" not in printed.split("explained class")[0]  # 9 passes: not worth an estimate
    assert ", 9 forward passes\n" in printed
    assert main(["explain", "--method", "rise", "--out", out, "--option", "rise.n_masks=60"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"RISE: 61 forward passes, (under a second|about \d+ s)\n", printed)
    assert ", 61 forward passes\n" in printed
