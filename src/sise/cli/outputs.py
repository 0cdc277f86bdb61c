"""Checking, before any work, that the files a command writes can be written and are none of
its inputs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from sise.cli.inputs import image_path
from sise.errors import SiseError


def check_outputs(
    outputs: Sequence[Path],
    args: argparse.Namespace,
    images: Sequence[Path] | None = None,
    suffixes: Sequence[str] | None = None,
) -> None:
    """Refuse, before any work, an output that cannot be written or that is one of the inputs
    (by name, or another name of the same file: a link)."""
    from sise.viz import IMAGE_SUFFIXES, check_output_path

    inputs = list(images) if images is not None else [image_path(args)]
    inputs += [Path(p) for p in (args.classes, args.checkpoint) if p]
    names = {path.resolve() for path in inputs}
    files = {(s.st_dev, s.st_ino) for s in (_stat(path) for path in inputs) if s is not None}
    for out in outputs:
        check_output_path(out, suffixes or IMAGE_SUFFIXES)
        status = _stat(out)
        if out.resolve() in names or (
            status is not None and (status.st_dev, status.st_ino) in files
        ):
            flag = "--out" if args.out is not None else "--out-dir"
            raise SiseError(
                f"{str(out)!r} is an input of this command: it would be overwritten; "
                f"give another {flag}"
            )


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None
