"""``sise compare``."""

from __future__ import annotations

from sise.cli import main


def test_compare_with_no_method(capsys):
    assert main(["compare", "--methods", ","]) == 2
    assert "names no method" in capsys.readouterr().err
