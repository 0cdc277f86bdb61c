"""The ``sise`` command line: its parser, and :func:`main`, which runs a command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sise import __version__
from sise.cli.app import add_app_command
from sise.cli.arguments import OneLineErrorParser
from sise.cli.benchmark import add_benchmark_command
from sise.cli.compare import add_compare_command
from sise.cli.explain import add_explain_command
from sise.errors import SiseError


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``sise``: ``explain``, ``compare``, ``benchmark`` and ``app``."""
    parser = OneLineErrorParser(
        prog="sise",
        description="Explain CNN image classifiers with SISE (AAAI-21) and the methods it is "
        "compared against.",
    )
    parser.add_argument("--version", action="version", version=f"sise {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_explain_command(commands)
    add_compare_command(commands)
    add_benchmark_command(commands)
    add_app_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2, Ctrl-C 130."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SiseError as error:
        print(f"sise: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sise: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
