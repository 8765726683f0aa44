"""The writer lock of an archive directory: shared by every process that stores, exclusive for clean-ups.

A process that stores holds the lock file shared (from its first store, or from its
start for a server). A clean-up that must run alone (removing incomplete blobs, the
spool of a stopped server) takes it exclusively without waiting: if another process
holds it, the clean-up knows it is not alone.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriterLock:
    """The ``flock`` on one lock file, held shared while this process writes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._guard = threading.Lock()

    def hold_shared(self) -> None:
        """Take the lock shared, if this process does not hold it yet."""
        with self._guard:
            if self._fd is None:
                fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_SH)
                self._fd = fd

    def close(self) -> None:
        """Release the lock."""
        with self._guard:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Hold the lock exclusively if no other process writes; yield whether it is held."""
        own = self._fd
        fd = own if own is not None else os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if fd != own:
                os.close(fd)
            yield False
            return
        try:
            yield True
        finally:
            if fd == own:
                fcntl.flock(fd, fcntl.LOCK_SH)
            else:
                os.close(fd)
