"""End to end: refusals and a lockout in the audit trail reach a real SMTP server (aiosmtpd, STARTTLS).

The watch turns the records into alerts, the sender of :mod:`pacs.ops.alerts` mails them; the
mail server is the one the delivery tests use (:mod:`tests.ops.alert_peers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pacs.core import access_events, events
from pacs.core.config import with_overrides
from pacs.core.context import Context, initialise, open_pacs
from pacs.ops.alert_watch import AlertWatch
from pacs.ops.alerts import AlertQueue, AlertSender
from tests.ops.alert_peers import SMTP_PASSWORD, SMTP_USER, peer_pki, smtp_server

HOST = "pacs.clinic.example"


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Context]:
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname=HOST, db_url="", user="t")
    pacs = open_pacs(settings)
    yield pacs
    pacs.close()


def test_refusals_and_a_lockout_arrive_as_two_mails(archive: Context, tmp_path: Path) -> None:
    watch = AlertWatch(archive, AlertQueue(archive.database), window_minutes=15)
    watch.scan()
    for n in range(20):
        archive.audit.append(
            access_events.connection_failed("10.9.8.7", "association rejected", {"n": n}, by="INTRUDER")
        )
    archive.audit.append(
        events.account_locked("drlee", source="10.9.8.7", failures=5, lifts_after_minutes=15)
    )
    assert watch.scan(datetime.now(UTC) + timedelta(minutes=15)) == 2
    peer = peer_pki(tmp_path / "smtp-pki")
    password = tmp_path / "smtp.password"
    password.write_text(SMTP_PASSWORD + "\n")
    password.chmod(0o600)
    with smtp_server(peer, implicit=False) as (port, mailbox):
        settings = with_overrides(
            archive.settings,
            "alerts",
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_user=SMTP_USER,
            smtp_password_file=str(password),
            smtp_ca_file=str(peer.ca),
            mail_from="pacs@clinic.example",
            mail_to=("admin@clinic.example",),
        )
        sender = AlertSender(AlertQueue(archive.database), settings.alerts, archive.audit, hostname=HOST)
        assert sender.run_once().sent["mail"] == 2
        messages = mailbox.wait_for(2)
    assert sorted(" ".join(str(m["Subject"]).split()) for m in messages) == [
        f"[PACS {HOST}] lockout: account drlee locked",
        f"[PACS {HOST}] security-alert: 20 refused requests from 10.9.8.7",
    ]
    assert mailbox.tls == [True, True]
