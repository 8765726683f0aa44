"""Reading what corrections need: patient records, a patient's studies, and the history of changes.

The history is the ``study_changes`` table (:class:`storage.models.StudyChange`), written by
:mod:`storage.versions` for edits, moves, merges and undos, and by the trash for deletes,
restores and purges. A change that touched several studies (a merge) names them all in its
details, so a study's history finds it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from storage.db import Database
from storage.errors import NotFoundError
from storage.models import Patient, Study, StudyChange

CORRECTIONS = ("edit", "move", "merge", "undo")


@dataclass(frozen=True)
class PatientRecord:
    """A patient row's identity and demographics, as a move or a merge copies them."""

    id: int
    patient_key: str
    patient_id: str
    issuer: str
    name: str
    birth_date: str
    sex: str

    def values(self) -> dict[str, str]:
        """The patient attributes a study moved to this patient gets (by DICOM keyword)."""
        return {
            "PatientID": self.patient_id,
            "IssuerOfPatientID": self.issuer,
            "PatientName": self.name,
            "PatientBirthDate": self.birth_date,
            "PatientSex": self.sex,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One row of ``study_changes``, its details decoded."""

    id: int
    changed_at: datetime
    kind: str
    study_uid: str
    user_id: str
    source: str
    reason: str
    details: dict[str, Any]
    undone_by: int | None

    def study_uids(self) -> list[str]:
        """Every study the change touched (the row's own study first)."""
        named = [entry.get("study_uid", "") for entry in self.details.get("studies", [])]
        return list(dict.fromkeys(uid for uid in [self.study_uid, *named] if uid))


_PATIENT_COLUMNS = (
    Patient.id,
    Patient.patient_key,
    Patient.patient_id,
    Patient.issuer,
    Patient.name,
    Patient.birth_date,
    Patient.sex,
)


def patients_with_id(database: Database, patient_id: str, issuer: str | None = None) -> list[PatientRecord]:
    """The patient records with this Patient ID (and issuer, when given)."""
    query = select(*_PATIENT_COLUMNS).where(Patient.patient_id == patient_id)
    if issuer is not None:
        query = query.where(Patient.issuer == issuer)
    with database.read() as session:
        return [PatientRecord(*row) for row in session.execute(query.order_by(Patient.id))]


def one_patient(database: Database, patient_id: str, issuer: str | None = None) -> PatientRecord:
    """The one patient record with this ID (and issuer); NotFoundError if none, or if an issuer is needed."""
    found = patients_with_id(database, patient_id, issuer)
    if not found:
        raise NotFoundError(
            f"no patient with Patient ID {patient_id!r}" + (f" of issuer {issuer!r}" if issuer else "")
        )
    if len(found) > 1:
        issuers = ", ".join(repr(record.issuer) for record in found)
        raise NotFoundError(f"Patient ID {patient_id!r} has several issuers ({issuers}): give the issuer")
    return found[0]


def patient_by_key(database: Database, patient_key: str) -> PatientRecord | None:
    """The patient record with this key, if any."""
    with database.read() as session:
        row = session.execute(
            select(*_PATIENT_COLUMNS).where(Patient.patient_key == patient_key)
        ).one_or_none()
    return PatientRecord(*row) if row is not None else None


def patient_of_study(database: Database, study_uid: str) -> PatientRecord:
    """The patient record a study belongs to (trash or not); NotFoundError if there is no such study."""
    query = select(*_PATIENT_COLUMNS).join(Study, Study.patient_fk == Patient.id)
    with database.read() as session:
        row = session.execute(query.where(Study.study_uid == study_uid)).one_or_none()
    if row is None:
        raise NotFoundError(f"no study {study_uid}")
    return PatientRecord(*row)


def studies_of_patient(database: Database, patient_fk: int, *, trashed: bool = False) -> list[str]:
    """The Study Instance UIDs of a patient record's studies (outside the trash unless `trashed`)."""
    query = select(Study.study_uid).where(Study.patient_fk == patient_fk)
    if not trashed:
        query = query.where(Study.deleted_at.is_(None))
    with database.read() as session:
        return list(session.scalars(query.order_by(Study.study_date, Study.id)))


def _entry(row: StudyChange) -> HistoryEntry:
    return HistoryEntry(
        id=row.id,
        changed_at=row.changed_at,
        kind=row.kind,
        study_uid=row.study_uid,
        user_id=row.user_id,
        source=row.source,
        reason=row.reason,
        details=json.loads(row.details or "{}"),
        undone_by=row.undone_by,
    )


def _naming(study_uid: str) -> Any:
    """Rows of `study_uid` or whose details name it (a UID holds no LIKE wildcard)."""
    return or_(StudyChange.study_uid == study_uid, StudyChange.details.like(f'%"{study_uid}"%'))


def change(database: Database, change_id: int) -> HistoryEntry:
    """The change `change_id`; NotFoundError if there is none."""
    with database.read() as session:
        row = session.get(StudyChange, change_id)
    if row is None:
        raise NotFoundError(f"no change {change_id}")
    return _entry(row)


def study_history(database: Database, study_uids: list[str]) -> list[HistoryEntry]:
    """The changes of these studies, oldest first."""
    if not study_uids:
        return []
    query = select(StudyChange).where(or_(*(_naming(uid) for uid in study_uids))).order_by(StudyChange.id)
    with database.read() as session:
        return [_entry(row) for row in session.scalars(query)]


def later_corrections(database: Database, entry: HistoryEntry) -> list[HistoryEntry]:
    """The corrections after `entry`, still in effect, that touched one of its studies."""
    uids = set(entry.study_uids())
    query = (
        select(StudyChange)
        .where(StudyChange.id > entry.id, StudyChange.kind.in_(CORRECTIONS), StudyChange.undone_by.is_(None))
        .where(or_(*(_naming(uid) for uid in uids)))
        .order_by(StudyChange.id)
    )
    with database.read() as session:
        found = [_entry(row) for row in session.scalars(query)]
    # An undo of a change made after `entry` cancels that change: neither counts.
    found = [
        later for later in found if not (later.kind == "undo" and later.details.get("undoes", 0) > entry.id)
    ]
    return [later for later in found if uids & set(later.study_uids())]
