"""One study as an administrator looks at it, in the trash or not: attributes, series, state, history.

This is the index's own view for study care (``pacs study show`` and the study's admin page),
not a query path: it finds trashed studies too, says when they went to the trash and how many
objects arrived since (:func:`storage.trash.received_since`), and lists every change of the
study from ``study_changes`` (deletes, restores and purges, and the corrections of other tools).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import trash
from storage.db import as_utc
from storage.header import is_valid_uid
from storage.models import Patient, Series, Study, StudyChange
from storage.trash import StudyRef


@dataclass(frozen=True)
class SeriesRow:
    """One series of the study, with its count of current instances."""

    series_uid: str
    number: int | None
    modality: str
    description: str
    body_part: str
    instances: int


@dataclass(frozen=True)
class HistoryRow:
    """One change of the study (``study_changes``), any kind."""

    id: int
    changed_at: datetime
    kind: str
    user_id: str
    source: str
    reason: str
    details: str
    undone_by: int | None


@dataclass(frozen=True)
class StudyDetails:
    """Everything the study's page shows."""

    ref: StudyRef
    study_time: str
    accession: str
    study_id: str
    referring_name: str
    birth_date: str
    sex: str
    frames: int
    series: list[SeriesRow]
    history: list[HistoryRow]
    received_in_trash: int

    @property
    def state(self) -> str:
        """``in the trash`` or ``active``."""
        return "in the trash" if self.ref.deleted_at is not None else "active"


def history(session: Session, study_uid: str) -> list[HistoryRow]:
    """The changes of `study_uid`, oldest first."""
    rows = session.scalars(
        select(StudyChange).where(StudyChange.study_uid == study_uid).order_by(StudyChange.id)
    )
    return [
        HistoryRow(
            row.id,
            as_utc(row.changed_at),
            row.kind,
            row.user_id,
            row.source,
            row.reason,
            row.details,
            row.undone_by,
        )
        for row in rows
    ]


def details(session: Session, study_uid: str) -> StudyDetails:
    """The study `study_uid` as its page shows it; :class:`~storage.errors.NotFoundError` if none.

    A study purged has no rows left: only its history remains, and this raises.
    """
    ref = trash.study_ref(session, study_uid)
    study, patient = session.execute(
        select(Study, Patient)
        .join(Patient, Study.patient_fk == Patient.id)
        .where(Study.study_uid == study_uid)
    ).one()
    series = session.execute(
        select(
            Series.series_uid,
            Series.series_number,
            Series.modality,
            Series.description,
            Series.body_part,
            Series.num_instances,
        )
        .where(Series.study_fk == study.id)
        .order_by(Series.series_number, Series.id)
    ).all()
    late = trash.received_since(session, study_uid, ref.deleted_at) if ref.deleted_at is not None else 0
    return StudyDetails(
        ref=ref,
        study_time=study.study_time,
        accession=study.accession,
        study_id=study.study_id,
        referring_name=study.referring_name,
        birth_date=patient.birth_date,
        sex=patient.sex,
        frames=study.num_frames,
        series=[SeriesRow(*row) for row in series],
        history=history(session, study_uid),
        received_in_trash=late,
    )


def instance_counts(session: Session, study_uids: Collection[str]) -> dict[str, int]:
    """The number of current instances of each of `study_uids` that the index holds."""
    uids = [uid for uid in study_uids if is_valid_uid(uid)]
    if not uids:
        return {}
    rows = session.execute(select(Study.study_uid, Study.num_instances).where(Study.study_uid.in_(uids)))
    return {uid: count for uid, count in rows}
