"""The alerts of conditions: certificate expiry, free disk, failed forwards and selfcheck findings.

Each condition is alerted once when it arises (and, where it can end, once when it ends), by
what :class:`~pacs.ops.alert_state.AlertState` remembers: a certificate at 30, 7 and 1 days and
once expired (one mark per fingerprint and threshold), the disk crossing the ``[storage]
min_free_mb`` watermark and coming back over it, a forwarding job reaching ``failed`` (once per
failure: retried and failed again is a new one), and each selfcheck finding when it appears and
when it clears. A finding is known by its check and its message with the digits taken out, so
"expires in 6 days" tomorrow is still the same finding. Alerts name no patient.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select

from pacs.core import pki
from pacs.core.config import Settings
from pacs.core.context import CA_CERT, SERVER_CERT, Context
from pacs.core.nodes import NodeRegistry
from pacs.ops.alert_state import AlertState
from pacs.ops.alerts import Alert, AlertQueue
from pacs.ops.forward_queue import FAILED
from pacs.ops.selfcheck import Finding
from pacs.ops.status import disk_status
from storage.db import Database
from storage.models import ForwardJob

THRESHOLDS = (1, 7, 30)
EXPIRED = 0
FINDINGS_MARK = "selfcheck.findings"
DISK_MARK = "disk.watermark"
FAILED_JOBS_SHOWN = 500
_DIGITS = re.compile(r"\d+")


def certificates(pacs: Context) -> Iterator[tuple[str, x509.Certificate]]:
    """The archive's certificates by label: the CA, the server's and each enrolled node's."""
    tls_dir = pacs.settings.tls_dir
    for label, name in (("CA certificate", CA_CERT), ("server certificate", SERVER_CERT)):
        try:
            yield label, pki.load_certificate(tls_dir / name)
        except pki.PKIError:
            continue  # selfcheck's certificates check reports an unreadable file
    for node in NodeRegistry(pacs.database).all():
        if node.cert_pem:
            yield (
                f"certificate of node {node.ae_title}",
                x509.load_pem_x509_certificate(node.cert_pem.encode()),
            )


def threshold(days: float) -> int | None:
    """The alert threshold a certificate with `days` left has reached: 30, 7, 1, 0 (expired) or None."""
    if days < 0:
        return EXPIRED
    return next((limit for limit in THRESHOLDS if days <= limit), None)


def _certificate_alert(label: str, cert: x509.Certificate, limit: int, fingerprint: str) -> Alert:
    until = f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    fix = (
        "run 'pacs cert renew' and restart pacs serve"
        if label == "server certificate"
        else "see the fix that 'pacs selfcheck' gives for it"
    )
    if limit == EXPIRED:
        subject, what = f"the {label} has expired", f"expired on {until}: TLS connections that use it fail"
    else:
        subject, what = f"the {label} expires within {limit} days", f"expires on {until}"
    return Alert(
        "certificate",
        subject,
        f"The {label} ({cert.subject.rfc4514_string()}, SHA-256 {fingerprint}) {what}. To fix: {fix}.",
        key=f"{fingerprint}:{limit}",
    )


def certificate_alerts(pacs: Context, queue: AlertQueue, state: AlertState, now: datetime) -> int:
    """Alert each certificate at each threshold it reached, once; return how many alerts were queued."""
    queued = 0
    for label, cert in certificates(pacs):
        limit = threshold(pki.days_until_expiry(cert, now))
        if limit is None:
            continue
        fingerprint = cert.fingerprint(hashes.SHA256()).hex()
        mark = f"certificate.{fingerprint}.{limit}"
        if state.get(mark):
            continue
        queue.put(_certificate_alert(label, cert, limit, fingerprint))
        state.put(mark, label)
        queued += 1
    return queued


def disk_alert(settings: Settings, queue: AlertQueue, state: AlertState) -> bool:
    """Alert the disk going below the watermark, and coming back above it; True if an alert was queued."""
    disk = disk_status(settings)
    if not disk.watermark_mb:
        return False
    side, _, episode = state.get(DISK_MARK, "above:0").partition(":")
    low = disk.free_mb < disk.watermark_mb
    if low == (side == "below"):
        return False
    number = int(episode) + 1 if low else int(episode)
    where = f"{disk.free_mb} MiB free under {settings.blob_dir}, watermark {disk.watermark_mb} MiB"
    if low:
        alert = Alert(
            "disk",
            "disk below the watermark: new objects are refused",
            f"{where}. Modalities' stores are refused (0xA700) until disk space is freed "
            "or the archive moves to a larger disk.",
            key=f"below:{number}",
        )
    else:
        alert = Alert(
            "disk",
            "disk back above the watermark",
            f"{where}. Stores are accepted again.",
            key=f"above:{number}",
        )
    queue.put(alert)
    state.put(DISK_MARK, f"{'below' if low else 'above'}:{number}")
    return True


def forward_alerts(database: Database, queue: AlertQueue, state: AlertState) -> int:
    """Alert each forwarding job that failed (not cancelled) since it was last alerted; return how many."""
    with database.read() as session:
        jobs = list(
            session.scalars(
                select(ForwardJob)
                .where(ForwardJob.state == FAILED)
                .order_by(ForwardJob.id.desc())
                .limit(FAILED_JOBS_SHOWN)
            )
        )
    queued = 0
    for job in jobs:
        stamp = job.finished_at.isoformat() if job.finished_at else str(job.attempts)
        mark = f"forward.{job.id}"
        if job.last_error.startswith("cancelled by") or state.get(mark) == stamp:
            continue
        queue.put(
            Alert(
                "forward",
                f"forwarding job {job.id} to {job.destination} failed",
                f"Forwarding job {job.id} (requested by {job.requested_by}) to {job.destination} failed "
                f"after {job.attempts} attempts: {job.sent} objects sent, {job.failed} not; "
                f"{job.last_error or 'no error given'}. Retry it with: pacs study forward retry {job.id}",
                key=f"{job.id}:{stamp}",
            )
        )
        state.put(mark, stamp)
        queued += 1
    return queued


def finding_id(finding: Finding) -> str:
    """What a finding is known by from run to run: its check and its message without digits."""
    text = f"{finding.check}|{_DIGITS.sub('#', finding.message)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _kind(check: str) -> str:
    return "audit-chain" if check == "audit-chain" else "selfcheck"


def selfcheck_alerts(findings: list[Finding], queue: AlertQueue, state: AlertState) -> int:
    """Alert each finding that appeared since the last run and each one that cleared; return how many."""
    before: dict[str, dict[str, str]] = state.get_json(FINDINGS_MARK, {})
    now = {finding_id(f): {"check": f.check, "message": f.message, "fix": f.fix} for f in findings}
    queued = 0
    for ident, found in now.items():
        if ident not in before:
            subject = f"selfcheck: {found['message']}"[:200]
            text = f"pacs selfcheck [{found['check']}] found: {found['message']}\nTo fix: {found['fix']}"
            queue.put(Alert(_kind(found["check"]), subject, text, key=f"{ident}:found"))
            queued += 1
    for ident, found in before.items():
        if ident not in now:
            subject = f"selfcheck cleared: {found['message']}"[:200]
            text = f"pacs selfcheck [{found['check']}] no longer finds: {found['message']}"
            queue.put(Alert(_kind(found["check"]), subject, text, key=f"{ident}:cleared"))
            queued += 1
    state.put_json(FINDINGS_MARK, now)
    return queued
