"""Alerts and the audit trail (PS3.15 A.5 XML) to a real rsyslogd with rsyslog-gnutls on 127.0.0.1 over TLS.

rsyslogd runs in the foreground with its own configuration (imtcp, gtls driver, mode 1, AuthMode
x509/name naming our archive, or anon), writing what it receives to a file of the test. Each
test runs on the embedded index and on PostgreSQL (the queue's claim and the audit cursor).
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pacs.core.config import Settings, render_config, with_overrides
from pacs.core.context import CA_CERT, Context, initialise, open_pacs
from pacs.ops.alerts import PENDING, SENT, Alert, AlertQueue, alert_sender
from tests.ops.alert_peers import PeerPki, Rsyslog, peer_pki, start_rsyslog

LATER = timedelta(hours=2)
HOSTNAME = "pacs.clinic.example"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """A new archive named pacs.clinic.example, on each index backend."""
    return initialise(tmp_path / "data", ae_title="PACS", hostname=HOSTNAME, db_url=db_url, user="t")


@pytest.fixture
def peer(tmp_path: Path) -> PeerPki:
    return peer_pki(tmp_path / "syslog-pki")


@pytest.fixture
def rsyslog(tmp_path: Path, peer: PeerPki, settings: Settings) -> Iterator[Rsyslog]:
    """rsyslogd requiring a client certificate that our archive's CA issued to its host name."""
    server = start_rsyslog(
        tmp_path / "rsyslog", peer, peer_name=HOSTNAME, client_ca=settings.tls_dir / CA_CERT
    )
    yield server
    server.stop()


def to_syslog(settings: Settings, port: int, ca: Path) -> Settings:
    return with_overrides(
        settings, "alerts", syslog_host="127.0.0.1", syslog_port=port, syslog_ca_file=str(ca)
    )


def opened(settings: Settings) -> Context:
    return open_pacs(settings)


def alert_texts(server: Rsyslog) -> list[str]:
    return [line.partition("\ufeff")[2] for line in server.lines() if line.startswith("PACS-ALERT ")]


def audit_seqs(server: Rsyslog) -> list[int]:
    """The audit record numbers in the DICOM audit messages received (ParticipantObjectID audit-record-N)."""
    seqs = []
    for line in server.lines():
        if line.startswith("DICOM+RFC3881 "):
            message = ET.fromstring(line.partition("\ufeff")[2])
            ids = [
                element.get("ParticipantObjectID", "")
                for element in message.iter("ParticipantObjectIdentification")
            ]
            seqs += [int(value.rpartition("-")[2]) for value in ids if value.startswith("audit-record-")]
    return seqs


def test_alerts_and_the_audit_trail_reach_rsyslog_over_tls_as_rfc5424_and_dicom_audit_messages(
    settings: Settings, peer: PeerPki, rsyslog: Rsyslog
) -> None:
    pacs = opened(to_syslog(settings, rsyslog.port, peer.ca))
    try:
        AlertQueue(pacs.database).put(
            Alert("lockout", "account dr.lee locked", "5 failed logins from 10.0.0.7")
        )
        outcome = alert_sender(pacs).run_once()
        trail = [record.seq for record in pacs.audit.records()]
        [alert] = AlertQueue(pacs.database).alerts()
    finally:
        pacs.close()
    assert outcome.ok and outcome.sent["syslog"] == 1 and outcome.audit_records == len(trail) > 0
    assert alert.syslog_state == SENT
    rsyslog.wait_for(1 + len(trail))
    assert alert_texts(rsyslog) == ["lockout: account dr.lee locked -- 5 failed logins from 10.0.0.7"]
    first = next(line for line in rsyslog.lines() if line.startswith("DICOM+RFC3881 "))
    assert first.split(" ")[1:3] == [HOSTNAME, "85"]  # facility 10, severity 5, as PS3.15 A.6 asks
    message = ET.fromstring(first.partition("\ufeff")[2])
    assert message.tag == "AuditMessage" and message.find("EventIdentification/EventID") is not None
    assert message.find("AuditSourceIdentification").get("AuditSourceID") == HOSTNAME
    assert next(line for line in rsyslog.lines() if line.startswith("PACS-ALERT ")).split(" ")[2] == "84"
    assert sorted(audit_seqs(rsyslog)) == trail


def test_a_restart_of_the_sender_in_the_middle_loses_no_alert_and_sends_none_twice(
    settings: Settings, peer: PeerPki, rsyslog: Rsyslog
) -> None:
    configured = to_syslog(settings, rsyslog.port, peer.ca)
    first = opened(configured)
    try:
        queue = AlertQueue(first.database)
        for n in range(3):
            queue.put(Alert("forward", f"forwarding job {n} failed", "TELERAD did not answer"))
        assert alert_sender(first).run_once().sent["syslog"] == 3
        for n in range(3, 6):
            queue.put(Alert("forward", f"forwarding job {n} failed", "TELERAD did not answer"))
    finally:
        first.close()
    # A new process over the same data directory: the sender of the next start.
    (configured.data_dir / "pacs.toml").write_text(render_config(configured))
    restarted = subprocess.run(
        [sys.executable, "-m", "pacs", "alerts", "send", "--data", str(configured.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restarted.returncode == 0, restarted.stderr
    assert "syslog: 3 alerts sent, 0 failed" in restarted.stdout
    rsyslog.wait_for(6, "PACS-ALERT")
    again = opened(configured)
    try:
        assert alert_sender(again).run_once(datetime.now(UTC) + LATER).sent["syslog"] == 0
        trail = [record.seq for record in again.audit.records()]
    finally:
        again.close()
    assert sorted(alert_texts(rsyslog)) == sorted(
        f"forward: forwarding job {n} failed -- TELERAD did not answer" for n in range(6)
    )
    rsyslog.wait_for(len(trail), "DICOM+RFC3881")
    assert sorted(audit_seqs(rsyslog)) == trail  # each record once, across the restart


def test_alerts_and_audit_records_wait_while_rsyslog_is_down_and_go_when_it_is_back(
    settings: Settings, peer: PeerPki, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    rsyslog.stop()
    configured = to_syslog(settings, rsyslog.port, peer.ca)
    pacs = opened(configured)
    try:
        queue = AlertQueue(pacs.database)
        queue.put(Alert("disk", "disk below the watermark", "812 MiB free"))
        down = alert_sender(pacs).run_once()
        [alert] = queue.pending()
        assert "ConnectionRefusedError" in down.errors["syslog"] and alert.syslog_state == PENDING
        assert "syslog: ConnectionRefusedError" in alert.last_error and queue.cursor() == 0
        back = start_rsyslog(
            tmp_path / "rsyslog-again", peer, port=rsyslog.port, peer_name=HOSTNAME,
            client_ca=settings.tls_dir / CA_CERT,
        )  # fmt: skip
        try:
            outcome = alert_sender(pacs).run_once(datetime.now(UTC) + LATER)
            trail = [record.seq for record in pacs.audit.records()]
            back.wait_for(1 + len(trail))
        finally:
            back.stop()
        assert outcome.sent["syslog"] == 1 and queue.pending() == [] and queue.cursor() == trail[-1]
    finally:
        pacs.close()
    assert alert_texts(back) == ["disk: disk below the watermark -- 812 MiB free"]
    assert sorted(audit_seqs(back)) == trail


def test_a_syslog_server_whose_certificate_another_ca_issued_is_refused_and_the_alert_stays_pending(
    settings: Settings, rsyslog: Rsyslog, tmp_path: Path
) -> None:
    stranger = peer_pki(tmp_path / "stranger")
    pacs = opened(to_syslog(settings, rsyslog.port, stranger.ca))
    try:
        queue = AlertQueue(pacs.database)
        queue.put(Alert("audit-chain", "audit chain broken", "record 12"))
        outcome = alert_sender(pacs).run_once()
        [alert] = queue.pending()
    finally:
        pacs.close()
    assert "certificate verify failed" in outcome.errors["syslog"]
    assert alert.syslog_state == PENDING and "CERTIFICATE_VERIFY_FAILED" in alert.last_error
    assert rsyslog.lines() == []


def test_a_syslog_server_refusing_our_certificate_does_not_count_as_delivered(
    settings: Settings, peer: PeerPki, tmp_path: Path
) -> None:
    picky = start_rsyslog(
        tmp_path / "picky", peer, peer_name="someone-else.example", client_ca=settings.tls_dir / CA_CERT
    )
    try:
        pacs = opened(to_syslog(settings, picky.port, peer.ca))
        try:
            queue = AlertQueue(pacs.database)
            queue.put(Alert("certificate", "certificate expires in 1 day", "renew it"))
            outcome = alert_sender(pacs).run_once()
            [alert] = queue.pending()
            assert queue.cursor() == 0
        finally:
            pacs.close()
    finally:
        picky.stop()
    assert "syslog" in outcome.errors and alert.syslog_state == PENDING
    assert picky.lines() == []
