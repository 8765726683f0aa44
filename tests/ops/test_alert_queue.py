"""The alert queue on both index backends: durable at once, deduplicated, claimed with back-off, audited.

Also the ``[alerts]`` settings: every mistake is one line naming the key.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pacs.core.audit_vocabulary import EventID
from pacs.core.config import ConfigError, parse_settings, with_overrides
from pacs.core.context import Context, open_pacs
from pacs.ops.alerts import FAILED, NO_CHANNEL, PENDING, Alert, AlertQueue, AlertSender, RetryPolicy
from storage.errors import PacsError
from tests.ops.alert_peers import free_port

NOW_RETRY = RetryPolicy(base=timedelta(0), max_attempts=2)


def test_a_put_alert_is_pending_at_once_for_another_process_opening_the_archive(pacs: Context) -> None:
    AlertQueue(pacs.database).put(Alert("disk", "disk below the watermark", "812 MiB free", key="blobs"))
    other = open_pacs(pacs.settings)
    try:
        [alert] = AlertQueue(other.database).pending()
    finally:
        other.close()
    assert (alert.kind, alert.subject, alert.text, alert.key) == (
        "disk",
        "disk below the watermark",
        "812 MiB free",
        "blobs",
    )
    assert (alert.mail_state, alert.syslog_state, alert.attempts) == (PENDING, PENDING, 0)


def test_an_alert_of_the_same_kind_and_key_still_queued_is_not_queued_twice(pacs: Context) -> None:
    queue = AlertQueue(pacs.database)
    for _ in range(2):
        queue.put(Alert("certificate", "server certificate expires in 7 days", "renew it", key="server-7"))
        queue.put(Alert("lockout", "account locked", "after 5 failed logins"))  # no key: every one counts
    queue.put(Alert("disk", "server certificate expires in 7 days", "same key, other kind", key="server-7"))
    assert sorted(alert.kind for alert in queue.pending()) == ["certificate", "disk", "lockout", "lockout"]


def test_an_alert_delivered_everywhere_may_be_queued_again_with_its_key(pacs: Context) -> None:
    queue = AlertQueue(pacs.database)
    queue.put(Alert("selfcheck", "finding appeared", "port open to all", key="web-open"))
    AlertSender(queue, pacs.settings.alerts, pacs.audit).run_once()
    queue.put(Alert("selfcheck", "finding appeared", "port open to all", key="web-open"))
    assert [alert.key for alert in queue.pending()] == ["web-open"]


def test_without_channels_the_sender_marks_every_alert_no_channel(pacs: Context) -> None:
    queue = AlertQueue(pacs.database)
    queue.put(Alert("forward", "forwarding failed", "job 3 to TELERAD"))
    outcome = AlertSender(queue, pacs.settings.alerts, pacs.audit).run_once()
    [alert] = queue.alerts()
    assert (alert.mail_state, alert.syslog_state) == (NO_CHANNEL, NO_CHANNEL)
    assert queue.pending() == [] and outcome.ok


def test_a_claimed_alert_is_not_due_again_until_its_back_off_has_passed(pacs: Context) -> None:
    queue = AlertQueue(pacs.database)
    queue.put(Alert("disk", "disk low", "text"))
    retry = RetryPolicy(base=timedelta(minutes=1))
    now = datetime.now(UTC) + timedelta(seconds=1)
    [claimed] = queue.claim(retry, now)
    assert claimed.attempts == 1
    assert queue.claim(retry, now + timedelta(seconds=59)) == []
    [again] = queue.claim(retry, now + timedelta(seconds=61))
    assert again.attempts == 2 and again.next_attempt_at == now + timedelta(seconds=61) + timedelta(minutes=2)


def test_after_the_last_attempt_a_channel_is_failed_and_the_failure_audited(pacs: Context) -> None:
    settings = with_overrides(
        pacs.settings,
        "alerts",
        smtp_host="127.0.0.1",
        smtp_port=free_port(),  # nothing listens: refused
        mail_from="pacs@clinic.example",
        mail_to=("admin@clinic.example",),
    )
    queue = AlertQueue(pacs.database)
    queue.put(Alert("audit-chain", "audit chain broken", "record 12"))
    sender = AlertSender(queue, settings.alerts, pacs.audit, retry=NOW_RETRY)
    first = sender.run_once()
    [alert] = queue.pending()
    assert alert.mail_state == PENDING and "ConnectionRefusedError" in alert.last_error
    assert "mail" in first.errors and first.failed["mail"] == 0
    second = sender.run_once(datetime.now(UTC) + timedelta(seconds=1))
    [alert] = queue.alerts()
    assert (alert.mail_state, alert.syslog_state, second.failed["mail"]) == (FAILED, NO_CHANNEL, 1)
    [record] = pacs.audit.search(event_id=str(EventID.SECURITY_ALERT), failures_only=True)
    details = json.loads(record.details)
    assert details["what"] == "alert not delivered by mail"
    assert (details["alert"], details["kind"], details["attempts"]) == (alert.id, "audit-chain", 2)
    assert "ConnectionRefusedError" in details["error"]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('smtp_security = "plain"', "[alerts] smtp_security = 'plain': must be starttls or tls"),
        ('smtp_host = "mail.clinic.example"', "[alerts] smtp_host is set: mail_from and mail_to must be set"),
        ('smtp_password = "hunter2"', "unknown setting [alerts] smtp_password"),
        (
            'smtp_password_file = "smtp.pw"',
            "[alerts] smtp_password_file = 'smtp.pw': must be empty or an absolute",
        ),
        ('smtp_user = "pacs"', "[alerts] smtp_user is set: smtp_password_file must name the password file"),
        ('mail_to = ["admin"]', "'admin' is not an e-mail address"),
        ("syslog_port = 70000", "[alerts] syslog_port = 70000: must be a port number"),
        ('syslog_cert_file = "/etc/pacs/c.pem"', "syslog_cert_file and syslog_key_file go together"),
        ("window_minutes = 0", "[alerts] window_minutes = 0: must be greater than zero"),
    ],
)
def test_an_invalid_alerts_setting_is_a_one_line_error_naming_it(
    tmp_path: Path, toml: str, expected: str
) -> None:
    with pytest.raises(PacsError) as caught:
        parse_settings(f"[alerts]\n{toml}\n", tmp_path, {}, origin="pacs.toml")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_alerts_settings_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    toml = '[alerts]\nsmtp_host = "mail.clinic.example"\nsmtp_security = "tls"\n'
    toml += 'mail_from = "pacs@clinic.example"\n'
    settings = parse_settings(
        toml, tmp_path, {"PACS_ALERTS_MAIL_TO": "a@clinic.example, b@clinic.example"}, origin="f"
    )
    alerts = settings.alerts
    assert (alerts.smtp_host, alerts.mail_port, alerts.mail_to) == (
        "mail.clinic.example",
        465,
        ("a@clinic.example", "b@clinic.example"),
    )
    assert replace(alerts, smtp_security="starttls").mail_port == 587
    with pytest.raises(ConfigError, match="PACS_ALERTS_SYSLOG_PORT"):
        parse_settings("", tmp_path, {"PACS_ALERTS_SYSLOG_PORT": "many"}, origin="f")
