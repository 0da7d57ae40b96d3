"""Private files on the local disk: the data folder, the SQLite files, inter-process locks.

The data folder holds password hashes, e-mail addresses, the generated secret and the JWT
keys, so what Bastion creates there is private to its owner (folder 0700, files 0600)
whatever the process umask: a umask can only take permission bits away from the mode given
at creation, never add them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

# How often a waiting process retries a lock another process holds, seconds.
_LOCK_POLL_INTERVAL = 0.05


class LockTimeout(TimeoutError):
    """Another process held a file lock for longer than we were willing to wait."""


def make_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) and any missing parents; an existing folder is kept
    as it is (``bastion check`` reports one that others can read)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (then it is left alone).

    A missing folder is not created here and is no error: whoever opens the file next
    reports it.
    """
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))


def loose_mode(path: Path, allowed: int) -> int | None:
    """The permission bits of ``path`` when it grants more than ``allowed``, else None
    (also None when ``path`` does not exist)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    return mode if mode & ~allowed else None


@contextlib.asynccontextmanager
async def exclusive_lock(path: Path, *, give_up_after: float) -> AsyncIterator[None]:
    """Hold an exclusive lock on the file ``path`` (created 0600) across processes.

    Waiting never blocks the event loop: the lock is tried without blocking and retried.
    Raises :class:`LockTimeout` after ``give_up_after`` seconds. The lock file is never deleted:
    unlinking it would let two processes lock different inodes. The operating system
    releases the lock when the process dies, so a crash leaves nothing stale behind.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        deadline = time.monotonic() + give_up_after
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{path.name} stayed locked for {give_up_after:g} s")
            await asyncio.sleep(_LOCK_POLL_INTERVAL)
        yield
    finally:
        os.close(fd)  # also releases the lock


if sys.platform == "win32":  # pragma: no cover - the test suite runs on POSIX
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "LockTimeout",
    "create_private_file",
    "exclusive_lock",
    "loose_mode",
    "make_private_dir",
]
