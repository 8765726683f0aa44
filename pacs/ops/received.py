"""Objects received into the archive, tallied per study, and the audit events that describe them.

Both ways in, ``pacs import`` and the DICOM C-STORE service, count what each study got
(stored, already present, new versions) and audit it with the same events: one per study
when the import or association ends, and one for every object kept as a new version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pacs.core.audit import Action, AuditEvent, EventID
from storage.archive import StoreResult
from storage.index import Outcome


@dataclass
class StudyTally:
    """What one study received."""

    patient_id: str
    stored: int = 0
    duplicates: int = 0
    new_versions: int = 0


@dataclass
class Received:
    """Tallies per study of one import run or one association."""

    studies: dict[str, StudyTally] = field(default_factory=dict)

    def count(self, result: StoreResult) -> None:
        """Count one stored object."""
        tally = self.studies.setdefault(result.study_uid, StudyTally(result.patient_id))
        if result.outcome is Outcome.DUPLICATE:
            tally.duplicates += 1
        elif result.outcome is Outcome.NEW_VERSION:
            tally.new_versions += 1
        else:
            tally.stored += 1

    def events(self, event_id: EventID, *, user_id: str, source: str = "") -> list[AuditEvent]:
        """One audit event per study, with its counts."""
        return [
            AuditEvent(
                event_id,
                Action.CREATE,
                user_id=user_id,
                source=source,
                patient_id=tally.patient_id,
                study_uid=study_uid,
                details={
                    "stored": tally.stored,
                    "duplicates": tally.duplicates,
                    "new_versions": tally.new_versions,
                },
            )
            for study_uid, tally in self.studies.items()
        ]


def new_version_event(
    event_id: EventID, result: StoreResult, *, user_id: str, source: str = ""
) -> AuditEvent:
    """The audit event for an object kept as a new version of a stored SOP instance."""
    return AuditEvent(
        event_id,
        Action.UPDATE,
        user_id=user_id,
        source=source,
        patient_id=result.patient_id,
        study_uid=result.study_uid,
        details={
            "what": "an object with a stored SOP Instance UID but other content was kept as a new version",
            "sop_instance_uid": result.sop_uid,
            "version": result.version,
            "sha256": result.sha256,
        },
    )
