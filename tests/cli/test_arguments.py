"""The commands' shared arguments: checked types, one-line errors, defaults."""

from __future__ import annotations

import pytest

from sise.cli import main


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


def test_defaults_are_the_demo_model_and_automatic_batches():
    from sise.cli import build_parser
    from sise.models.loading import DEMO_MODEL

    parser = build_parser()
    bench = parser.parse_args(["benchmark", "--dataset", "photos"])
    assert bench.model == DEMO_MODEL and bench.batch_size == "auto"
    explain = parser.parse_args(["explain", "--batch-size", "auto"])
    assert explain.batch_size == "auto"
