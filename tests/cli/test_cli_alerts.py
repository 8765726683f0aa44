"""``pacs alerts test|send|list``: one alert of each kind through aiosmtpd and rsyslogd now; the queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pacs.core.config import render_config, with_overrides
from pacs.core.context import CA_CERT, initialise, open_pacs
from pacs.ops.alerts import KINDS, Alert, AlertQueue
from tests.cli.cli_helpers import _one_line_error, _run, _settings
from tests.ops.alert_peers import SMTP_PASSWORD, SMTP_USER, free_port, peer_pki, smtp_server, start_rsyslog

HOSTNAME = "pacs.clinic.example"


def configure(data: Path, **alerts: Any) -> None:
    """Write `alerts` into the archive's pacs.toml as its ``[alerts]`` keys."""
    (data / "pacs.toml").write_text(render_config(with_overrides(_settings(data), "alerts", **alerts)))


def mail_keys(data: Path, port: int, ca: Path) -> dict[str, Any]:
    password = data / "smtp.password"
    password.write_text(SMTP_PASSWORD)
    password.chmod(0o600)
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_user": SMTP_USER,
        "smtp_password_file": str(password),
        "smtp_ca_file": str(ca),
        "mail_from": "pacs@clinic.example",
        "mail_to": ("admin@clinic.example",),
    }


def test_alerts_test_sends_one_alert_of_each_kind_through_every_channel_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = initialise(tmp_path / "data", ae_title="PACS", hostname=HOSTNAME, db_url="", user="t").data_dir
    peer = peer_pki(tmp_path / "pki")
    rsyslog = start_rsyslog(tmp_path / "rsyslog", peer, peer_name=HOSTNAME, client_ca=data / "tls" / CA_CERT)
    try:
        with smtp_server(peer, implicit=False) as (port, mailbox):
            keys = mail_keys(data, port, peer.ca)
            configure(
                data, **keys, syslog_host="127.0.0.1", syslog_port=rsyslog.port, syslog_ca_file=str(peer.ca)
            )
            code, out, err = _run(capsys, "alerts", "test", "--data", str(data))
            messages = mailbox.wait_for(len(KINDS))
        received = rsyslog.wait_for(len(KINDS), "PACS-ALERT")
    finally:
        rsyslog.stop()
    assert code == 0, err
    assert out.splitlines() == [
        f"mail: sent {len(KINDS)} alerts: mail to admin@clinic.example via 127.0.0.1:{port}",
        f"syslog: sent {len(KINDS)} alerts: syslog 127.0.0.1:{rsyslog.port}",
    ]
    assert [message["X-PACS-Alert"] for message in messages] == list(KINDS)
    assert all(b"Nothing has happened." in message.get_payload(decode=True) for message in messages)
    assert [line.partition("\ufeff")[2].partition(":")[0] for line in received] == list(KINDS)


def test_alerts_test_names_a_failed_channel_and_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = initialise(tmp_path / "data", ae_title="PACS", hostname=HOSTNAME, db_url="", user="t").data_dir
    configure(data, **(mail_keys(data, free_port(), tmp_path / "none.pem") | {"smtp_ca_file": ""}))
    code, out, _ = _run(capsys, "alerts", "test", "--data", str(data))
    mail, syslog = out.splitlines()
    assert code == 1
    assert mail.startswith("mail: failed: mail to admin@clinic.example via 127.0.0.1:")
    assert "ConnectionRefusedError" in mail
    assert syslog == "syslog: no channel ([alerts] syslog_host is empty)"


def test_alerts_list_shows_the_queue_newest_first_and_as_json(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs = open_pacs(_settings(data_dir))
    try:
        AlertQueue(pacs.database).put(Alert("disk", "disk below the watermark", "812 MiB free"))
        AlertQueue(pacs.database).put(Alert("lockout", "account dr.lee locked", "5 failed logins"))
    finally:
        pacs.close()
    code, out, err = _run(capsys, "alerts", "list", "--data", str(data_dir))
    assert code == 0, err
    first, second = out.splitlines()
    assert first.startswith("#2 ") and "lockout  account dr.lee locked  mail pending  syslog pending" in first
    assert second.startswith("#1 ") and "disk  disk below the watermark" in second
    code, out, _ = _run(capsys, "alerts", "send", "--data", str(data_dir))
    assert code == 0 and out.splitlines()[:2] == [
        "mail: 0 alerts sent, 0 failed",
        "syslog: 0 alerts sent, 0 failed",
    ]
    code, out, _ = _run(capsys, "alerts", "list", "--json", "--data", str(data_dir))
    rows = json.loads(out)
    assert [(row["kind"], row["mail_state"], row["syslog_state"]) for row in rows] == [
        ("lockout", "no channel", "no channel"),
        ("disk", "no channel", "no channel"),
    ]


def test_an_alerts_setting_in_error_stops_every_command_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = initialise(tmp_path / "data", ae_title="PACS", hostname=HOSTNAME, db_url="", user="t").data_dir
    toml = data / "pacs.toml"
    toml.write_text(toml.read_text().replace('smtp_user = ""', 'smtp_password = "hunter2"'))
    code, _, err = _run(capsys, "alerts", "list", "--data", str(data))
    assert code == 2
    assert "unknown setting [alerts] smtp_password" in _one_line_error(err)
