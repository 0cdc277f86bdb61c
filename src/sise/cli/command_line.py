"""The ``sise`` command line: its parser, and :func:`main`, which runs a command.

Building the parser imports no torch (the commands import it when they run), so ``sise --help``
and ``sise explain --help`` answer at once. The benchmark's arguments come from its metric
settings, whose modules import torch: its full parser is built only when the command line names
``benchmark``; otherwise it is one line of ``sise --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sise import __version__
from sise.cli.app import add_app_command
from sise.cli.arguments import OneLineErrorParser
from sise.cli.benchmark import BENCHMARK_HELP, add_benchmark_command
from sise.cli.compare import add_compare_command
from sise.cli.explain import add_explain_command
from sise.errors import SiseError


def build_parser(benchmark: bool = True) -> argparse.ArgumentParser:
    """The parser of ``sise``: ``explain``, ``compare``, ``benchmark`` and ``app``.

    Args:
        benchmark: build the arguments of ``sise benchmark`` (importing the benchmark's
            metrics); ``False``: only its line in the list of commands.
    """
    parser = OneLineErrorParser(
        prog="sise",
        description="Explain CNN image classifiers with SISE (AAAI-21) and the methods it is "
        "compared against.",
    )
    parser.add_argument("--version", action="version", version=f"sise {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_explain_command(commands)
    add_compare_command(commands)
    if benchmark:
        add_benchmark_command(commands)
    else:
        commands.add_parser("benchmark", help=BENCHMARK_HELP)
    add_app_command(commands)
    return parser


def _names_benchmark(argv: Sequence[str]) -> bool:
    """Whether the command is ``benchmark``: the first word that is not an option (``sise``
    itself takes no option with a value)."""
    words = [word for word in argv if not word.startswith("-")]
    return bool(words) and words[0] == "benchmark"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2, Ctrl-C 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(benchmark=_names_benchmark(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SiseError as error:
        print(f"sise: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sise: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
