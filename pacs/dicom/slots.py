"""Association slots shared by every DICOM worker process: ``max_associations`` in total.

Each slot is a lock file, held with ``flock`` for as long as its association lasts. The
kernel releases the locks of a process that dies, so a killed worker cannot leak slots,
and no shared memory or counter has to be repaired after a crash.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class AssociationSlots:
    """At most `count` associations at once over all processes that use `directory`."""

    def __init__(self, directory: Path, count: int) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fds = [
            os.open(directory / f"slot-{n:04d}", os.O_RDWR | os.O_CREAT, 0o600) for n in range(count)
        ]
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._fds)

    def acquire(self) -> int | None:
        """Take a free slot and return it, or None when all are in use."""
        with self._lock:
            for slot, fd in enumerate(self._fds):
                if slot in self._held:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                self._held.add(slot)
                return slot
        return None

    def release(self, slot: int) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        with self._lock:
            if slot in self._held:
                fcntl.flock(self._fds[slot], fcntl.LOCK_UN)
                self._held.discard(slot)

    def close(self) -> None:
        """Release every slot of this process and close the lock files."""
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds, self._held = [], set()
