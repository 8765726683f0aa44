"""The trash of studies: moving there, restoring, purging, and what is due to go.

Deleting is two steps. :func:`move_to_trash` sets ``studies.deleted_at``: from that commit on
the study is hidden from every query and retrieval (:mod:`storage.visibility`), its rows and
blobs untouched, so :func:`restore` brings it back whole. :func:`purge` destroys a trashed
study: every version's blob, deleted while the transaction that deletes every row of its
series and instances (and the patient's row with their last study) holds the study, so a
purge cut short leaves rows of a trashed study pointing at missing blobs, which the next
purge finishes, and never a blob without rows that the sweep (:mod:`storage.reindex`) would
index back. An object of the study that arrives once the purge is done starts a new study.

An object of a trashed study that arrives again (a modality re-sending) is stored as ever
and joins the study in the trash: it is neither lost nor shown; :func:`received_since`
counts such objects for the study's page, and a restore or purge takes them along.

Every change writes a ``study_changes`` row (kind ``delete``, ``restore`` or ``purge``) in
its own transaction, with who, from where and why (:class:`Change`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage import index
from storage.db import Database, as_utc
from storage.errors import ArchiveError, NotFoundError
from storage.header import is_valid_uid
from storage.models import Instance, Patient, Series, Study, StudyChange
from storage.records import DeletedStudy


class TrashStateError(ArchiveError):
    """The study is not in the state the action needs (already in the trash, or not in it)."""


@dataclass(frozen=True)
class Change:
    """Who makes a change, from where, and why (the ``study_changes`` row and the audit record)."""

    user_id: str
    source: str
    reason: str = ""


@dataclass(frozen=True)
class StudyRef:
    """A study as a trash action names it: UIDs, patient, what it holds and when it was trashed."""

    study_uid: str
    patient_id: str
    patient_key: str
    patient_name: str
    study_date: str
    description: str
    modalities: str
    series: int
    instances: int
    deleted_at: datetime | None


_COLUMNS = (
    Study.study_uid,
    Patient.patient_id,
    Patient.patient_key,
    Patient.name,
    Study.study_date,
    Study.description,
    Study.modalities,
    Study.num_series,
    Study.num_instances,
    Study.deleted_at,
)


def _refs(session: Session, *where: Any) -> list[StudyRef]:
    """The studies that `where` selects, newest first."""
    query = select(*_COLUMNS).join(Patient, Study.patient_fk == Patient.id).where(*where)
    rows = session.execute(query.order_by(Study.study_date.desc(), Study.id.desc())).all()
    return [StudyRef(*row[:-1], as_utc(row[-1]) if row[-1] is not None else None) for row in rows]


def study_ref(session: Session, study_uid: str) -> StudyRef:
    """The study `study_uid`, in the trash or not; :class:`NotFoundError` if the index has none."""
    found = _refs(session, Study.study_uid == study_uid) if is_valid_uid(study_uid) else []
    if not found:
        raise NotFoundError(f"no study {study_uid}")
    return found[0]


def patient_studies(session: Session, patient_id: str) -> list[StudyRef]:
    """Every study (in the trash or not) of the patients with Patient ID `patient_id`."""
    found = _refs(session, Patient.patient_id == patient_id) if patient_id else []
    if not found:
        raise NotFoundError(f"no patient with ID {patient_id!r}")
    return found


def note(session: Session, kind: str, ref: StudyRef, change: Change, **details: Any) -> None:
    """Write the ``study_changes`` row of `kind` done to `ref`."""
    session.add(
        StudyChange(
            changed_at=datetime.now(UTC),
            kind=kind,
            study_uid=ref.study_uid,
            patient_key=ref.patient_key,
            user_id=change.user_id,
            source=change.source,
            reason=change.reason,
            details=json.dumps(details, sort_keys=True),
        )
    )


def move_to_trash(database: Database, study_uid: str, change: Change) -> StudyRef:
    """Move a study to the trash (hidden at once); :class:`TrashStateError` if it is there already."""
    now = datetime.now(UTC)
    with database.write() as session:
        ref = study_ref(session, study_uid)
        if ref.deleted_at is not None:
            raise TrashStateError(f"study {study_uid} is already in the trash")
        session.execute(update(Study).where(Study.study_uid == study_uid).values(deleted_at=now))
        note(session, "delete", ref, change, series=ref.series, instances=ref.instances)
    return replace(ref, deleted_at=now)


def restore(database: Database, study_uid: str, change: Change) -> StudyRef:
    """Take a study out of the trash (shown again at once); :class:`TrashStateError` if it is not there."""
    with database.write() as session:
        ref = study_ref(session, study_uid)
        if ref.deleted_at is None:
            raise TrashStateError(f"study {study_uid} is not in the trash")
        session.execute(update(Study).where(Study.study_uid == study_uid).values(deleted_at=None))
        note(session, "restore", ref, change, deleted_at=ref.deleted_at.isoformat())
    return replace(ref, deleted_at=None)


def purge(database: Database, delete_blob: Callable[[str], None], study_uid: str, change: Change) -> int:
    """Destroy a trashed study: every version's blob, then its rows; return how many blobs went.

    Raises :class:`TrashStateError` for a study outside the trash (delete it first). The
    blobs go inside the transaction that deletes the rows, which holds the study (no restore
    and no new object of it can slip in between); if that transaction fails, the rows stay,
    trashed, and the next purge finishes.
    """
    with database.write() as session:
        ref = study_ref(session, study_uid)
        if ref.deleted_at is None:
            raise TrashStateError(f"study {study_uid} is not in the trash: delete it first")
        study = session.scalars(select(Study).where(Study.study_uid == study_uid).with_for_update()).one()
        blob_ids = index.delete_study(session, study)
        for blob_id in blob_ids:
            delete_blob(blob_id)
        note(session, "purge", ref, change, blobs=len(blob_ids))
    return len(blob_ids)


def delete_now(database: Database, delete_blob: Callable[[str], None], study_uid: str) -> DeletedStudy:
    """Delete a study at once, in the trash or not, with every version's blob (no history row)."""
    with database.write() as session:
        ref = study_ref(session, study_uid)
        study = session.scalars(select(Study).where(Study.study_uid == study_uid).with_for_update()).one()
        blob_ids = index.delete_study(session, study)
        for blob_id in blob_ids:
            delete_blob(blob_id)
    return DeletedStudy(study_uid, ref.patient_id, len(blob_ids))


def trashed(session: Session, *, before: datetime | None = None) -> list[StudyRef]:
    """The studies in the trash (moved there before `before`, if given), newest first."""
    where = [Study.deleted_at.is_not(None)]
    if before is not None:
        where.append(Study.deleted_at < before)
    return _refs(session, *where)


def received_since(session: Session, study_uid: str, since: datetime) -> int:
    """How many instance versions of the study were received after `since` (its move to the trash)."""
    series = select(Series.id).join(Study, Series.study_fk == Study.id).where(Study.study_uid == study_uid)
    query = select(func.count(Instance.id)).where(
        Instance.series_fk.in_(series), Instance.received_at > since
    )
    return session.scalar(query) or 0


def due_for_retention(session: Session, study_date_before: str, received_before: datetime) -> list[StudyRef]:
    """The studies outside the trash older than the retention period, newest first.

    A study is due when its Study Date is before `study_date_before` (YYYYMMDD), or, with
    no Study Date, when its first object was received before `received_before`.
    """
    first_received = (
        select(func.min(Instance.received_at))
        .join(Series, Instance.series_fk == Series.id)
        .where(Series.study_fk == Study.id)
        .scalar_subquery()
    )
    dated = (Study.study_date != "") & (Study.study_date < study_date_before)
    undated = (Study.study_date == "") & (first_received < received_before)
    return _refs(session, Study.deleted_at.is_(None), dated | undated)
