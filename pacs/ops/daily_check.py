"""The daily check: ``pacs selfcheck`` once a day, its findings, the certificates and a checkpoint alerted.

Two things run it, and the time of the last run (a mark in the index) keeps them from doubling:
the systemd timer ``pacs-selfcheck.timer`` that install.sh installs (``pacs daily-check
--skip-if-ran-within 12``, once a day), and a thread of ``pacs serve`` (:mod:`pacs.ops.alert_watch`),
which runs it at start and then whenever the last run, from either, is :data:`DAILY` old. Under
systemd the timer comes first and the thread is the fallback; in a container the thread does it.

It also writes one line to standard error (the journal, the container log) when the server's own
certificate has expired, is not valid yet or expires within 30 days: modalities and browsers then
fail their TLS handshakes, and the log says why.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes

from pacs.core import events, pki
from pacs.core.config import Settings
from pacs.core.context import SERVER_CERT, Context
from pacs.ops import selfcheck
from pacs.ops.alert_conditions import certificate_alerts, selfcheck_alerts
from pacs.ops.alert_sources import checkpoint_alert
from pacs.ops.alert_state import AlertState
from pacs.ops.alerts import AlertQueue
from pacs.ops.status import CERT_WARNING_DAYS, CertificateState, certificate_status

LAST_RUN = "daily.last-run"
DAILY = timedelta(hours=24)


def last_run(state: AlertState) -> datetime | None:
    """When the daily check last ran, from any process."""
    value = state.get(LAST_RUN)
    return datetime.fromisoformat(value) if value else None


def due(state: AlertState, now: datetime, within: timedelta = DAILY) -> bool:
    """Whether the daily check did not run in the `within` before `now`."""
    last = last_run(state)
    return last is None or now - last >= within


def server_certificate_problem(settings: Settings, now: datetime) -> str:
    """One line on the server certificate if it has expired, is not valid yet or expires soon; else ""."""
    try:
        cert = pki.load_certificate(settings.tls_dir / SERVER_CERT)
    except pki.PKIError as exc:
        return f"the server certificate cannot be read: {exc}"
    status = certificate_status(cert, now)
    which = f"the server certificate (SHA-256 {cert.fingerprint(hashes.SHA256()).hex()[:16]}...)"
    renew = "run 'pacs cert renew' and restart pacs serve"
    if status.state is CertificateState.EXPIRED:
        return (
            f"{which} EXPIRED on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: modalities and browsers "
            f"refuse every TLS connection to this archive (their handshakes fail here); {renew}"
        )
    if status.state is CertificateState.NOT_YET_VALID:
        return (
            f"{which} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: TLS peers refuse "
            "it; check this machine's clock"
        )
    if status.days < CERT_WARNING_DAYS:
        return (
            f"{which} expires in {int(status.days)} days, on {cert.not_valid_after_utc:%Y-%m-%d} "
            f"(then every TLS connection fails); before then: {renew}"
        )
    return ""


def log_server_certificate(settings: Settings, now: datetime) -> str:
    """Write :func:`server_certificate_problem`'s line to standard error, if there is one; return it."""
    problem = server_certificate_problem(settings, now)
    if problem:
        print(f"pacs: {problem}", file=sys.stderr, flush=True)
    return problem


@dataclass(frozen=True)
class DailyResult:
    """What one daily check found, and how many alerts it queued."""

    report: selfcheck.Report
    alerts: int


def run_daily_check(
    pacs: Context, queue: AlertQueue, now: datetime | None = None, *, by: str = "pacs", log: bool = True
) -> DailyResult:
    """Run the selfcheck, alert what changed and the certificates' thresholds, send a checkpoint.

    With `log`, also write the server certificate's line (the watch of ``pacs serve`` writes its own).
    """
    now = now or datetime.now(UTC)
    state = AlertState(pacs.database)
    report = selfcheck.run(pacs, now)
    pacs.audit.append_after(events.selfcheck_run(by=by, findings=[f.message for f in report.findings]))
    alerts = selfcheck_alerts(report.findings, queue, state)
    alerts += certificate_alerts(pacs, queue, state, now)
    alerts += int(checkpoint_alert(pacs.audit, pacs.keyring, queue, state))
    if log:
        log_server_certificate(pacs.settings, now)
    state.put(LAST_RUN, now.isoformat())
    return DailyResult(report, alerts)
