"""Checking, before any work, that the files a command writes can be written and are none of
its inputs."""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Sequence
from pathlib import Path

from sise.cli.inputs import image_path
from sise.errors import SiseError


def check_link_loop(path: Path, flag: str) -> None:
    """Refuse a path that goes through a loop of symbolic links (a link to itself, two links to
    each other), itself or in one of its folders: the system can never open it, and
    :meth:`Path.resolve` raises a bare ``RuntimeError`` on it (Python 3.11, 3.12)."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SiseError(
                f"{flag} {str(path)!r} goes through a loop of symbolic links (a link that "
                f"points, directly or not, to itself): remove or fix the link, or give another "
                f"{flag}"
            ) from None
    except ValueError:  # a NUL byte in the name: the writer says so later
        pass


def picture_file(text: str, flag: str = "--out") -> Path:
    """``--out`` as the file it names: not a folder (``.``, ``..``, an existing one), not a
    loop of symbolic links. The rest (extension, writable folder) is :func:`check_outputs`."""
    path = Path(text)
    check_link_loop(path, flag)
    if path.name in ("", "..") or path.is_dir():
        raise SiseError(
            f"{flag} {text!r} is a folder: give a file name, e.g. "
            f"{str(path / 'map.png')!r}, or the folder with --out-dir"
        )
    return path


def check_out_dir(path: Path) -> None:
    """``--out-dir`` must be a folder, or a path where one can be made."""
    check_link_loop(path, "--out-dir")
    if path.is_symlink() and not path.exists():
        raise SiseError(
            f"--out-dir {str(path)!r} is a symbolic link to {os.readlink(path)!r}, which does "
            "not exist: create that folder, or give another --out-dir"
        )
    if path.exists() and not path.is_dir():
        raise SiseError(f"--out-dir {str(path)!r} is a file: give a folder")


def check_outputs(
    outputs: Sequence[Path],
    args: argparse.Namespace,
    images: Sequence[Path] | None = None,
    suffixes: Sequence[str] | None = None,
) -> None:
    """Refuse, before any work, an output that cannot be written or that is one of the inputs
    (by name, or another name of the same file: a link)."""
    from sise.viz import IMAGE_SUFFIXES, check_output_path

    flag = "--out" if args.out is not None or not hasattr(args, "out_dir") else "--out-dir"
    inputs = list(images) if images is not None else [image_path(args)]
    inputs += [Path(p) for p in (args.classes, args.checkpoint) if p]
    names = {_resolve(path) for path in inputs}
    files = {(s.st_dev, s.st_ino) for s in (_stat(path) for path in inputs) if s is not None}
    for out in outputs:
        check_link_loop(out, flag)
        check_output_path(out, suffixes or IMAGE_SUFFIXES)
        status = _stat(out)
        if _resolve(out) in names or (
            status is not None and (status.st_dev, status.st_ino) in files
        ):
            raise SiseError(
                f"{str(out)!r} is an input of this command: it would be overwritten; "
                f"give another {flag}"
            )


def _resolve(path: Path) -> Path:
    """The absolute path with links followed; an input in a link loop as it is written (it is
    refused as missing when it is read)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except (OSError, ValueError):
        return None
