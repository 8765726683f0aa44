"""Re-indexing durable objects the index lost, and auditing it as such.

The blob is the source of truth (:mod:`storage.reindex`). :func:`reindex` runs one sweep
and records every study it gave index rows back to as an Import event, with why it ran:
``start-up`` (``pacs serve`` before it listens), ``sweep`` (:class:`PeriodicSweep`
inside ``pacs serve``) or ``verify`` (``pacs verify``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection

from pacs.core.audit import AuditLog, EventID
from pacs.core.events import blob_sweep
from pacs.ops.received import Received
from storage.archive import Archive
from storage.reindex import SweepReport, sweep

LOG = logging.getLogger(__name__)
QUICK_SECONDS = 5.0


def audit_sweep(audit: AuditLog, report: SweepReport, *, why: str, actor: str) -> None:
    """Record what `report` re-indexed (one event per study) and what it removed or could not read."""
    studies = Received()
    for result in report.reindexed:
        studies.count(result)
    what = "re-indexed from durable objects the index had lost"
    for event in studies.events(EventID.IMPORT, user_id=actor, what=what, why=why):
        audit.append(event)
    if report.removed or report.unreadable or report.duplicates:
        audit.append(
            blob_sweep(
                by=actor,
                why=why,
                incomplete_removed=len(report.removed),
                duplicates_removed=len(report.duplicates),
                unreadable_kept=[blob_id for blob_id, _ in report.unreadable][:100],
            )
        )


def reindex(
    archive: Archive,
    audit: AuditLog,
    *,
    why: str,
    remove: bool,
    alone: bool,
    only: Collection[str] | None = None,
    actor: str = "pacs",
) -> SweepReport:
    """Run one sweep (see :func:`storage.reindex.sweep`) and audit it."""
    report = sweep(archive, remove=remove, alone=alone, only=only)
    audit_sweep(audit, report, why=why, actor=actor)
    return report


def reindex_alone_if_possible(archive: Archive, audit: AuditLog, *, why: str) -> SweepReport:
    """Sweep everything, settling every blob if no other process writes, else only the safe ones."""
    with archive.exclusive() as alone:
        return reindex(archive, audit, why=why, remove=True, alone=alone)


class PeriodicSweep:
    """A thread of ``pacs serve``: the objects this process could not index, then a full sweep.

    Every :data:`QUICK_SECONDS` it retries the blobs whose index commit failed here
    (a database outage); every `interval` seconds, with `full`, it sweeps the whole
    blob store (one process of the service does that).
    """

    def __init__(self, archive: Archive, audit: AuditLog, *, interval: float, full: bool) -> None:
        self._archive = archive
        self._audit = audit
        self._interval = interval
        self._sweeps_all = full
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blob-sweep", daemon=True)

    def start(self) -> None:
        """Start sweeping in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the sweep in progress."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        waited = 0.0
        step = min(QUICK_SECONDS, self._interval)
        while not self._stop.wait(step):
            waited += step
            self._quick()
            if self._sweeps_all and waited >= self._interval:
                waited = 0.0
                self._full()

    def _quick(self) -> None:
        pending = self._archive.take_unindexed()
        if not pending:
            return
        try:
            reindex(self._archive, self._audit, why="sweep", remove=True, alone=False, only=pending)
            left = pending - self._archive.indexed_blob_ids(pending)
        except Exception:
            LOG.warning("the index is still unavailable; %d objects wait to be indexed", len(pending))
            left = pending
        for blob_id in left:
            if self._archive.has_blob(blob_id):
                self._archive.remember_unindexed(blob_id)

    def _full(self) -> None:
        try:
            reindex(self._archive, self._audit, why="sweep", remove=True, alone=False)
        except Exception:
            LOG.exception("the blob sweep failed; it runs again later")
