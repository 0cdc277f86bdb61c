"""Method flags and ``--option`` on the command line: given to every method that takes them, refused otherwise."""

from __future__ import annotations

import re

import pytest

from sise.cli import main


def test_a_flag_applies_to_every_method_that_takes_it(tiny_cli, tmp_path):
    out = tmp_path / "rise.png"
    argv = ["explain", "--method", "rise", "--baseline", "blur", "--batch-size", "8"]
    assert main([*argv, "--option", "rise.n_masks=16", "--out", str(out), "--no-progress"]) == 0
    assert tiny_cli["rise"].baseline == "blur"
    assert tiny_cli["rise"].runtime.batch_size == 8
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
