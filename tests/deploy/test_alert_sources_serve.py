"""Alerts in ``pacs serve``: the daily check at start and not again after a restart; an expired certificate.

The archive runs as the real command. Its alert watch runs the daily check when it starts (no
run in the last day), so a signed checkpoint and the selfcheck's findings are queued; after a
restart the check is not repeated, while a lockout written in between is alerted. With a server
certificate that has expired, the log says so in one line, a modality's TLS handshake fails,
and the certificate is alerted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pacs.cli import main
from pacs.core import events, pki
from pacs.core.config import load_settings
from pacs.core.context import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, Context, initialise, open_pacs
from pacs.ops.alerts import AlertQueue, QueuedAlert
from tests.conftest import NodeFiles, _free_port, pacs_serve


@contextmanager
def _serving(data: Path, log: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """``pacs serve`` until SIGTERM at the end of the block (which lets the watch finish its round)."""
    process = pacs_serve(data, log, PACS_DICOM_PORT=str(port), PACS_WEB_PORT=str(_free_port()))
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "DICOM TLS listening" in banner, log.read_text()
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def _opened(data: Path) -> Iterator[Context]:
    pacs = open_pacs(load_settings(data, {}))
    try:
        yield pacs
    finally:
        pacs.close()


def _alerts(data: Path) -> list[QueuedAlert]:
    with _opened(data) as pacs:
        return AlertQueue(pacs.database).alerts()


def _selfcheck_runs(data: Path) -> int:
    with _opened(data) as pacs:
        return sum('"what": "selfcheck"' in r.details for r in pacs.audit.search(limit=1000))


def _until(what: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _kinds(data: Path) -> list[str]:
    return [alert.kind for alert in _alerts(data)]


def test_serve_runs_the_daily_check_at_start_and_not_again_after_a_restart(tmp_path: Path) -> None:
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="t")
    data, port = settings.data_dir, _free_port()
    with _serving(data, tmp_path / "first.log", port):
        assert _until(lambda: "checkpoint" in _kinds(data)), (tmp_path / "first.log").read_text()
    assert _selfcheck_runs(data) == 1
    with _opened(data) as pacs:
        pacs.audit.append(
            events.account_locked("drlee", source="10.3.3.3", failures=5, lifts_after_minutes=15)
        )
    with _serving(data, tmp_path / "second.log", port):
        assert _until(lambda: "lockout" in _kinds(data)), (tmp_path / "second.log").read_text()
    assert _selfcheck_runs(data) == 1
    assert _kinds(data).count("checkpoint") == 1
    assert [a.subject for a in _alerts(data) if a.kind == "lockout"] == ["account drlee locked"]


def _expire_server_certificate(data: Path) -> None:
    """Give the archive a CA made ten days ago and a server certificate from it that expired a week ago."""
    settings = load_settings(data, {})
    past = datetime.now(UTC) - timedelta(days=10)
    ca = pki.create_ca(now=past)
    (settings.key_dir / CA_KEY).unlink()
    pki.write_private_key(settings.key_dir / CA_KEY, ca.key)
    pki.write_certificate(settings.tls_dir / CA_CERT, ca.cert)
    key = pki.load_private_key(settings.key_dir / SERVER_KEY)
    server = pki.issue_server_cert(
        ca, "localhost", extra_names=["127.0.0.1"], valid_days=3, now=past, key=key
    )
    pki.write_certificate(settings.tls_dir / SERVER_CERT, server.cert)


def test_an_expired_server_certificate_is_named_in_the_log_and_alerted_when_a_modality_fails(
    tmp_path: Path,
) -> None:
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="t")
    data, port, log = settings.data_dir, _free_port(), tmp_path / "serve.log"
    _expire_server_certificate(data)
    node = NodeFiles("CT1", tmp_path / "ct1")
    assert (
        main(
            [
                "modality",
                "add",
                "CT1",
                "--host",
                "127.0.0.1",
                "--issue-cert",
                str(node.directory),
                "--data",
                str(data),
            ],
            environ={},
        )
        == 0
    )
    with _serving(data, log, port):
        echo = subprocess.run(
            ["/usr/bin/echoscu", *node.tls_args(), "-aet", "CT1", "-aec", "PACS", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        assert _until(lambda: "certificate" in _kinds(data)), log.read_text()
    assert echo.returncode != 0
    lines = [line for line in log.read_text().splitlines() if "the server certificate" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("pacs: the server certificate (SHA-256 ")
    assert "EXPIRED on" in lines[0] and "modalities and browsers refuse every TLS connection" in lines[0]
    subjects = [a.subject for a in _alerts(data) if a.kind == "certificate"]
    assert subjects == ["the server certificate has expired"]
