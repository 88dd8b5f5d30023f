"""What keeps a run directory whole: files replaced only by a rename, and one tfrl process at a time.

Every file tfrl rewrites in a run directory (``run.json``, a log cut back on resume) is written
beside it under a temporary name and renamed over it, so a kill at any instant leaves either the old
file or the new one, never an empty or half-written one. ``RunLock`` keeps a second ``tfrl train
--resume`` of a run out while the first lives: two writers would interleave their logs and race
to export.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType

from tfrl.errors import RunLockedError, StorageError

LOCK_FILE = ".lock"


def replace_text(path: Path, text: str) -> None:
    """Make ``text`` the content of ``path`` by writing a temporary file beside it and renaming it over.

    The temporary file is flushed to disk before the rename, so even a power cut leaves the old file
    or the new one. An ``OSError`` (a full disk) is a ``StorageError`` naming the file, with nothing left.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {error.strerror or error}") from None


class RunLock:
    """An exclusive lock on a run directory, held by the process training it.

    The lock is ``flock`` on ``<run_dir>/.lock``: the kernel drops it when its holder exits, even by
    ``kill -9``, so a dead run never blocks its resume. The file says who holds it, for the message
    a second process gets.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._file: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``RunLockedError`` naming the live process that holds it."""
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StorageError(f"cannot lock the run directory {self.path.parent}: {error.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageError(f"cannot lock the run directory {self.path.parent}: {error.strerror}") from None
            raise RunLockedError(
                f"{self.path.parent} is in use by tfrl process {holder}: one process trains a run at a time; "
                "wait for it to finish (or stop it), then resume"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._file = descriptor

    def release(self) -> None:
        """Let go of the lock (the file stays: removing it would race a process about to lock it)."""
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(descriptor: int) -> str:
    """``pid N on HOST`` from a held lock file, or ``(unknown)`` while its holder is still writing it."""
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"{holder['pid']} on {holder['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "(unknown)"
