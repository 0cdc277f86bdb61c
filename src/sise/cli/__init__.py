"""The ``sise`` command line: explain photos, compare methods, run benchmarks."""

from sise.cli.commands import main

__all__ = ["main"]
