"""The results database's file and what can go wrong with it: damaged, read-only, in a folder
SQLite cannot write its journal to, left by a run killed inside a transaction; each as one
:class:`~sise.errors.SiseError` that names the file and says what to do
(:mod:`sise.eval.benchmark.store` uses them)."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

from sise.errors import SiseError

__all__ = ["check_writable", "connect_read_only", "trouble"]


def connect_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``). A run killed inside a transaction leaves a hot
    journal (``<db>-journal``) that SQLite must roll back before anyone reads the file, which a
    read-only connection cannot do: then the file is opened for writing once to roll it back
    (back to the state the run had committed, as the next run would), where it may be."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, timeout=timeout, isolation_level=None, uri=True)
    journal = path.with_name(f"{path.name}-journal")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return conn
    except sqlite3.OperationalError as error:
        conn.close()
        if "readonly" not in str(error).lower() or not journal.is_file():
            raise
    try:
        check_writable(path)
    except SiseError:
        raise SiseError(
            f"the results database {str(path)!r} holds an unfinished write of a stopped run "
            f"({journal.name}); SQLite must roll it back before the file can be read, which "
            "needs the file and its folder writable: make them writable and run again"
        ) from None
    with contextlib.closing(sqlite3.connect(path, timeout=timeout)) as writer:
        writer.execute("SELECT count(*) FROM sqlite_master").fetchall()  # rolls back
    print(
        f"sise: note: rolled back the unfinished write a stopped run left in {str(path)!r}",
        file=sys.stderr,
    )
    return sqlite3.connect(uri, timeout=timeout, isolation_level=None, uri=True)


def check_writable(path: Path) -> None:
    """Refuse, before any work, a database SQLite could not write: a read-only file, or a
    folder where its journal (``<db>-journal``, made beside it at every write) cannot be
    created. Both are tried for real (``os.access`` is wrong for root, ACLs and read-only
    mounts); nothing is left behind."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SiseError(
                f"--db {str(path)!r} goes through a loop of symbolic links: fix the link or "
                "give another --db"
            ) from None
    if path.exists():
        try:
            with path.open("r+b"):
                pass
        except OSError as error:
            raise SiseError(
                f"the results database {str(path)!r} is read-only ({error.strerror}): make it "
                "writable (chmod u+w), give another --db, or add --report-only to print its "
                "table without writing"
            ) from None
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folder that will hold the new ones
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=f".{path.name}.write-test"):
            pass
    except OSError as error:
        raise SiseError(
            f"cannot write the results database {str(path)!r}: the folder {str(folder)!r} is "
            f"not writable ({error.strerror}; SQLite writes a journal beside the database); "
            "make it writable or give a --db in another folder"
        ) from None


def trouble(path: Path, error: sqlite3.DatabaseError) -> str:
    """What went wrong with the database at ``path``, and what to do, in one sentence."""
    text = str(error)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return (
            f"the results database {str(path)!r} cannot be written ({text}): make it and its "
            "folder writable, give another --db, or add --report-only to only read it"
        )
    if "locked" in lowered or "busy" in lowered:
        return (
            f"the results database {str(path)!r} is locked by another program ({text}): wait "
            "for it, or give another --db"
        )
    if (
        "malformed" in lowered
        or "not a database" in lowered
        or "corrupt" in lowered
        or ("page" in lowered)
    ):
        return (
            f"the results database {str(path)!r} is damaged or not a SQLite database ({text}): "
            "restore it from a copy, or move it aside and give a new --db to compute its pairs "
            "again (sqlite3's .recover may save what is still readable)"
        )
    if "unable to open" in lowered:
        return (
            f"cannot open the results database {str(path)!r} ({text}): check that it and its "
            "folder exist and can be read and written"
        )
    return f"the results database {str(path)!r} failed: {text}"
