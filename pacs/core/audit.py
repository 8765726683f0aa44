"""The audit trail: append-only, hash-chained records in the index database.

Each record holds the HMAC-SHA256 (keyed with the audit key from the key directory) of
its own fields and of the previous record's hash, so editing, inserting or deleting a
row breaks the chain, and someone with database access but not the key cannot rebuild
it. Records also get a gap-free sequence number, and after every append the newest
(seq, hash) pair is written, MACed, to an anchor file beside the database: cutting rows
off the end of the table is then detected too. Against someone who can also put an older
anchor back, :mod:`pacs.core.checkpoints` writes signed checkpoints to logs the service
account cannot rewrite; :mod:`pacs.core.atna` writes the trail as DICOM audit messages.

Event codes follow DICOM PS3.15 A.5 / IHE ATNA (the DCM coding scheme), in
:mod:`pacs.core.audit_vocabulary`; every kind of event is built by :mod:`pacs.core.events`
or :mod:`pacs.core.access_events`.

A failed write is one policy, fail closed: :meth:`AuditLog.append` raises
:class:`AuditUnavailableError` (and logs it), and an action that must be audited does not
go on, or is not acknowledged. The web answers 503 with a message and grants nothing (no
login, no page or download of patient data, no one-time password, no password or second
factor change acknowledged, no admin change acknowledged); a DICOM request that reads or
writes patient data (C-STORE, C-FIND, C-MOVE, C-GET) is answered 0xA700 Out of Resources with
a comment; the command line exits with the error. Records of what is already done, or of what
protects, go through :meth:`AuditLog.append_after`, which logs a failure (LOG.error) and lets
the work go on: what an association transferred (written when it closes), an association
accepted (each request on it is audited on its own), refusals and rejections of DICOM peers,
lockouts, associations ended by an enrolment change, logging out, and the service's stop.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import func, select, text

from pacs.core import events
from pacs.core.audit_vocabulary import EVENT_NAMES as EVENT_NAMES
from pacs.core.audit_vocabulary import Action as Action
from pacs.core.audit_vocabulary import AuditEvent as AuditEvent
from pacs.core.audit_vocabulary import EventID as EventID
from pacs.core.audit_vocabulary import EventType as EventType
from pacs.core.audit_vocabulary import Outcome as Outcome
from storage import durable
from storage.db import Database
from storage.errors import PacsError
from storage.models import AuditRecord, Study

LOG = logging.getLogger(__name__)
GENESIS = "0" * 64


class AuditUnavailableError(PacsError):
    """An audit record could not be written, so the action it records does not go on."""


@dataclass
class ChainReport:
    """The result of :meth:`AuditLog.verify`.

    `problems` make the chain fail. `acknowledged` are problems at exactly the records an
    admin acknowledged when re-anchoring the chain (see :meth:`AuditLog.reanchor`): still
    shown, no longer failing. `problem_seqs` are the records the problems concern.
    """

    records: int = 0
    problems: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    problem_seqs: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The chain is intact (apart from acknowledged problems)."""
        return not self.problems


@dataclass(frozen=True)
class _Anchor:
    seq: int
    hash: str


_INVALID = _Anchor(-1, "")


def _canonical(record: AuditRecord) -> bytes:
    fields_ = [
        record.seq,
        record.recorded_at,
        record.event_id,
        record.event_type,
        record.action,
        record.outcome,
        record.user_id,
        record.source,
        record.patient_id,
        record.study_uid,
        record.details,
        record.prev_hash,
    ]
    return json.dumps(fields_, ensure_ascii=False, separators=(",", ":")).encode()


def as_dict(record: AuditRecord) -> dict[str, Any]:
    """A record as plain data, with the names of its codes (for export)."""
    return {
        "seq": record.seq,
        "recorded_at": record.recorded_at,
        "event_id": record.event_id,
        "event": EVENT_NAMES.get(record.event_id, ""),
        "event_type": record.event_type,
        "event_type_name": EVENT_NAMES.get(record.event_type, ""),
        "action": record.action,
        "outcome": record.outcome,
        "user_id": record.user_id,
        "source": record.source,
        "patient_id": record.patient_id,
        "study_uid": record.study_uid,
        "details": json.loads(record.details),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


class AuditLog:
    """Appends to and checks the audit chain of one archive."""

    def __init__(self, database: Database, key: bytes, anchor: Path) -> None:
        self._database = database
        self._key = key
        self._anchor = anchor

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._key, data, sha256).hexdigest()

    def append(self, event: AuditEvent) -> AuditRecord:
        """Add `event` at the end of the chain and return the stored record.

        The sequence continues after the anchor if rows were cut off the end, so the
        gap stays visible. A damaged or missing anchor is left as it is (and keeps
        failing :meth:`verify`) until an admin calls :meth:`reanchor`; so is a missing
        one of an emptied trail whose archive holds studies. Raises
        :class:`AuditUnavailableError` when the record cannot be written (see the policy above).
        """
        try:
            record, anchor, empty = self._append(event)
            # An empty trail without an anchor is a new archive's, unless it already holds studies.
            fresh = anchor is None and empty and not self._studies()
            if fresh or (anchor is not None and anchor is not _INVALID):
                self._write_anchor(record.seq, record.hash)
        except Exception as exc:
            reason = (str(exc).splitlines() or [""])[0][:200]
            LOG.error("audit record %s of %r not written: %s", event.event_id, event.user_id, reason)
            raise AuditUnavailableError(f"the audit trail cannot be written ({reason})") from exc
        return record

    def append_after(self, event: AuditEvent) -> bool:
        """Append the record of something already done or protective; False (logged) if it cannot be written.

        For the records the policy above lets go on without: the caller has nothing left to hold back.
        """
        try:
            self.append(event)
        except Exception:
            LOG.exception("audit record %s of %r lost", event.event_id, event.user_id)
            return False
        return True

    def reanchor(self, user_id: str, report: ChainReport) -> AuditRecord:
        """Acknowledge the problems of `report` in a Security Alert record and anchor the chain at it.

        Only the records named in `report` are acknowledged; tampering found later, at
        any other record, still fails :meth:`verify`.
        """
        event = events.audit_reanchored(
            by=user_id, acknowledged=report.problems, records=sorted(set(report.problem_seqs))
        )
        record, _, _ = self._append(event)
        self._write_anchor(record.seq, record.hash, force=True)
        return record

    def anchor_newest(self) -> None:
        """Anchor the chain at its newest record, as after restoring a backup's records."""
        with self._database.read() as session:
            last = session.execute(
                select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).one_or_none()
        if last is not None:
            self._write_anchor(last.seq, last.hash, force=True)

    def _append(self, event: AuditEvent) -> tuple[AuditRecord, _Anchor | None, bool]:
        with self._database.write() as session:
            if not self._database.is_sqlite:
                session.execute(text("SELECT pg_advisory_xact_lock(7220142)"))
            last = session.execute(
                select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).one_or_none()
            anchor = self._read_anchor()
            seq = max(last.seq if last else 0, anchor.seq if anchor else 0) + 1
            record = AuditRecord(
                seq=seq,
                recorded_at=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                event_id=str(event.event_id),
                event_type=str(event.event_type),
                action=str(event.action),
                outcome=int(event.outcome),
                user_id=event.user_id[:128],
                source=event.source[:128],
                patient_id=event.patient_id[:64],
                study_uid=event.study_uid[:64],
                details=json.dumps(dict(event.details), sort_keys=True, ensure_ascii=False, default=str),
                prev_hash=last.hash if last else GENESIS,
            )
            record.hash = self._mac(_canonical(record))
            session.add(record)
        return record, anchor, last is None

    def _anchor_mac(self, seq: int, hash_: str) -> str:
        return self._mac(f"anchor|{seq}|{hash_}".encode())

    def _read_anchor(self) -> _Anchor | None:
        try:
            data = json.loads(self._anchor.read_text())
            anchor = _Anchor(int(data["seq"]), str(data["hash"]))
            mac = str(data["mac"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return _INVALID
        if anchor.seq < 1 or not hmac.compare_digest(mac, self._anchor_mac(anchor.seq, anchor.hash)):
            return _INVALID
        return anchor

    def _write_anchor(self, seq: int, hash_: str, *, force: bool = False) -> None:
        """Move the anchor forward to (seq, hash); it never moves back unless forced."""
        lock = os.open(self._anchor.with_name(self._anchor.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self._read_anchor()
            if not force and current is not None and current.seq >= seq:
                return
            body = json.dumps({"seq": seq, "hash": hash_, "mac": self._anchor_mac(seq, hash_)})
            durable.replace(self._anchor, body.encode(), 0o600)
        finally:
            os.close(lock)

    def newest(self) -> tuple[int, str] | None:
        """The (seq, hash) of the newest record, or None for an empty trail."""
        with self._database.read() as session:
            last = session.execute(
                select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).one_or_none()
        return None if last is None else (last.seq, last.hash)

    def hashes_at(self, seqs: Iterable[int]) -> dict[int, str]:
        """The hash of each record numbered in `seqs` that the trail holds."""
        wanted = sorted(set(seqs))
        found: dict[int, str] = {}
        with self._database.read() as session:
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                rows = session.execute(
                    select(AuditRecord.seq, AuditRecord.hash).where(AuditRecord.seq.in_(batch))
                )
                found.update((row.seq, row.hash) for row in rows)
        return found

    def records(self) -> Iterator[AuditRecord]:
        """Every record, oldest first."""
        with self._database.read() as session:
            yield from session.scalars(select(AuditRecord).order_by(AuditRecord.seq)).yield_per(1000)

    def search(
        self,
        *,
        event_id: str = "",
        event_type: str = "",
        user_id: str = "",
        patient_id: str = "",
        study_uid: str = "",
        since: str = "",
        until: str = "",
        failures_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Records matching the filters, newest first (`since`/`until`: ISO dates, inclusive)."""
        query = select(AuditRecord)
        if event_id:
            query = query.where(AuditRecord.event_id == event_id)
        for column, wanted in (
            (AuditRecord.event_type, event_type),
            (AuditRecord.user_id, user_id),
            (AuditRecord.patient_id, patient_id),
            (AuditRecord.study_uid, study_uid),
        ):
            if wanted:
                query = query.where(column == wanted)
        if since:
            query = query.where(AuditRecord.recorded_at >= since)
        if until:
            query = query.where(AuditRecord.recorded_at < until + "T99")
        if failures_only:
            query = query.where(AuditRecord.outcome != int(Outcome.SUCCESS))
        query = query.order_by(AuditRecord.seq.desc()).limit(limit).offset(offset)
        with self._database.read() as session:
            return list(session.scalars(query))

    def verify(self) -> ChainReport:
        """Check sequence, links and MACs of the whole chain, and the anchor."""
        report = ChainReport()
        anchor = self._read_anchor()
        found: list[tuple[int, str]] = []
        acknowledged: set[int] = set()
        expected_seq, prev_hash = 1, GENESIS
        for record in self.records():
            report.records += 1
            if record.seq != expected_seq:
                found.append((record.seq, f"record {expected_seq} is missing (next is {record.seq})"))
            if record.prev_hash != prev_hash:
                found.append((record.seq, f"record {record.seq} does not link to the record before it"))
            if not hmac.compare_digest(record.hash, self._mac(_canonical(record))):
                found.append((record.seq, f"record {record.seq} was altered (its MAC does not match)"))
            elif record.event_id == EventID.SECURITY_ALERT:
                details = json.loads(record.details)
                if details.get("what") == events.REANCHOR_WHAT:
                    acknowledged.update(seq for seq in details.get("records", []) if seq <= record.seq)
            if anchor is not None and record.seq == anchor.seq and record.hash != anchor.hash:
                found.append((record.seq, f"record {record.seq} does not match the anchor"))
            expected_seq, prev_hash = record.seq + 1, record.hash
        for seq, problem in found:
            if seq in acknowledged:
                report.acknowledged.append(problem)
            else:
                report.problems.append(problem)
                report.problem_seqs.append(seq)
        last_seq = expected_seq - 1
        if anchor is None:
            if report.records:
                report.problems.append(f"anchor file {self._anchor} is missing")
            elif studies := self._studies():
                report.problems.append(
                    f"the audit trail is empty although the archive holds {studies} studies: "
                    "its records were deleted"
                )
                report.problem_seqs.append(1)
        elif anchor is _INVALID:
            report.problems.append(f"anchor file {self._anchor} is damaged or forged")
        elif anchor.seq > last_seq:
            report.problems.append(
                f"records {last_seq + 1}..{anchor.seq} were removed from the end of the log"
            )
            # The next record is numbered after the anchor; the gap will be reported there.
            report.problem_seqs.append(anchor.seq + 1)
        return report

    def _studies(self) -> int:
        with self._database.read() as session:
            return session.scalar(select(func.count()).select_from(Study)) or 0

    def export_jsonl(self, out: TextIO) -> int:
        """Write every record as one JSON object per line; return how many."""
        count = 0
        for record in self.records():
            out.write(json.dumps(as_dict(record), ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
        return count
