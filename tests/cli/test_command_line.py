"""``sise``: the version, and Ctrl-C."""

from __future__ import annotations

import pytest

from sise.cli import main


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import sise.cli.inputs as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_model_from_args", interrupted)
    assert main(["explain"]) == 130
    assert capsys.readouterr().err == "sise: interrupted\n"


def test_version(capsys):
    import tomllib
    from pathlib import Path

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"sise {version}"
