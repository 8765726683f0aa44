"""The audit trail's vocabulary: DICOM PS3.15 A.5 / IHE ATNA codes and the event record itself.

Event IDs and event types are DCM codes (PS3.16 CID 400 and 401). :class:`AuditEvent` is
what a caller appends to :class:`pacs.core.audit.AuditLog`; :mod:`pacs.core.events` builds
every kind the archive records, so call sites name the event instead of assembling it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class EventID(enum.StrEnum):
    """DICOM audit message event IDs (DCM codes, PS3.16 CID 400)."""

    APPLICATION_ACTIVITY = "110100"
    AUDIT_LOG_USED = "110101"
    INSTANCES_ACCESSED = "110103"
    INSTANCES_TRANSFERRED = "110104"
    STUDY_DELETED = "110105"
    EXPORT = "110106"
    IMPORT = "110107"
    QUERY = "110112"
    SECURITY_ALERT = "110113"
    USER_AUTHENTICATION = "110114"


class EventType(enum.StrEnum):
    """DICOM audit event type codes (DCM codes, PS3.16 CID 401)."""

    NONE = ""
    APPLICATION_START = "110120"
    APPLICATION_STOP = "110121"
    LOGIN = "110122"
    LOGOUT = "110123"
    NODE_AUTHENTICATION = "110126"
    NETWORK_CONFIGURATION = "110128"
    SECURITY_CONFIGURATION = "110129"
    SOFTWARE_CONFIGURATION = "110131"
    USE_OF_RESTRICTED_FUNCTION = "110132"
    OBJECT_SECURITY_ATTRIBUTES_CHANGED = "110134"
    USER_SECURITY_ATTRIBUTES_CHANGED = "110136"


EVENT_NAMES: dict[str, str] = {
    "110100": "Application Activity",
    "110101": "Audit Log Used",
    "110103": "DICOM Instances Accessed",
    "110104": "DICOM Instances Transferred",
    "110105": "DICOM Study Deleted",
    "110106": "Export",
    "110107": "Import",
    "110112": "Query",
    "110113": "Security Alert",
    "110114": "User Authentication",
    "110120": "Application Start",
    "110121": "Application Stop",
    "110122": "Login",
    "110123": "Logout",
    "110126": "Node Authentication",
    "110128": "Network Configuration",
    "110129": "Security Configuration",
    "110131": "Software Configuration",
    "110132": "Use of Restricted Function",
    "110134": "Object Security Attributes Changed",
    "110136": "User Security Attributes Changed",
}


class Action(enum.StrEnum):
    """Event action codes: create, read, update, delete, execute."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(enum.IntEnum):
    """Event outcome indicators."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


@dataclass(frozen=True)
class AuditEvent:
    """Something that happened: who did what, from where, to which patient and study."""

    event_id: EventID
    action: Action
    outcome: Outcome = Outcome.SUCCESS
    user_id: str = ""
    source: str = ""
    event_type: EventType = EventType.NONE
    patient_id: str = ""
    study_uid: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
