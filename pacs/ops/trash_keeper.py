"""A thread of ``pacs serve`` that empties the trash and applies the retention policy.

Soon after the start and then every :data:`INTERVAL_SECONDS`, it purges the studies that
spent ``[storage] trash_days`` in the trash and, with ``[storage] retention_years`` above 0,
moves the studies older than that to the trash (purged in their turn after ``trash_days``).
Everything goes through :mod:`pacs.ops.study_trash`, audited as done by ``pacs``. One process
of the service runs it.
"""

from __future__ import annotations

import logging
import threading

from pacs.core.audit import AuditLog
from pacs.core.config import StorageSettings
from pacs.ops import study_trash
from pacs.ops.study_trash import Actor
from storage.archive import Archive

LOG = logging.getLogger(__name__)
INTERVAL_SECONDS = 3600.0
FIRST_RUN_SECONDS = 60.0
SERVICE = Actor("pacs", "service")


def keep_once(archive: Archive, audit: AuditLog, storage: StorageSettings) -> tuple[int, int]:
    """Purge the expired trash and apply retention once; return (studies purged, studies trashed)."""
    purged = study_trash.purge_expired(archive, audit, storage.trash_days, SERVICE)
    trashed: list[study_trash.StudyRef] = []
    if study_trash.retention_due(archive, storage.retention_years):
        trashed = study_trash.apply_retention(archive, audit, storage.retention_years, SERVICE, dry_run=False)
    return len(purged), len(trashed)


class TrashKeeper:
    """Runs :func:`keep_once` in the background, first after `first` seconds, then every `interval`."""

    def __init__(
        self,
        archive: Archive,
        audit: AuditLog,
        storage: StorageSettings,
        *,
        interval: float = INTERVAL_SECONDS,
        first: float = FIRST_RUN_SECONDS,
    ) -> None:
        self._archive = archive
        self._audit = audit
        self._storage = storage
        self._interval = interval
        self._first = first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trash-keeper", daemon=True)

    def start(self) -> None:
        """Start in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the run in progress."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        wait = self._first
        while not self._stop.wait(wait):
            wait = self._interval
            try:
                purged, trashed = keep_once(self._archive, self._audit, self._storage)
            except Exception:
                LOG.exception("emptying the trash failed; it is tried again later")
                continue
            if purged or trashed:
                LOG.info("purged %d studies from the trash; moved %d past retention to it", purged, trashed)
