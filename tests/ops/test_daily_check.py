"""The daily check: selfcheck findings alerted when they appear and clear, a broken chain, checkpoints.

Real archives (SQLite and PostgreSQL), the real selfcheck and the real alert queue; the server
certificate's log line is read from standard error; ``pacs daily-check`` runs as the timer runs it.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from pacs.cli.main import main
from pacs.core import pki
from pacs.core.checkpoints import Signer
from pacs.core.config import Settings
from pacs.core.context import CA_CERT, CA_KEY, SERVER_CERT, Context, open_pacs
from pacs.ops.alert_conditions import selfcheck_alerts
from pacs.ops.alert_state import AlertState
from pacs.ops.alert_watch import AlertWatch
from pacs.ops.alerts import AlertQueue, QueuedAlert
from pacs.ops.daily_check import run_daily_check, server_certificate_problem
from pacs.ops.selfcheck import Finding


def _alerts(pacs: Context, kind: str) -> list[QueuedAlert]:
    return [a for a in AlertQueue(pacs.database).alerts() if a.kind == kind]


def _checkpoints_off(pacs: Context) -> Context:
    audit = dataclasses.replace(pacs.settings.audit, checkpoint_minutes=0)
    return dataclasses.replace(pacs, settings=dataclasses.replace(pacs.settings, audit=audit))


OFF = (
    "selfcheck: audit checkpoints are off: someone with the service account could roll the trail back unseen"
)


def test_a_selfcheck_finding_is_alerted_when_it_appears_not_again_and_once_when_it_clears(
    pacs: Context,
) -> None:
    queue = AlertQueue(pacs.database)
    run_daily_check(pacs, queue)
    baseline = len(_alerts(pacs, "selfcheck"))
    run_daily_check(_checkpoints_off(pacs), queue)
    assert [a.subject for a in _alerts(pacs, "selfcheck")[:1]] == [OFF]
    run_daily_check(_checkpoints_off(pacs), AlertQueue(pacs.database))
    assert len(_alerts(pacs, "selfcheck")) == baseline + 1
    run_daily_check(pacs, AlertQueue(pacs.database))
    newest = _alerts(pacs, "selfcheck")
    assert len(newest) == baseline + 2
    assert newest[0].subject == OFF.replace("selfcheck: ", "selfcheck cleared: ", 1)


def test_a_finding_whose_numbers_change_is_the_same_finding(pacs: Context) -> None:
    queue, state = AlertQueue(pacs.database), AlertState(pacs.database)
    today = Finding("certificates", "the server certificate expires in 9 days, on 2026-01-09", "renew")
    tomorrow = Finding("certificates", "the server certificate expires in 8 days, on 2026-01-09", "renew")
    assert selfcheck_alerts([today], queue, state) == 1
    assert selfcheck_alerts([tomorrow], queue, state) == 0
    assert selfcheck_alerts([], queue, state) == 1


def test_a_broken_audit_chain_is_alerted(pacs: Context) -> None:
    run_daily_check(pacs, AlertQueue(pacs.database))
    assert _alerts(pacs, "audit-chain") == []
    with pacs.database.write() as session:
        session.execute(text("UPDATE audit_log SET details = '{}' WHERE seq = 1"))
    run_daily_check(pacs, AlertQueue(pacs.database))
    (alert,) = _alerts(pacs, "audit-chain")
    assert alert.subject == "selfcheck: audit trail: record 1 was altered (its MAC does not match)"
    assert "pacs audit verify --reanchor" in alert.text


def test_the_daily_check_sends_a_signed_checkpoint_of_the_trail(pacs: Context) -> None:
    run_daily_check(pacs, AlertQueue(pacs.database))
    (alert,) = _alerts(pacs, "checkpoint")
    scan = Signer(pacs.keyring).scan(alert.text.splitlines())
    newest = pacs.audit.newest()
    assert newest is not None and scan.forged == []
    assert [(c.seq, c.hash) for c in scan.checkpoints] == [newest]


def test_the_watch_runs_the_daily_check_at_start_and_then_only_after_a_day(pacs: Context) -> None:
    start = datetime.now(UTC)
    AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=15).tick(start)
    AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=15).tick(start + timedelta(hours=23))
    runs = [r for r in pacs.audit.search(limit=1000) if '"what": "selfcheck"' in r.details]
    assert len(runs) == 1
    AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=15).tick(start + timedelta(hours=24))
    runs = [r for r in pacs.audit.search(limit=1000) if '"what": "selfcheck"' in r.details]
    assert len(runs) == 2


def _replace_server_cert(settings: Settings, days: int) -> None:
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    pki.write_certificate(
        settings.tls_dir / SERVER_CERT, pki.issue_server_cert(ca, "localhost", valid_days=days).cert
    )


def test_an_expired_server_certificate_is_named_in_one_line(settings: Settings) -> None:
    later = datetime.now(UTC) + timedelta(days=800)
    problem = server_certificate_problem(settings, later)
    assert "EXPIRED on" in problem and "modalities and browsers refuse every TLS connection" in problem
    assert "pacs cert renew" in problem and "\n" not in problem
    assert server_certificate_problem(settings, datetime.now(UTC)) == ""


def test_a_server_certificate_expiring_within_30_days_is_logged_and_alerted(
    pacs: Context, capsys: pytest.CaptureFixture[str]
) -> None:
    _replace_server_cert(pacs.settings, 3)
    run_daily_check(pacs, AlertQueue(pacs.database))
    assert "pacs: the server certificate" in capsys.readouterr().err
    subjects = [a.subject for a in _alerts(pacs, "certificate")]
    assert subjects == ["the server certificate expires within 7 days"]


def test_pacs_daily_check_skips_when_it_ran_within_the_hours_given(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(settings.data_dir)
    assert main(["daily-check", "--data", data, "--skip-if-ran-within", "12"]) == 0
    assert "alerts queued" in capsys.readouterr().out
    assert main(["daily-check", "--data", data, "--skip-if-ran-within", "12"]) == 0
    assert capsys.readouterr().out.startswith("skipped: the daily check ran at ")
    assert main(["daily-check", "--data", data]) == 0
    assert "alerts queued" in capsys.readouterr().out


def test_pacs_audit_verify_finding_a_broken_chain_queues_an_alert(settings: Settings) -> None:
    data = str(settings.data_dir)
    assert main(["audit", "verify", "--data", data]) == 0
    pacs = open_pacs(settings)
    try:
        assert _alerts(pacs, "audit-chain") == []
        with pacs.database.write() as session:
            session.execute(text("UPDATE audit_log SET details = '{}' WHERE seq = 1"))
        assert main(["audit", "verify", "--data", data]) != 0
        (alert,) = _alerts(pacs, "audit-chain")
    finally:
        pacs.close()
    assert alert.subject == "the audit trail is broken: record 1 was altered (its MAC does not match)"
    assert "pacs audit verify found:" in alert.text
