"""Verifying the archive: every stored object re-authenticated against its index row, and the counts.

A blob is read whole (AES-GCM authenticates each chunk), its size and SHA-256 compared
with the row, and the SOP Instance UID it holds with the row's, so a swapped or altered
blob is found. Interrupted writes are swept first (:func:`storage.reindex.sweep`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage import reindex
from storage.blobs import BlobRef
from storage.crypto import IntegrityError
from storage.header import HeaderError, sop_instance_uid
from storage.index import blob_ref
from storage.models import Instance, Series, Study
from storage.parts import ArchiveParts
from storage.reindex import SweepReport


@dataclass
class VerifyReport:
    """The result of :func:`verify`; ``ok`` is False on any damage."""

    checked: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    spool_files: list[Path] = field(default_factory=list)
    cleaned: bool = False
    sweep: SweepReport = field(default_factory=lambda: SweepReport())

    @property
    def ok(self) -> bool:
        """No stored object is damaged and the index counts are consistent."""
        return not self.damaged and not self.inconsistent

    @property
    def leftovers(self) -> int:
        """Blobs being written or left partial by interrupted writes (not the unreadable ones kept)."""
        return len(self.orphans) - len(self.sweep.unreadable) + len(self.temp_files)


def verify(archive: ArchiveParts, *, cleanup: bool = False, spool: Path | None = None) -> VerifyReport:
    """Index what the index lacks, then re-authenticate every blob against its row.

    First :func:`storage.reindex.sweep` re-indexes every complete blob the index
    lacks; with `cleanup` it also removes incomplete blobs (all of them while no
    other process writes, otherwise only stale ones), the partial blobs of format 1
    and the files under `spool` (plaintext that versions before format 2 left).
    Then every indexed blob is read and checked, and so are the counts.
    """
    report = VerifyReport()
    with archive.exclusive() as alone:
        report.sweep = reindex.sweep(archive, remove=cleanup, alone=alone)
        known: set[str] = set()
        with archive.database.read() as session:
            for instance in session.scalars(select(Instance).order_by(Instance.id)):
                known.add(instance.blob_id)
                report.checked += 1
                problem = _check_blob(archive, blob_ref(instance), instance.sop_uid, instance.transfer_syntax)
                if problem:
                    report.damaged.append((instance.sop_uid, problem))
            report.inconsistent = _count_mismatches(session)
        report.temp_files = [p.name for p in archive._blobs.temp_files()]
        report.orphans = sorted(set(archive._blobs.blob_ids()) - known)
        if spool is not None and spool.is_dir():
            report.spool_files = sorted(p for p in spool.rglob("*") if p.is_file())
        if cleanup and alone:
            for path in archive._blobs.temp_files() + report.spool_files:
                path.unlink(missing_ok=True)
            report.cleaned = True
    return report


def _check_blob(archive: ArchiveParts, ref: BlobRef, sop_uid: str, transfer_syntax: str) -> str | None:
    """What is wrong with the blob of `ref` as the index row of `sop_uid` describes it."""
    digest = hashlib.sha256()
    size = 0
    first = b""  # the first chunk (1 MiB) holds the SOP Instance UID, near the start
    try:
        for chunk in archive._blobs.read(ref):
            digest.update(chunk)
            size += len(chunk)
            first = first or chunk
    except FileNotFoundError:
        return "blob is missing"
    except IntegrityError as exc:
        return str(exc)
    if size != ref.size or digest.hexdigest() != ref.sha256:
        return "content does not match the index (size or SHA-256)"
    try:
        held = sop_instance_uid(first, transfer_syntax)
    except HeaderError as exc:
        return f"stored object: {exc}"
    if held != sop_uid:
        return f"the blob holds SOP instance {held}, not this row's (index rows swapped?)"
    return None


def _count_mismatches(session: Session) -> list[str]:
    """Studies and series whose stored counts (instances, series, frames) differ from what they hold."""
    problems: list[str] = []
    per_series = (
        select(
            Series.series_uid,
            Series.num_instances,
            func.count(Instance.id),
            Series.num_frames,
            func.coalesce(func.sum(Instance.frames), 0),
        )
        .outerjoin(Instance, (Instance.series_fk == Series.id) & Instance.is_current.is_(True))
        .group_by(Series.id)
    )
    for uid, stored, actual, stored_frames, actual_frames in session.execute(per_series):
        if stored != actual:
            problems.append(f"series {uid}: index says {stored} instances, found {actual}")
        if stored_frames != actual_frames:
            problems.append(f"series {uid}: index says {stored_frames} frames, found {actual_frames}")
    per_study = (
        select(
            Study.study_uid,
            Study.num_instances,
            Study.num_series,
            func.coalesce(func.sum(Series.num_instances), 0),
            func.count(Series.id),
            Study.num_frames,
            func.coalesce(func.sum(Series.num_frames), 0),
        )
        .outerjoin(Series, Series.study_fk == Study.id)
        .group_by(Study.id)
    )
    for row in session.execute(per_study):
        uid, stored, stored_series, actual, actual_series, stored_frames, frames = row
        if stored != actual or stored_series != actual_series:
            problems.append(
                f"study {uid}: index says {stored} instances in {stored_series} series, "
                f"found {actual} in {actual_series}"
            )
        if stored_frames != frames:
            problems.append(f"study {uid}: index says {stored_frames} frames, found {frames}")
    return problems
