"""One run at a time in an output folder: an exclusive lock on a file in it, which the system
frees when its holder ends, however it ends (``kill -9`` included), so a killed run never
blocks the next one. The holder removes the file when it is done; one a killed run left behind
is taken over.

POSIX: ``flock`` on the lock file, which holds the holder's process id for the message a second
run gets; Windows: ``msvcrt.locking`` on its first byte.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sise.errors import SiseError

__all__ = ["folder_lock"]


@contextmanager
def folder_lock(lock_file: Path, folder: Path, command: str = "sise explain") -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created in ``folder`` if absent) while the
    ``with`` block runs; raise at once, without waiting, when another process holds it.

    Raises:
        SiseError: another run holds the lock (its process id in the message where known), or
            the lock file cannot be created.
    """
    fd = _open_locked(lock_file, folder)
    if fd is None:
        holder = _holder(lock_file)
        who = f" (process {holder})" if holder else ""
        raise SiseError(
            f"another {command}{who} is writing into {str(folder)!r} now: wait for it to "
            "finish, or give another --out-dir (two runs into one folder would explain every "
            "image twice)"
        )
    try:
        if os.name == "posix":
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        # removed while still held: a run that opened it meanwhile sees, once it gets the
        # lock, that the name is gone (see _open_locked) and makes a new file
        with contextlib.suppress(OSError):
            lock_file.unlink()
        _unlock(fd)
        os.close(fd)


def _open_locked(lock_file: Path, folder: Path) -> int | None:
    """A descriptor of ``lock_file`` holding its lock, or ``None`` when another process holds
    it. A file that was removed between its opening and its locking is not the lock any more:
    open the name again."""
    for _ in range(100):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise SiseError(
                f"could not create the lock file {str(lock_file)!r}: {error}"
            ) from error
        if not _try_lock(fd):
            os.close(fd)
            return None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_file))
        except OSError:
            same = False
        if same:
            return fd
        _unlock(fd)
        os.close(fd)
    raise SiseError(f"could not take the lock {str(lock_file)!r}: it keeps being replaced")


def _try_lock(fd: int) -> bool:
    if os.name == "posix":
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt

    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if os.name == "posix":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    import msvcrt

    os.lseek(fd, 0, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _holder(lock_file: Path) -> int | None:
    """The process id the lock's holder wrote, if it can be read."""
    if os.name != "posix":
        return None
    try:
        text = lock_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
