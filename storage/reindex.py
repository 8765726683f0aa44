"""Restoring index rows from the blobs: the blob is the source of truth.

The index commit of a stored object is not flushed, and a database outage can refuse
it, so the index may lack a blob that was acknowledged. :func:`sweep` finds every blob
on disk that no index row references and reads it through its own key slot:

- a *complete* blob (every chunk authenticates, the last one included) is re-indexed
  from its own header, with the frame map its walk finds, or dropped if the index
  already holds the same bytes as the current version (a duplicate); a complete blob
  is never deleted for being unreferenced;
- an *incomplete* blob (no authenticated last chunk: its writer died or gave up) is
  removed when `remove` is set, and only once no writer can still be writing it.

Run alone (no other process writing), every unreferenced blob is settled. Beside live
writers, a complete blob is left alone for :data:`SETTLE_SECONDS` (its own writer is
about to index it) and an incomplete one for :data:`STALE_SECONDS` since its last write.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import exc as sa_exc

from storage.blobs import BlobRef, NotRecoverableError
from storage.crypto import IntegrityError
from storage.header import HeaderError, InstanceHeader
from storage.index import StoreOutcome, StoreResult
from storage.keys import KeyFileError
from storage.parts import ArchiveParts
from storage.walker import Part10Walker

SETTLE_SECONDS = 10.0
STALE_SECONDS = 600.0


@dataclass
class SweepReport:
    """What one :func:`sweep` found and did."""

    reindexed: list[StoreResult] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def sweep(
    archive: ArchiveParts, *, remove: bool, alone: bool, only: Collection[str] | None = None
) -> SweepReport:
    """Re-index the complete blobs the index lacks (of `only`, or of all); see the module docstring.

    `alone` says that no other process is writing (the caller holds the writer lock
    exclusively), so no blob can be on its way in.
    """
    report = SweepReport()
    on_disk = set(only) if only is not None else set(archive._blobs.blob_ids())
    if not on_disk:
        return report
    unreferenced = on_disk - archive.indexed_blob_ids(on_disk if only is not None else None)
    ages = {blob_id: archive._blobs.age_seconds(blob_id) for blob_id in unreferenced}
    # Oldest first, so that of two versions of one SOP instance the newer ends up current.
    for blob_id in sorted(unreferenced, key=lambda b: -ages[b]):
        age = ages[blob_id]
        if age == math.inf or (not alone and age < SETTLE_SECONDS):
            continue
        _settle(archive, blob_id, age, report, remove=remove, alone=alone)
    return report


def _settle(
    archive: ArchiveParts, blob_id: str, age: float, report: SweepReport, *, remove: bool, alone: bool
) -> None:
    """Re-index, drop or keep one unreferenced blob."""
    try:
        header, ref, frame_map = _read(archive, blob_id)
    except FileNotFoundError:
        return
    except IntegrityError:
        if remove and (alone or age >= STALE_SECONDS):
            archive._blobs.delete(blob_id)
            report.removed.append(blob_id)
        else:
            report.incomplete.append(blob_id)
        return
    except (NotRecoverableError, HeaderError, KeyFileError) as exc:
        report.unreadable.append((blob_id, str(exc)))
        return
    received_at = datetime.fromtimestamp(datetime.now(UTC).timestamp() - age, UTC)
    try:
        version, outcome = archive.index_blob(header, ref, received_at=received_at, frame_map=frame_map)
    except sa_exc.IntegrityError:
        return  # indexed meanwhile by its own writer or another sweep
    if outcome is StoreOutcome.DUPLICATE:
        if archive.discard_duplicate(blob_id):
            report.duplicates.append(blob_id)
        return
    report.reindexed.append(StoreResult.of(outcome, header, version, ref.size, ref.sha256))


def _read(archive: ArchiveParts, blob_id: str) -> tuple[InstanceHeader, BlobRef, bytes]:
    """The header, full reference and packed frame map of a blob, read through its own key slot.

    Raises :class:`~storage.crypto.IntegrityError` if the blob is incomplete or damaged.
    """
    embedded = archive._blobs.embedded_ref(blob_id)
    walker = Part10Walker(max_header=archive.max_header_bytes)
    digest = hashlib.sha256()
    size = 0
    for chunk in archive._blobs.read(embedded):
        walker.feed(chunk)
        digest.update(chunk)
        size += len(chunk)
    walked = walker.close()
    ref = BlobRef(blob_id, embedded.key_version, embedded.wrapped_key, size, digest.hexdigest())
    return walked.header(), ref, walked.frame_map.pack()
