"""The alerts read from the audit trail: Security Alerts per source and window, lockouts, checkpoints.

Security Alert records (110113) of refusals (rejected associations, failed handshakes, refused
tokens and requests, restricted functions: every such record whose outcome is a failure) become
one alert per source address and window of ``[alerts] window_minutes``, with the count and the
kinds. Windows are fixed slices of the clock (aligned to the Unix epoch), so every record of a
closed window has been written when it is alerted, and the cursor (the last record read, in
:class:`~pacs.ops.alert_state.AlertState`) stops at a window boundary: a restart neither loses
nor repeats one. A lockout is alerted at once, through a cursor of its own. A checkpoint alert
carries a signed checkpoint line (:mod:`pacs.core.checkpoints`) off the appliance.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from pacs.core import events
from pacs.core.audit import AuditLog, EventID, Outcome
from pacs.core.audit_vocabulary import EVENT_NAMES
from pacs.core.checkpoints import Signer
from pacs.ops.alert_state import AlertState
from pacs.ops.alerts import Alert, AlertQueue
from storage.db import Database
from storage.keys import KeyRing
from storage.models import AuditRecord

SECURITY_CURSOR = "audit.security-alerts"
LOCKOUT_CURSOR = "audit.lockouts"
CHECKPOINT_MARK = "audit.checkpoint"
LOCKED_WHAT = events.account_locked("", source="", failures=0, lifts_after_minutes=0).details["what"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHOWN_KINDS = 8


def iso(moment: datetime) -> str:
    """`moment` as the audit trail writes times (UTC, microseconds, ``Z``)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def window_start(moment: datetime, minutes: int) -> datetime:
    """The start of the `minutes`-long window (aligned to the epoch) that holds `moment`."""
    width = timedelta(minutes=max(1, minutes))
    return _EPOCH + ((moment - _EPOCH) // width) * width


def _newest_seq(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(AuditRecord.seq).order_by(AuditRecord.seq.desc()).limit(1)) or 0


def _cursor(database: Database, state: AlertState, name: str) -> int:
    """Where `name` stands in the trail; a new cursor starts at the newest record (no old alerts)."""
    value = state.get(name)
    if value:
        return int(value)
    newest = _newest_seq(database)
    state.put(name, str(newest))
    return newest


def _failures_after(database: Database, seq: int, before: str = "") -> list[AuditRecord]:
    """The Security Alert records after `seq` whose outcome is a failure (written before `before`)."""
    query = select(AuditRecord).where(
        AuditRecord.seq > seq,
        AuditRecord.event_id == str(EventID.SECURITY_ALERT),
        AuditRecord.outcome != int(Outcome.SUCCESS),
    )
    if before:
        query = query.where(AuditRecord.recorded_at < before)
    with database.read() as session:
        return list(session.scalars(query.order_by(AuditRecord.seq)))


def _what(record: AuditRecord) -> str:
    details = json.loads(record.details)
    return str(details.get("what") or EVENT_NAMES.get(record.event_type, record.event_type))


@dataclass
class _Window:
    """The refusals from one source in one window."""

    source: str
    start: datetime
    kinds: Counter[str] = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)

    def alert(self, minutes: int) -> Alert:
        count = sum(self.kinds.values())
        end = self.start + timedelta(minutes=minutes)
        source = self.source or "an unknown address"
        kinds = "; ".join(f"{n} x {what}" for what, n in self.kinds.most_common(_SHOWN_KINDS))
        more = len(self.kinds) - _SHOWN_KINDS
        users = ", ".join(sorted(self.users)[:10])
        text = (
            f"{count} Security Alert records (DICOM 110113) from {source} between "
            f"{self.start:%Y-%m-%d %H:%M} and {end:%H:%M} UTC: {kinds}"
            + (f"; {more} other kinds" if more > 0 else "")
            + (f". Names used: {users}." if users else ".")
            + " The audit trail holds each record (pacs audit export)."
        )
        return Alert(
            "security-alert",
            f"{count} refused requests from {source}",
            text,
            key=f"{self.source}|{iso(self.start)}",
        )


def scan_security_alerts(
    database: Database, queue: AlertQueue, state: AlertState, *, window_minutes: int, now: datetime
) -> int:
    """Alert every closed window's refusals, one alert per source; return how many alerts were queued."""
    cursor = _cursor(database, state, SECURITY_CURSOR)
    open_from = window_start(now, window_minutes)
    records = _failures_after(database, cursor, before=iso(open_from))
    windows: dict[tuple[str, datetime], _Window] = {}
    for record in records:
        if _what(record) == LOCKED_WHAT:
            continue
        start = window_start(datetime.fromisoformat(record.recorded_at), window_minutes)
        window = windows.setdefault((record.source, start), _Window(record.source, start))
        window.kinds[_what(record)] += 1
        if record.user_id:
            window.users.add(record.user_id)
    for window in windows.values():
        queue.put(window.alert(window_minutes))
    if records:
        state.put(SECURITY_CURSOR, str(records[-1].seq))
    return len(windows)


def scan_lockouts(database: Database, queue: AlertQueue, state: AlertState) -> int:
    """Alert each account locked since the last scan; return how many."""
    cursor = _cursor(database, state, LOCKOUT_CURSOR)
    records = _failures_after(database, cursor)
    locked = [record for record in records if _what(record) == LOCKED_WHAT]
    for record in locked:
        details = json.loads(record.details)
        queue.put(
            Alert(
                "lockout",
                f"account {record.user_id} locked",
                f"The account {record.user_id} was locked at {record.recorded_at} after "
                f"{details.get('failures', '?')} failed logins, the last from {record.source or 'unknown'}. "
                f"It is lifted {details.get('lifts', 'later')}. If that was not its owner, someone is "
                "guessing passwords: see the audit log (event Security Alert) for the addresses.",
                key=str(record.seq),
            )
        )
    if records:
        state.put(LOCKOUT_CURSOR, str(records[-1].seq))
    return len(locked)


def checkpoint_alert(audit: AuditLog, keyring: KeyRing, queue: AlertQueue, state: AlertState) -> bool:
    """Send a signed checkpoint of the trail, unless the trail is where the last one saw it."""
    newest = audit.newest()
    if newest is None or state.get(CHECKPOINT_MARK) == str(newest[0]):
        return False
    line = Signer(keyring).line(*newest)
    queue.put(
        Alert(
            "checkpoint",
            f"audit checkpoint at record {newest[0]}",
            f"{line}\nKeep this message. 'pacs audit verify --checkpoint FILE' compares the audit trail "
            "with the checkpoints in FILE (a saved copy of such messages): a trail shorter than a "
            "checkpoint, or with another hash at its record, was rolled back or rewritten.",
            key=str(newest[0]),
        )
    )
    state.put(CHECKPOINT_MARK, str(newest[0]))
    return True


def chain_alert(problems: list[str], *, found_by: str) -> Alert:
    """The alert of an audit trail `found_by` (e.g. ``pacs audit verify``) found broken or rolled back."""
    listed = "\n".join(f"- {problem}" for problem in problems)
    return Alert(
        "audit-chain",
        f"the audit trail is broken: {problems[0]}",
        f"{found_by} found:\n{listed}\nFind out who changed the index database or put an older copy "
        "back; then acknowledge with: pacs audit verify --reanchor",
        key=hashlib.sha256("\n".join(problems).encode()).hexdigest()[:32],
    )
