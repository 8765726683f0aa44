"""Objects received into the archive, tallied per study, and the audit events that describe them.

Both ways in, ``pacs import`` and the DICOM C-STORE service, count what each study got
(stored, already present, new versions) and audit it with the same events: one per study
when the import or association ends (:func:`pacs.core.access_events.instances_stored`), and one
for every object kept as a new version (:func:`pacs.core.access_events.new_version_kept`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pacs.core.access_events import instances_stored
from pacs.core.audit import AuditEvent, EventID
from storage.archive import StoreResult
from storage.index import StoreOutcome


@dataclass
class StudyTally:
    """What one study received."""

    patient_id: str
    stored: int = 0
    duplicates: int = 0
    new_versions: int = 0

    def counts(self) -> dict[str, int]:
        """The counts, as the audit record holds them."""
        return {"stored": self.stored, "duplicates": self.duplicates, "new_versions": self.new_versions}


@dataclass
class Received:
    """Tallies per study of one import run or one association."""

    studies: dict[str, StudyTally] = field(default_factory=dict)

    def count(self, result: StoreResult) -> None:
        """Count one stored object."""
        tally = self.studies.setdefault(result.study_uid, StudyTally(result.patient_id))
        if result.outcome is StoreOutcome.DUPLICATE:
            tally.duplicates += 1
        elif result.outcome is StoreOutcome.NEW_VERSION:
            tally.new_versions += 1
        else:
            tally.stored += 1

    def events(
        self, event_id: EventID, *, user_id: str, source: str = "", **details: str
    ) -> list[AuditEvent]:
        """One audit event per study, with its counts (and `details`)."""
        return [
            instances_stored(
                event_id,
                by=user_id,
                source=source,
                patient_id=tally.patient_id,
                study_uid=study_uid,
                counts=tally.counts(),
                **details,
            )
            for study_uid, tally in self.studies.items()
        ]
