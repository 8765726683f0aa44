"""Correcting studies: edit, move and merge as new versions of the objects, their history and their undo.

Every action writes, through :mod:`storage.versions`, a new version of each current object it
touches (the received ones stay as they arrived), records one ``study_changes`` row in the same
transaction and one audit record per study (:func:`pacs.core.care_events.study_corrected`)
with who, why, what and from where; a refused or failed action is audited too. A reason is
required.

- :func:`edit` sets patient attributes (name, ID, issuer, birth date, sex) and study
  attributes (description, accession, referring physician, date, time, Study ID). Patient
  attributes belong to the patient record, so they are written into every study of the
  study's patient outside the trash; a Patient ID that is another record's is refused
  (that is a move or a merge).
- :func:`move` gives one study the patient attributes of another existing patient record.
- :func:`merge` moves every study of one patient record to another, as one change.
- :func:`undo` writes the values each study had before a change, as a new change. A change
  followed by a later correction of one of its studies (not undone) is refused: undo the
  later one first, so an undo never silently reverts someone else's correction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pacs.core import care_events
from pacs.core.audit import AuditLog
from pacs.core.audit_vocabulary import Outcome
from pacs.ops.correction_values import checked
from storage import changes, index, versions
from storage.archive import Archive
from storage.changes import HistoryEntry, PatientRecord
from storage.errors import NotFoundError, PacsError
from storage.header import InstanceHeader
from storage.versions import PATIENT_KEYWORDS, Change, ChangeRecord, CorrectionError, StudyRewrite


class Care(Protocol):
    """What the actions use: the archive and the audit trail (a ``pacs`` context, or the web's services)."""

    @property
    def archive(self) -> Archive:
        """The archive whose studies are corrected."""

    @property
    def audit(self) -> AuditLog:
        """Where each action is recorded."""


@dataclass(frozen=True)
class Actor:
    """Who asks for a change, from where, and why."""

    by: str
    source: str
    reason: str


def _require_reason(reason: str) -> str:
    """The reason, stripped; raise when it is empty."""
    if not reason.strip():
        raise CorrectionError("a reason is required")
    return reason.strip()


def _key_of(values: dict[str, str]) -> str:
    """The patient key (see :func:`storage.index.patient_key`) of a study with these patient values."""
    blank = dict.fromkeys(InstanceHeader.__dataclass_fields__, "")
    header = InstanceHeader(  # type: ignore[arg-type]
        **{
            **blank,
            "patient_id": values.get("PatientID", ""),
            "issuer": values.get("IssuerOfPatientID", ""),
            "patient_name": values.get("PatientName", ""),
            "birth_date": values.get("PatientBirthDate", ""),
        }
    )
    return index.patient_key(header)


def _patient_id_of(pacs: Care, study_uid: str) -> str:
    """The Patient ID a study is filed under ("" for an unknown study)."""
    try:
        return changes.patient_of_study(pacs.archive.database, study_uid).patient_id
    except NotFoundError:
        return ""


def _apply(
    pacs: Care,
    kind: str,
    plans: list[StudyRewrite],
    actor: Actor,
    undoes: int | None = None,
    **extra: object,
) -> Change:
    """Make the change and audit it, per study; a failure is audited and raised."""
    reason = _require_reason(actor.reason)
    if undoes is not None:
        extra["undoes"] = undoes
    record = ChangeRecord(kind, actor.by, actor.source, reason, extra=dict(extra), undoes=undoes)
    try:
        done = versions.rewrite(pacs.archive, plans, record)
    except PacsError as exc:
        for plan in plans:
            pacs.audit.append(
                care_events.study_corrected(
                    kind,
                    by=actor.by,
                    source=actor.source,
                    patient_id=_patient_id_of(pacs, plan.study_uid),
                    study_uid=plan.study_uid,
                    reason=reason,
                    outcome=Outcome.SERIOUS_FAILURE,
                    error=str(exc),
                    after=plan.values,
                )
            )
        raise
    for study in done.studies:
        pacs.audit.append(
            care_events.study_corrected(
                kind,
                by=actor.by,
                source=actor.source,
                patient_id=_patient_id_of(pacs, study.study_uid),
                study_uid=study.study_uid,
                reason=reason,
                change=done.id,
                before=study.before,
                after=study.after,
                versions=len(study.instances),
                **extra,
            )
        )
    return done


def edit(pacs: Care, study_uid: str, values: dict[str, str], actor: Actor) -> Change:
    """Set attributes of a study (patient attributes: of all its patient's studies); see above."""
    _require_reason(actor.reason)
    values = checked(values)
    patient = changes.patient_of_study(pacs.archive.database, study_uid)
    patient_values = {key: value for key, value in values.items() if key in PATIENT_KEYWORDS}
    plans = [StudyRewrite(study_uid, values)]
    if patient_values:
        new_values = {**patient.values(), **patient_values}
        other = changes.patient_by_key(pacs.archive.database, _key_of(new_values))
        if other is not None and other.id != patient.id:
            raise CorrectionError(
                f"Patient ID {other.patient_id!r} is another patient's record: move the study or merge them"
            )
        siblings = changes.studies_of_patient(pacs.archive.database, patient.id)
        plans += [StudyRewrite(uid, patient_values) for uid in siblings if uid != study_uid]
    return _apply(pacs, "edit", plans, actor)


def move(pacs: Care, study_uid: str, to_patient_id: str, issuer: str | None, actor: Actor) -> Change:
    """Give a study the patient attributes of the existing patient record `to_patient_id`."""
    _require_reason(actor.reason)
    target = changes.one_patient(pacs.archive.database, to_patient_id, issuer)
    current = changes.patient_of_study(pacs.archive.database, study_uid)
    if current.id == target.id:
        raise CorrectionError(f"study {study_uid} already belongs to Patient ID {target.patient_id!r}")
    plans = [StudyRewrite(study_uid, target.values())]
    return _apply(pacs, "move", plans, actor, from_patient=current.patient_id, to_patient=target.patient_id)


def merge(pacs: Care, source: PatientRecord, into: PatientRecord, actor: Actor) -> Change:
    """Move every study of the record `source` (outside the trash) to the record `into`, as one change."""
    _require_reason(actor.reason)
    if source.id == into.id:
        raise CorrectionError("a patient record cannot be merged into itself")
    studies = changes.studies_of_patient(pacs.archive.database, source.id)
    if not studies:
        raise CorrectionError(f"Patient ID {source.patient_id!r} has no study outside the trash")
    plans = [StudyRewrite(uid, into.values()) for uid in studies]
    return _apply(pacs, "merge", plans, actor, from_patient=source.patient_id, to_patient=into.patient_id)


def undo(pacs: Care, change_id: int, actor: Actor) -> Change:
    """Write the values before change `change_id` as a new change; refused if it is undone or superseded."""
    _require_reason(actor.reason)
    entry = changes.change(pacs.archive.database, change_id)
    if entry.kind not in changes.CORRECTIONS:
        raise CorrectionError(f"change {change_id} is a {entry.kind}: only corrections are undone here")
    if entry.undone_by is not None:
        raise CorrectionError(f"change {change_id} was already undone by change {entry.undone_by}")
    later = changes.later_corrections(pacs.archive.database, entry)
    if later:
        raise CorrectionError(
            f"change {change_id} was followed by change {later[-1].id} on the same study: undo that one first"
        )
    plans = [StudyRewrite(study["study_uid"], study["before"]) for study in entry.details.get("studies", [])]
    return _apply(pacs, "undo", plans, actor, undoes=change_id, undone_kind=entry.kind)


def patient_history(pacs: Care, patient_id: str, issuer: str | None = None) -> list[HistoryEntry]:
    """The changes of every study of the patient records with this ID, oldest first."""
    uids: list[str] = []
    for record in changes.patients_with_id(pacs.archive.database, patient_id, issuer):
        uids += changes.studies_of_patient(pacs.archive.database, record.id, trashed=True)
    if not uids:
        raise CorrectionError(f"no study of Patient ID {patient_id!r}")
    return changes.study_history(pacs.archive.database, uids)


def study_history(pacs: Care, study_uid: str) -> list[HistoryEntry]:
    """The changes of a study, oldest first (NotFoundError for an unknown study)."""
    changes.patient_of_study(pacs.archive.database, study_uid)
    return changes.study_history(pacs.archive.database, [study_uid])
