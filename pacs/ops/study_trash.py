"""Deleting studies, as the CLI and the web ask it: trash, erasure, restore, purge and retention.

Each action checks what it is asked (a reason is required to delete), writes its audit
record first (:mod:`pacs.core.care_events`: who, why, what and from where; an action whose
record cannot be written does not happen) and then acts through :mod:`storage.trash`, which
writes the study's history row. Erasing a patient is one action that moves every study of
theirs to the trash. Purging destroys a trashed study for good; :func:`purge_expired` does
that to studies that spent ``[storage] trash_days`` in the trash, and :func:`apply_retention`
moves to the trash the studies older than ``[storage] retention_years``, which the next
expiry purges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pacs.core.audit import AuditLog
from pacs.core.care_events import retention_run, study_deleted
from storage import trash
from storage.archive import Archive
from storage.errors import PacsError
from storage.trash import Change, StudyRef

RETENTION = "retention: older than {years} years"
EXPIRED = "in the trash for more than {days} days"


class ReasonRequiredError(PacsError, ValueError):
    """A study was to be deleted without saying why."""


@dataclass(frozen=True)
class Actor:
    """Who asks for an action and from where (a user and an address, or ``cli``)."""

    by: str
    source: str


def _reason(reason: str) -> str:
    """`reason` stripped; :class:`ReasonRequiredError` if nothing is left."""
    cleaned = " ".join(reason.split())
    if not cleaned:
        raise ReasonRequiredError("a reason is required to delete a study")
    return cleaned


def _audit(audit: AuditLog, actor: Actor, ref: StudyRef, stage: str, reason: str, **details: object) -> None:
    """Write the record of `stage` done to `ref` (fail closed: raises if it cannot be written)."""
    audit.append(
        study_deleted(
            by=actor.by,
            source=actor.source,
            patient_id=ref.patient_id,
            study_uid=ref.study_uid,
            reason=reason,
            stage=stage,
            instances=ref.instances,
            **details,
        )
    )


def find(archive: Archive, study_uid: str) -> StudyRef:
    """The study `study_uid`, in the trash or not (:class:`~storage.errors.NotFoundError` if none)."""
    with archive.database.read() as session:
        return trash.study_ref(session, study_uid)


def delete_study(archive: Archive, audit: AuditLog, study_uid: str, actor: Actor, reason: str) -> StudyRef:
    """Move a study to the trash: from now on no query or retrieval finds it."""
    why = _reason(reason)
    ref = find(archive, study_uid)
    if ref.deleted_at is not None:
        raise trash.TrashStateError(f"study {study_uid} is already in the trash")
    _audit(audit, actor, ref, "trash", why)
    return trash.move_to_trash(archive.database, study_uid, Change(actor.by, actor.source, why))


def erase_patient(
    archive: Archive, audit: AuditLog, patient_id: str, actor: Actor, reason: str
) -> list[StudyRef]:
    """Move every study of the patient(s) with `patient_id` to the trash, in one action."""
    why = _reason(reason)
    with archive.database.read() as session:
        studies = [ref for ref in trash.patient_studies(session, patient_id) if ref.deleted_at is None]
    if not studies:
        raise trash.TrashStateError(f"every study of patient {patient_id} is in the trash already")
    moved = []
    for ref in studies:
        _audit(audit, actor, ref, "trash", why, erasure=True, studies=len(studies))
        moved.append(
            trash.move_to_trash(archive.database, ref.study_uid, Change(actor.by, actor.source, why))
        )
    return moved


def restore_study(archive: Archive, audit: AuditLog, study_uid: str, actor: Actor) -> StudyRef:
    """Bring a study back from the trash, everywhere at once."""
    ref = find(archive, study_uid)
    if ref.deleted_at is None:
        raise trash.TrashStateError(f"study {study_uid} is not in the trash")
    _audit(audit, actor, ref, "restore", "restored from the trash")
    return trash.restore(archive.database, study_uid, Change(actor.by, actor.source, "restored"))


def purge_study(archive: Archive, audit: AuditLog, study_uid: str, actor: Actor, reason: str = "") -> int:
    """Destroy a trashed study and every version's blob; return how many blobs went."""
    why = " ".join(reason.split()) or "purged from the trash by hand"
    ref = find(archive, study_uid)
    if ref.deleted_at is None:
        raise trash.TrashStateError(f"study {study_uid} is not in the trash: delete it first")
    _audit(audit, actor, ref, "purge", why)
    return archive.purge_study(study_uid, Change(actor.by, actor.source, why))


def trashed(archive: Archive) -> list[StudyRef]:
    """The studies in the trash, newest first."""
    with archive.database.read() as session:
        return trash.trashed(session)


def expired(archive: Archive, trash_days: int, now: datetime | None = None) -> list[StudyRef]:
    """The studies that have been in the trash for more than `trash_days` days."""
    before = (now or datetime.now(UTC)) - timedelta(days=trash_days)
    with archive.database.read() as session:
        return trash.trashed(session, before=before)


def purge_expired(
    archive: Archive, audit: AuditLog, trash_days: int, actor: Actor, now: datetime | None = None
) -> list[StudyRef]:
    """Purge every study that spent more than `trash_days` days in the trash; return them."""
    due = expired(archive, trash_days, now)
    for ref in due:
        purge_study(archive, audit, ref.study_uid, actor, EXPIRED.format(days=trash_days))
    return due


def retention_cutoff(years: int, today: date) -> tuple[str, datetime]:
    """The Study Date (YYYYMMDD) and the time of receipt before which a study is `years` old."""
    try:
        cutoff = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        cutoff = today.replace(year=today.year - years, day=28)
    return cutoff.strftime("%Y%m%d"), datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)


def retention_due(archive: Archive, years: int, today: date | None = None) -> list[StudyRef]:
    """The studies outside the trash older than `years` years (none if `years` is 0: keep forever)."""
    if years <= 0:
        return []
    study_date, received = retention_cutoff(years, today or datetime.now(UTC).date())
    with archive.database.read() as session:
        return trash.due_for_retention(session, study_date, received)


def apply_retention(
    archive: Archive,
    audit: AuditLog,
    years: int,
    actor: Actor,
    *,
    dry_run: bool,
    today: date | None = None,
) -> list[StudyRef]:
    """List (`dry_run`) or move to the trash the studies older than `years` years; audited either way."""
    due = retention_due(archive, years, today)
    uids = [ref.study_uid for ref in due]
    event = retention_run(
        by=actor.by,
        source=actor.source,
        dry_run=dry_run,
        studies=len(due),
        years=years,
        study_uids=uids[:200],
    )
    audit.append(event)
    if not dry_run:
        for ref in due:
            delete_study(archive, audit, ref.study_uid, actor, RETENTION.format(years=years))
    return due
