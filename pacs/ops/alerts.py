"""The alert queue (``alerts``) and its sender: alerts for a person, by e-mail and by syslog over TLS.

:meth:`AlertQueue.put` commits the alert before it returns, so an alert survives a crash or a
restart; an alert of the same kind and (non-empty) key that is still queued is not queued
twice. :class:`AlertSender` takes the due alerts and gives each to every channel it is still
pending on: e-mail (:mod:`pacs.ops.alert_mail`) and syslog (:mod:`pacs.ops.alert_syslog`, which
also streams the audit trail as DICOM audit messages from a cursor kept in ``alert_cursors``).
A channel that is not configured marks the alert ``no channel``. A claim counts the attempt and
moves ``next_attempt_at`` on by the back-off, so a sender that dies leaves alerts due again later;
after ``max_attempts`` a channel is ``failed`` and the failure audited.

Delivery is at least once: an alert is marked sent only after the server accepted it (SMTP's
250, or the syslog server's TLS close after reading the batch); a crash between that and the
mark, which is one short write, sends it again on the next start. It is never sent twice otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import or_, select

from pacs.core.audit import AuditLog
from pacs.core.config_alerts import AlertSettings
from pacs.core.context import SERVER_CERT, SERVER_KEY, Context
from pacs.core.security_events import alert_delivery_failed
from pacs.ops.alert_mail import MailChannel, MessageRefusedError
from pacs.ops.alert_syslog import SyslogChannel, audit_message
from storage.db import Database
from storage.models import AlertCursor, AlertRow, AuditRecord

LOG = logging.getLogger(__name__)
PENDING, SENT, FAILED, NO_CHANNEL = "pending", "sent", "failed", "no channel"
CHANNELS = ("mail", "syslog")
KINDS = (
    "security-alert",
    "lockout",
    "audit-chain",
    "checkpoint",
    "certificate",
    "disk",
    "forward",
    "selfcheck",
)
AUDIT_CURSOR = "syslog-audit"
CLAIM_LIMIT = 100
AUDIT_BATCH = 200
LIST_LIMIT = 500


@dataclass(frozen=True)
class Alert:
    """What a person is told: `kind` (one of :data:`KINDS`), a one-line `subject` and a `text` without PHI.

    `key` names the occasion (a source address, a certificate, a finding): an alert of the same
    kind and key that is still queued is not queued again. Empty: every alert is queued.
    """

    kind: str
    subject: str
    text: str
    key: str = ""


@dataclass(frozen=True)
class QueuedAlert:
    """One row of the queue, as the sender and ``pacs alerts list`` see it."""

    id: int
    created_at: datetime
    kind: str
    key: str
    subject: str
    text: str
    mail_state: str
    syslog_state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str

    def state(self, channel: str) -> str:
        """The state of this alert on `channel` (``mail`` or ``syslog``)."""
        return str(getattr(self, f"{channel}_state"))


@dataclass(frozen=True)
class RetryPolicy:
    """How an alert a channel could not take is tried again: `base` doubling to `cap`, then failed."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 30

    def delay(self, attempts: int) -> timedelta:
        """How long after attempt number `attempts` (1, 2, ...) the next one is due."""
        return min(self.base * 2 ** max(attempts - 1, 0), self.cap)


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _queued(row: AlertRow) -> QueuedAlert:
    values = {key: getattr(row, key) for key in QueuedAlert.__dataclass_fields__}
    values["created_at"], values["next_attempt_at"] = _aware(row.created_at), _aware(row.next_attempt_at)
    return QueuedAlert(**values)


_UNFINISHED = or_(AlertRow.mail_state == PENDING, AlertRow.syslog_state == PENDING)


class AlertQueue:
    """The alert queue of one archive's index, and the cursor of its audit stream."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def put(self, alert: Alert) -> None:
        """Queue `alert` for every channel (committed on return), unless the same one is still queued."""
        now = datetime.now(UTC)
        with self._database.write() as session:
            if alert.key and session.scalar(
                select(AlertRow.id)
                .where(AlertRow.kind == alert.kind[:32], AlertRow.key == alert.key[:200], _UNFINISHED)
                .limit(1)
            ):
                return
            session.add(
                AlertRow(
                    created_at=now,
                    kind=alert.kind[:32],
                    key=alert.key[:200],
                    subject=" ".join(alert.subject.split())[:200],
                    text=alert.text,
                    mail_state=PENDING,
                    syslog_state=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                )
            )

    def pending(self) -> list[QueuedAlert]:
        """The alerts some channel has still to take, oldest first."""
        with self._database.read() as session:
            rows = session.scalars(select(AlertRow).where(_UNFINISHED).order_by(AlertRow.id))
            return [_queued(row) for row in rows]

    def alerts(self, *, limit: int = LIST_LIMIT) -> list[QueuedAlert]:
        """The newest alerts in the queue, whatever their state, newest first."""
        with self._database.read() as session:
            rows = session.scalars(select(AlertRow).order_by(AlertRow.id.desc()).limit(limit))
            return [_queued(row) for row in rows]

    def claim(self, retry: RetryPolicy, now: datetime | None = None) -> list[QueuedAlert]:
        """Take the due alerts for an attempt: each attempt is counted and due again after its back-off."""
        now = now or datetime.now(UTC)
        with self._database.write() as session:
            rows = session.scalars(
                select(AlertRow)
                .where(_UNFINISHED, AlertRow.next_attempt_at <= now)
                .order_by(AlertRow.id)
                .limit(CLAIM_LIMIT)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + retry.delay(row.attempts)
            return [_queued(row) for row in rows]

    def mark(self, alert_id: int, channel: str, state: str, error: str = "") -> None:
        """Record that `channel` took alert `alert_id` (`state` sent), cannot (failed), or has none."""
        with self._database.write() as session:
            row = session.get(AlertRow, alert_id)
            if row is not None:
                setattr(row, f"{channel}_state", state)
                if error:
                    row.last_error = f"{channel}: {error}"[:2000]

    def note_error(self, alert_id: int, channel: str, error: str) -> None:
        """Keep why `channel` could not take alert `alert_id` this time (it stays pending)."""
        self.mark(alert_id, channel, PENDING, error)

    def cursor(self, name: str = AUDIT_CURSOR) -> int:
        """The last audit record ``seq`` the stream `name` delivered (0: none yet)."""
        with self._database.read() as session:
            row = session.get(AlertCursor, name)
            return row.seq if row is not None else 0

    def advance(self, seq: int, name: str = AUDIT_CURSOR) -> None:
        """Record that the stream `name` delivered every audit record up to `seq`."""
        with self._database.write() as session:
            row = session.get(AlertCursor, name)
            if row is None:
                session.add(AlertCursor(name=name, seq=seq))
            elif seq > row.seq:
                row.seq = seq

    def audit_after(self, seq: int, limit: int = AUDIT_BATCH) -> list[AuditRecord]:
        """The audit records after `seq`, oldest first, at most `limit`."""
        query = select(AuditRecord).where(AuditRecord.seq > seq).order_by(AuditRecord.seq).limit(limit)
        with self._database.read() as session:
            return list(session.scalars(query))


@dataclass
class Outcome:
    """What one run of the sender did: alerts sent and failed per channel, audit records streamed, errors."""

    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    audit_records: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every configured channel took what it was given."""
        return not self.errors


class AlertSender:
    """Gives queued alerts to the configured channels; as a thread of ``pacs serve``, every `interval` s.

    `identity` is the archive's own certificate and key, shown to the syslog server unless
    ``[alerts] syslog_cert_file`` names another; `hostname` names this archive in messages.
    """

    def __init__(
        self,
        queue: AlertQueue,
        settings: AlertSettings,
        audit: AuditLog,
        *,
        hostname: str = "localhost",
        identity: tuple[Path, Path] | None = None,
        retry: RetryPolicy | None = None,
        interval: float = 10.0,
    ) -> None:
        self.queue, self.settings, self.audit = queue, settings, audit
        self.retry = retry or RetryPolicy()
        self.hostname = hostname
        self.mail = MailChannel(settings, hostname) if settings.smtp_host else None
        self.syslog = SyslogChannel(settings, hostname, identity) if settings.syslog_host else None
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)

    def run_once(self, now: datetime | None = None) -> Outcome:
        """Send the due alerts to each channel they are pending on, and the audit records not yet streamed."""
        outcome = Outcome()
        alerts = self.queue.claim(self.retry, now)
        self._deliver_mail([a for a in alerts if a.mail_state == PENDING], outcome)
        self._deliver_syslog([a for a in alerts if a.syslog_state == PENDING], outcome)
        return outcome

    def _deliver_mail(self, alerts: Sequence[QueuedAlert], outcome: Outcome) -> None:
        if self.mail is None:
            for alert in alerts:
                self.queue.mark(alert.id, "mail", NO_CHANNEL)
            return
        down: BaseException | None = None  # the server, the login or the settings: the rest wait
        for alert in alerts:
            if down is not None:
                self._failed(alert, "mail", down, outcome)
                continue
            try:
                self.mail.send(alert)
            except MessageRefusedError as exc:
                self._failed(alert, "mail", exc, outcome)
                continue
            except (OSError, ValueError) as exc:
                down = exc
                self._failed(alert, "mail", exc, outcome)
                continue
            self.queue.mark(alert.id, "mail", SENT)
            outcome.sent["mail"] += 1

    def _deliver_syslog(self, alerts: Sequence[QueuedAlert], outcome: Outcome) -> None:
        if self.syslog is None:
            for alert in alerts:
                self.queue.mark(alert.id, "syslog", NO_CHANNEL)
            return
        records = self.queue.audit_after(self.queue.cursor())
        messages = [self.syslog.alert_message(alert) for alert in alerts]
        messages += [audit_message(record, self.hostname) for record in records]
        if not messages:
            return
        try:
            self.syslog.send(messages)
        except (OSError, ValueError) as exc:
            for alert in alerts:
                self._failed(alert, "syslog", exc, outcome)
            outcome.errors.setdefault("syslog", _reason(exc))
            return
        for alert in alerts:
            self.queue.mark(alert.id, "syslog", SENT)
        if records:
            self.queue.advance(records[-1].seq)
        outcome.sent["syslog"] += len(alerts)
        outcome.audit_records += len(records)

    def _failed(self, alert: QueuedAlert, channel: str, exc: BaseException, outcome: Outcome) -> None:
        """Keep why `channel` did not take `alert`; after the last attempt it is failed, and audited."""
        reason = _reason(exc)
        outcome.errors.setdefault(channel, reason)
        if alert.attempts < self.retry.max_attempts:
            self.queue.note_error(alert.id, channel, reason)
            return
        self.queue.mark(alert.id, channel, FAILED, reason)
        outcome.failed[channel] += 1
        self.audit.append_after(
            alert_delivery_failed(
                channel=channel, alert_id=alert.id, kind=alert.kind, attempts=alert.attempts, error=reason
            )
        )

    def trial(self, alerts: Sequence[Alert]) -> dict[str, str]:
        """Send `alerts` through every channel now, past the queue; per channel what happened, in one line."""
        results: dict[str, str] = {}
        channels = {"mail": self.mail, "syslog": self.syslog}
        for channel, sink in channels.items():
            if sink is None:
                results[channel] = (
                    f"no channel ([alerts] {'smtp' if channel == 'mail' else 'syslog'}_host is empty)"
                )
                continue
            try:
                if isinstance(sink, MailChannel):
                    for alert in alerts:
                        sink.send(alert)
                else:
                    sink.send([sink.alert_message(alert) for alert in alerts])
            except (OSError, ValueError) as exc:
                results[channel] = f"failed: {sink.name}: {_reason(exc)}"
                continue
            results[channel] = f"sent {len(alerts)} alerts: {sink.name}"
        return results

    def start(self) -> None:
        """Send in the background: at once, then every `interval` seconds (longer while a channel fails)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the background sending (a send in flight finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            backlog = False
            try:
                outcome = self.run_once()
                failures = 0 if outcome.ok else failures + 1
                backlog = outcome.ok and outcome.audit_records == AUDIT_BATCH
            except Exception:
                LOG.exception("the alert sender failed; trying again later")
                failures += 1
            pause = min(self._interval * 2 ** min(failures, 6), self.retry.cap.total_seconds())
            self._stop.wait(0 if backlog else pause)


def _reason(exc: BaseException) -> str:
    """`exc` in one line: its class and message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def alert_sender(pacs: Context, retry: RetryPolicy | None = None) -> AlertSender:
    """The sender of `pacs`: its queue, ``[alerts]``, audit trail, host name and own certificate."""
    settings = pacs.settings
    identity = (settings.tls_dir / SERVER_CERT, settings.key_dir / SERVER_KEY)
    queue = AlertQueue(pacs.database)
    hostname = settings.server.hostname
    return AlertSender(queue, settings.alerts, pacs.audit, hostname=hostname, identity=identity, retry=retry)


def trial_alerts(by: str) -> list[Alert]:
    """One alert of each kind, saying that it is a test sent by `by` and that nothing happened."""
    text = f"A test of the archive's alerts, sent by {by} with 'pacs alerts test'. Nothing has happened."
    return [Alert(kind, f"test alert ({kind})", text) for kind in KINDS]
