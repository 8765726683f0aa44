"""Alert e-mail to aiosmtpd on 127.0.0.1: STARTTLS or implicit TLS, AUTH, verified certificates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from pacs.core.config import Settings, with_overrides
from pacs.core.context import Context, initialise, open_pacs
from pacs.ops.alerts import PENDING, SENT, Alert, AlertQueue, AlertSender, RetryPolicy
from tests.ops.alert_peers import SMTP_PASSWORD, SMTP_USER, Mailbox, PeerPki, free_port, peer_pki, smtp_server

LATER = timedelta(hours=2)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Context]:
    settings = initialise(
        tmp_path / "data", ae_title="PACS", hostname="pacs.clinic.example", db_url="", user="t"
    )
    pacs = open_pacs(settings)
    yield pacs
    pacs.close()


@pytest.fixture
def peer(tmp_path: Path) -> PeerPki:
    return peer_pki(tmp_path / "smtp-pki")


def password_file(
    directory: Path, password: str = SMTP_PASSWORD, mode: int = 0o600, name: str = "smtp"
) -> Path:
    path = directory / f"{name}.password"
    path.write_text(password + "\n")
    path.chmod(mode)
    return path


def mail_settings(
    pacs: Context, peer: PeerPki, port: int, *, implicit: bool, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "tls" if implicit else "starttls",
        "smtp_user": SMTP_USER,
        "smtp_password_file": str(password_file(pacs.settings.data_dir)),
        "smtp_ca_file": str(peer.ca),
        "mail_from": "pacs@clinic.example",
        "mail_to": ("admin@clinic.example", "it@clinic.example"),
    }
    return with_overrides(pacs.settings, "alerts", **(values | overrides))


def sender(pacs: Context, settings: Settings) -> AlertSender:
    retry = RetryPolicy(base=timedelta(minutes=1))
    return AlertSender(
        AlertQueue(pacs.database), settings.alerts, pacs.audit, hostname="pacs.clinic.example", retry=retry
    )


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_alerts_reach_an_smtp_server_over_tls_with_a_login(
    archive: Context, peer: PeerPki, implicit: bool
) -> None:
    queue = AlertQueue(archive.database)
    queue.put(Alert("lockout", "account dr.lee locked", "5 failed logins from 10.0.0.7 in 15 minutes"))
    queue.put(Alert("disk", "disk below the watermark", "812 MiB free on the blob disk"))
    with smtp_server(peer, implicit=implicit) as (port, mailbox):
        outcome = sender(archive, mail_settings(archive, peer, port, implicit=implicit)).run_once()
        messages = mailbox.wait_for(2)
    assert outcome.ok and outcome.sent["mail"] == 2
    assert [message["Subject"] for message in messages] == [
        "[PACS pacs.clinic.example] lockout: account dr.lee locked",
        "[PACS pacs.clinic.example] disk: disk below the watermark",
    ]
    assert messages[0]["To"] == "admin@clinic.example, it@clinic.example"
    assert messages[0]["From"] == "pacs@clinic.example"
    assert "5 failed logins from 10.0.0.7" in messages[0].get_payload()
    assert mailbox.tls == [True, True] and mailbox.logins == [SMTP_USER, SMTP_USER]
    assert [alert.mail_state for alert in queue.alerts()] == [SENT, SENT]


def test_an_smtp_server_whose_certificate_another_ca_issued_is_refused_and_the_alert_stays(
    archive: Context, peer: PeerPki, tmp_path: Path
) -> None:
    stranger = peer_pki(tmp_path / "stranger")
    queue = AlertQueue(archive.database)
    queue.put(Alert("certificate", "server certificate expired", "renew it"))
    with smtp_server(stranger, implicit=False) as (port, mailbox):
        outcome = sender(archive, mail_settings(archive, peer, port, implicit=False)).run_once()
    [alert] = queue.pending()
    assert alert.mail_state == PENDING and "CERTIFICATE_VERIFY_FAILED" in alert.last_error
    assert "certificate verify failed" in outcome.errors["mail"] and mailbox.messages == []


def test_an_smtp_server_whose_certificate_names_another_host_is_refused(
    archive: Context, tmp_path: Path
) -> None:
    elsewhere = peer_pki(tmp_path / "elsewhere", name="mail.elsewhere.example")
    AlertQueue(archive.database).put(Alert("disk", "disk low", "text"))
    with smtp_server(elsewhere, implicit=True) as (port, mailbox):
        outcome = sender(archive, mail_settings(archive, elsewhere, port, implicit=True)).run_once()
    assert "IP address mismatch" in outcome.errors["mail"] and mailbox.messages == []


def test_a_wrong_password_is_refused_by_the_server_and_the_alert_stays_pending(
    archive: Context, peer: PeerPki
) -> None:
    queue = AlertQueue(archive.database)
    for n in range(3):
        queue.put(Alert("disk", f"disk low {n}", "text"))
    wrong = password_file(archive.settings.data_dir, "not-the-password", name="wrong")
    with smtp_server(peer, implicit=False) as (port, mailbox):
        settings = mail_settings(archive, peer, port, implicit=False, smtp_password_file=str(wrong))
        outcome = sender(archive, settings).run_once()
    assert "535" in outcome.errors["mail"] and mailbox.messages == []
    assert [alert.mail_state for alert in queue.pending()] == [PENDING] * 3
    # One login per run (smtplib tries PLAIN, then LOGIN), not one per alert: no lockout at the server.
    assert mailbox.auth_attempts == 2
    assert all("535" in alert.last_error for alert in queue.pending())


def test_a_message_the_server_refuses_alone_does_not_hold_back_the_others(
    archive: Context, peer: PeerPki
) -> None:
    queue = AlertQueue(archive.database)
    queue.put(Alert("forward", "refuse me", "the test's server refuses this subject"))
    queue.put(Alert("forward", "forwarding job 4 failed", "TELERAD did not answer"))
    with smtp_server(peer, implicit=False) as (port, mailbox):
        outcome = sender(archive, mail_settings(archive, peer, port, implicit=False)).run_once()
        [message] = mailbox.wait_for(1)
    [refused] = queue.pending()
    assert message["Subject"].endswith("forwarding job 4 failed") and outcome.sent["mail"] == 1
    assert refused.subject == "refuse me" and "550 5.7.1 refused by the test's server" in refused.last_error


def test_a_password_file_others_may_read_is_refused_before_connecting(
    archive: Context, peer: PeerPki
) -> None:
    AlertQueue(archive.database).put(Alert("disk", "disk low", "text"))
    loose = password_file(archive.settings.data_dir, mode=0o644, name="loose")
    with smtp_server(peer, implicit=False) as (port, mailbox):
        settings = mail_settings(archive, peer, port, implicit=False, smtp_password_file=str(loose))
        outcome = sender(archive, settings).run_once()
    assert "may be read by others (mode 644): chmod 600" in outcome.errors["mail"]
    assert mailbox.messages == [] and mailbox.logins == []


def test_a_server_that_offers_no_starttls_gets_nothing_in_clear(archive: Context, peer: PeerPki) -> None:
    AlertQueue(archive.database).put(Alert("disk", "disk low", "text"))
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        outcome = sender(archive, mail_settings(archive, peer, port, implicit=False)).run_once()
    finally:
        controller.stop()
    assert "does not offer STARTTLS; not sending in clear" in outcome.errors["mail"]
    assert mailbox.messages == []


def test_alerts_queued_while_the_mail_server_is_down_go_once_it_is_back(
    archive: Context, peer: PeerPki
) -> None:
    queue = AlertQueue(archive.database)
    port = free_port()
    settings = mail_settings(archive, peer, port, implicit=True)
    for n in range(3):
        queue.put(Alert("forward", f"forwarding job {n} failed", "TELERAD did not answer"))
    down = sender(archive, settings).run_once()
    assert "mail" in down.errors and len(queue.pending()) == 3
    assert {alert.attempts for alert in queue.pending()} == {1}
    with smtp_server(peer, implicit=True) as (running, mailbox):
        assert sender(archive, settings).run_once().sent["mail"] == 0  # not due yet: back-off
        back = sender(archive, with_overrides(settings, "alerts", smtp_port=running))
        outcome = back.run_once(datetime.now(UTC) + LATER)
        messages = mailbox.wait_for(3)
    assert outcome.sent["mail"] == 3 and queue.pending() == []
    assert sorted(message["Subject"].rpartition(": ")[2] for message in messages) == [
        f"forwarding job {n} failed" for n in range(3)
    ]


def test_a_new_sender_over_the_same_archive_sends_what_is_left_and_nothing_twice(
    archive: Context, peer: PeerPki
) -> None:
    queue = AlertQueue(archive.database)
    with smtp_server(peer, implicit=True) as (port, mailbox):
        settings = mail_settings(archive, peer, port, implicit=True)
        for n in range(2):
            queue.put(Alert("lockout", f"account user{n} locked", "5 failed logins"))
        assert sender(archive, settings).run_once().sent["mail"] == 2
        for n in range(2, 4):
            queue.put(Alert("lockout", f"account user{n} locked", "5 failed logins"))
        reopened = open_pacs(settings)  # the next start: a new connection, queue and sender
        try:
            assert sender(reopened, settings).run_once(datetime.now(UTC) + LATER).sent["mail"] == 2
        finally:
            reopened.close()
        messages = mailbox.wait_for(4)
    assert sorted(message["Subject"].rpartition(": ")[2] for message in messages) == [
        f"account user{n} locked" for n in range(4)
    ]
