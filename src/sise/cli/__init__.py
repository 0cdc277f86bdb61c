"""The ``sise`` command line: explain photos, compare methods, run benchmarks, serve the page."""

from sise.cli.command_line import build_parser, main

__all__ = ["build_parser", "main"]
