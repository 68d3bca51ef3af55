"""The single-writer lock: an flock on `<store>/writer.lock`.

flock locks belong to the open file description, so the kernel releases the
lock when the holder dies, even by SIGKILL: a crashed writer never leaves a
stale lock behind, and no lock-breaking logic is needed.
"""

from __future__ import annotations

import fcntl
import os
import weakref
from pathlib import Path

from recordings.errors import StoreLockedError


class WriterLock:
    """Held from construction until `release()` (or until the owner is garbage-collected)."""

    def __init__(self, path: Path, store_root: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLockedError(
                f"{store_root} is already open for writing by another writer (pid {holder}); "
                "open it with mode='r' to read"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # for the message a second writer gets
        # Closing the descriptor releases the lock; do it even if release() is never called.
        self._close = weakref.finalize(self, os.close, fd)

    @property
    def held(self) -> bool:
        return self._close.alive

    def release(self) -> None:
        self._close()
