"""The audit events of study care: trash, purge, corrections, forwarding, retention and anonymized copies.

The third part of the catalogue beside :mod:`pacs.core.events` and :mod:`pacs.core.access_events`.
Every builder takes who acted (`by`: a user, ``pacs`` or ``route:NAME``), from where (`source`: an
address, or ``cli``), the patient and study, and `reason` where the action requires one, so an
auditor reads who, why, what and from where in each record.
"""

from __future__ import annotations

from typing import Any

from pacs.core.audit_vocabulary import Action, AuditEvent, EventID, Outcome


def study_deleted(
    *, by: str, source: str, patient_id: str, study_uid: str, reason: str, stage: str, **details: Any
) -> AuditEvent:
    """A study moved to the trash (`stage` ``trash``), destroyed (``purge``) or brought back (``restore``)."""
    action = Action.UPDATE if stage == "restore" else Action.DELETE
    return AuditEvent(
        EventID.STUDY_DELETED,
        action,
        user_id=by,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={"stage": stage, "reason": reason, **details},
    )


def study_corrected(
    what: str,
    *,
    by: str,
    source: str,
    patient_id: str,
    study_uid: str,
    reason: str,
    outcome: Outcome = Outcome.SUCCESS,
    **details: Any,
) -> AuditEvent:
    """A study's attributes changed (`what`: ``edit``, ``move``, ``merge`` or ``undo``) into new versions."""
    return AuditEvent(
        EventID.INSTANCES_ACCESSED,
        Action.UPDATE,
        outcome=outcome,
        user_id=by,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={"what": what, "reason": reason, **details},
    )


def study_forwarded(
    *,
    by: str,
    source: str,
    patient_id: str,
    study_uid: str,
    destination: str,
    outcome: Outcome = Outcome.SUCCESS,
    **details: Any,
) -> AuditEvent:
    """A study (or a series of it) was queued for, sent to or failed to reach an enrolled node."""
    return AuditEvent(
        EventID.INSTANCES_TRANSFERRED,
        Action.READ,
        outcome=outcome,
        user_id=by,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={"destination": destination, **details},
    )


def study_anonymized(
    *,
    by: str,
    source: str,
    patient_id: str,
    study_uid: str,
    destination: str,
    outcome: Outcome = Outcome.SUCCESS,
    **details: Any,
) -> AuditEvent:
    """A de-identified copy of a study was written to `destination` (a folder or a ZIP file), or failed."""
    return AuditEvent(
        EventID.EXPORT,
        Action.READ,
        outcome=outcome,
        user_id=by,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={"what": "anonymized copy", "destination": destination, **details},
    )


def retention_run(*, by: str, source: str, dry_run: bool, studies: int, **details: Any) -> AuditEvent:
    """The retention policy was applied (or, with `dry_run`, listed) over `studies` studies."""
    return AuditEvent(
        EventID.STUDY_DELETED,
        Action.EXECUTE if dry_run else Action.DELETE,
        user_id=by,
        source=source,
        details={"what": "retention", "dry_run": dry_run, "studies": studies, **details},
    )
