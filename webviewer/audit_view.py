"""The audit log page's reading of the trail: filters from the query string, and each record in words.

An office manager reads "User Authentication: Login", "Execute" and "Minor failure" where the
trail holds 110114 / 110122, E and 4 (the DCM codes of :mod:`pacs.core.audit_vocabulary`), and
one line that sums up the details (what happened first, then the other fields) where the trail
holds JSON; the JSON itself is kept for a toggle on the page. Filters are checked here, so a bad
date is named to the admin instead of matching nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pacs.core.audit_vocabulary import EVENT_NAMES, EventID, EventType
from storage.models import AuditRecord

ACTIONS = {"C": "Create", "R": "Read", "U": "Update", "D": "Delete", "E": "Execute"}
OUTCOMES = {0: "Success", 4: "Minor failure", 8: "Serious failure", 12: "Major failure"}
SUMMARY_CHARS = 200
_EVENT_IDS = frozenset(str(code) for code in EventID)
_EVENT_TYPES = frozenset(str(code) for code in EventType if code)
# The events the filter offers: every event ID, then every event type, by name.
EVENT_CHOICES: list[tuple[str, str]] = sorted(
    ((code, EVENT_NAMES.get(code, code)) for code in _EVENT_IDS), key=lambda choice: choice[1]
) + sorted(((code, EVENT_NAMES.get(code, code)) for code in _EVENT_TYPES), key=lambda choice: choice[1])
# Query argument -> (form label, longest value kept).
_TEXT_FILTERS = {"user": ("User", 128), "patient": ("Patient ID", 64), "study": ("Study UID", 64)}


@dataclass
class AuditFilters:
    """What the admin asked for: the form's values as typed, and the problems found in them."""

    event: str = ""
    user: str = ""
    patient: str = ""
    study: str = ""
    since: str = ""
    until: str = ""
    failures_only: bool = False
    problems: list[str] = field(default_factory=list)

    def search_arguments(self) -> dict[str, str]:
        """The arguments of :meth:`pacs.core.audit.AuditLog.search` that are set (also what is audited)."""
        arguments = {
            "event_id": self.event if self.event in _EVENT_IDS else "",
            "event_type": self.event if self.event in _EVENT_TYPES else "",
            "user_id": self.user,
            "patient_id": self.patient,
            "study_uid": self.study,
            "since": self.since,
            "until": self.until,
        }
        return {name: value for name, value in arguments.items() if value}


def _date(args: Mapping[str, str], name: str, label: str, problems: list[str]) -> str:
    """The ISO date of argument `name`, or "" (with a problem naming field `label` if it is not one)."""
    value = args.get(name, "").strip()[:32]
    if not value:
        return ""
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        problems.append(f"{label}: {value!r} is not a date (YYYY-MM-DD); that filter was left out.")
        return ""


def read_filters(args: Mapping[str, str]) -> AuditFilters:
    """The filters of the query string `args` (``event_id`` is the older name of ``event``)."""
    problems: list[str] = []
    event = (args.get("event") or args.get("event_id") or "").strip()[:16]
    if event and event not in _EVENT_IDS | _EVENT_TYPES:
        problems.append(f"Event: {event!r} is not an event this archive records; that filter was left out.")
        event = ""
    texts = {name: args.get(name, "").strip()[:limit] for name, (_, limit) in _TEXT_FILTERS.items()}
    since = _date(args, "since", "From", problems)
    until = _date(args, "until", "To", problems)
    if since and until and until < since:
        problems.append(f"To ({until}) is before From ({since}): nothing can match.")
    return AuditFilters(
        event=event,
        since=since,
        until=until,
        failures_only=args.get("failures") == "1",
        problems=problems,
        **texts,
    )


@dataclass(frozen=True)
class AuditRow:
    """One record as the page shows it."""

    seq: int
    when: str
    event: str
    codes: str
    action: str
    outcome: str
    failed: bool
    user: str
    source: str
    patient: str
    study: str
    summary: str
    details: str


def event_name(event_id: str, event_type: str) -> str:
    """The event in words: its ID's name, then its type's ("User Authentication: Login")."""
    name = EVENT_NAMES.get(event_id, event_id)
    return f"{name}: {EVENT_NAMES.get(event_type, event_type)}" if event_type else name


def _value(value: Any) -> str:
    """A details value in one line: lists joined, mappings as ``key=value``."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    return str(value)


def summarise(details: Mapping[str, Any]) -> str:
    """The details in one line: "what" first, then each other field as "name: value"."""
    parts = [_value(details["what"])] if details.get("what") not in (None, "") else []
    parts += [f"{name.replace('_', ' ')}: {_value(v)}" for name, v in details.items() if name != "what"]
    line = "; ".join(part for part in parts if part)
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


def _details(text: str) -> tuple[str, str]:
    """The summary and the pretty JSON of a record's stored details."""
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        return text[:SUMMARY_CHARS], text
    if not isinstance(parsed, Mapping):
        return _value(parsed)[:SUMMARY_CHARS], text
    return summarise(parsed), json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False)


def audit_row(record: AuditRecord) -> AuditRow:
    """`record` in words."""
    summary, details = _details(record.details)
    codes = record.event_id + (f" / {record.event_type}" if record.event_type else "")
    return AuditRow(
        seq=record.seq,
        when=record.recorded_at[:19].replace("T", " "),
        event=event_name(record.event_id, record.event_type),
        codes=codes,
        action=ACTIONS.get(record.action, record.action),
        outcome=OUTCOMES.get(record.outcome, str(record.outcome)),
        failed=record.outcome != 0,
        user=record.user_id,
        source=record.source,
        patient=record.patient_id,
        study=record.study_uid,
        summary=summary,
        details=details,
    )
