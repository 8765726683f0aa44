"""The checks of what recovery rests on: the audit chain, its checkpoints and a recent backup."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from pacs.core.audit import EventID, Outcome
from pacs.core.context import CA_CERT, Context
from pacs.core.events import BACKUP_WHAT
from pacs.ops.selfcheck.report import Finding, Note, Result
from storage.models import Instance

BACKUP_MAX_AGE = timedelta(days=7)


def check_audit_chain(pacs: Context, now: datetime) -> Iterator[Result]:
    """The audit trail's hash chain is unbroken."""
    report = pacs.audit.verify()
    for problem in report.problems:
        yield Finding(
            "audit-chain",
            f"audit trail: {problem}",
            "find out who changed the index database, then acknowledge: pacs audit verify --reanchor",
        )


def check_audit_checkpoints(pacs: Context, now: datetime) -> Iterator[Result]:
    """Signed checkpoints of the audit trail go to a log the service account cannot rewrite."""
    audit = pacs.settings.audit
    if not audit.checkpoint_minutes:
        yield Finding(
            "audit-checkpoints",
            "audit checkpoints are off: someone with the service account could roll the trail back unseen",
            "set [audit] checkpoint_minutes (default 60) in pacs.toml",
        )
        return
    if audit.syslog_socket and not Path(audit.syslog_socket).is_socket():
        yield Note(
            "audit-checkpoints",
            f"the syslog socket {audit.syslog_socket} is missing: pacs serve writes its audit checkpoints "
            "to standard error only (the journal under systemd, the container log under Docker)",
        )
    ca = Path(audit.remote_syslog_ca or pacs.settings.tls_dir / CA_CERT)
    if audit.remote_syslog and not os.access(ca, os.R_OK):
        yield Finding(
            "audit-checkpoints",
            f"the CA file {ca} for the remote syslog server {audit.remote_syslog} cannot be read",
            "set [audit] remote_syslog_ca to the PEM file of the CA that issued the server's certificate",
        )


def last_backup(pacs: Context) -> datetime | None:
    """When the last successful ``pacs backup`` finished, from the audit trail.

    Backups are Export events among the downloads and exports, so the search pages
    back through every Export until it finds one.
    """
    page, offset = 1000, 0
    while records := pacs.audit.search(event_id=str(EventID.EXPORT), limit=page, offset=offset):
        for record in records:
            details = json.loads(record.details)
            if record.outcome == int(Outcome.SUCCESS) and details.get("what") == BACKUP_WHAT:
                return datetime.fromisoformat(record.recorded_at)
        offset += page
    return None


def check_backup(pacs: Context, now: datetime) -> Iterator[Result]:
    """A successful backup in the last 7 days (once the archive holds anything)."""
    with pacs.database.read() as session:
        stored = session.scalar(select(func.count()).select_from(Instance)) or 0
    when = last_backup(pacs)
    if when is None and stored == 0:
        yield Note("backup", "no backup yet (the archive is empty)")
    elif when is None:
        yield Finding(
            "backup",
            f"the archive holds {stored} objects and has never been backed up",
            "run 'pacs backup FILE' now and daily (e.g. a systemd timer), and keep copies off the appliance",
        )
    elif now - when > BACKUP_MAX_AGE:
        yield Finding(
            "backup",
            f"the last successful backup is from {when:%Y-%m-%d}, {(now - when).days} days ago",
            "run 'pacs backup FILE' now and daily, and keep copies off the appliance",
        )
