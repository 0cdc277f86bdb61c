"""``sise app`` on the command line."""

from __future__ import annotations

import pytest

from sise import SiseError
from sise.cli import build_parser
from sise.cli.app import command_app
from sise.web import make_server


def test_cli_command_and_taken_port():
    args = build_parser().parse_args(["app", "--port", "0"])
    assert args.handler is command_app and args.port == 0
    taken = make_server(0, "cpu", quiet=True)
    try:
        with pytest.raises(SiseError, match="pick another port"):
            make_server(taken.server_address[1], "cpu")
    finally:
        taken.server_close()
