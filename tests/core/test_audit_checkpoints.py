"""Signed audit checkpoints: a local attacker cannot roll the trail back unseen (issue #11, finding 8).

The attacker has the service account's rights: plain SQL on the index and write access
to the data directory (so also an older copy of ``audit.anchor``), but not the journal.
Checkpoints are read from a real unix datagram socket the test binds in place of
``/dev/log``, and from a real TLS syslog receiver (RFC 5425) with a certificate of the
archive's own CA.
"""

from __future__ import annotations

import io
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pacs.cli import main
from pacs.core import checkpoints, pki, tls
from pacs.core.audit import Action, AuditEvent, EventID
from pacs.core.config import Settings, load_settings, with_overrides
from pacs.core.context import CA_CERT, CA_KEY, Context, initialise, open_pacs
from pacs.ops import selfcheck
from tests.conftest import _free_port, pacs_serve


class SyslogSocket:
    """A unix datagram socket standing in for /dev/log; `lines()` are the messages it got."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="pacs-log-", dir="/tmp"))
        self.path = self.directory / "log"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(30)

    def receive(self) -> str:
        """The next message, as syslog would log it (priority and NUL stripped)."""
        return self.sock.recv(65536).decode().rstrip("\0")

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def syslog() -> Iterator[SyslogSocket]:
    log = SyslogSocket()
    yield log
    log.close()


def _append(pacs: Context, count: int) -> None:
    for number in range(count):
        pacs.audit.append(AuditEvent(EventID.QUERY, Action.EXECUTE, user_id=f"user{number}@cli"))


def _checkpoint(pacs: Context, syslog: SyslogSocket) -> str:
    """Take a checkpoint through the local syslog socket; return the message syslog got."""
    sink = checkpoints.LocalSyslog(str(syslog.path))
    checkpoints.write_checkpoint(pacs.audit, checkpoints.Signer(pacs.keyring), [sink])
    return syslog.receive()


def _save(path: Path, *lines: str) -> Path:
    """A saved copy of the journal, as ``journalctl -t pacs`` prints it (with its prefixes)."""
    path.write_text(
        "".join(f"Dec 01 12:00:0{n % 10} pacs-box pacs[812]: {line}\n" for n, line in enumerate(lines))
    )
    return path


def _roll_back(pacs: Context, settings: Settings, keep: int, old_anchor: bytes) -> None:
    """The attack: delete every record after `keep` with SQL and put the older anchor file back."""
    with pacs.database.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq > :keep"), {"keep": keep})
    (settings.data_dir / "audit.anchor").write_bytes(old_anchor)


def _verify(settings: Settings, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--data", str(settings.data_dir), *extra], environ={})
    return code, capsys.readouterr().out


def test_rolled_back_trail_with_the_older_anchor_put_back_fails_verify_against_the_checkpoint(
    pacs: Context,
    settings: Settings,
    syslog: SyslogSocket,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _append(pacs, 5)
    kept, _ = pacs.audit.newest() or (0, "")
    old_anchor = (settings.data_dir / "audit.anchor").read_bytes()
    _append(pacs, 5)
    journal = _save(tmp_path / "journal.txt", _checkpoint(pacs, syslog))
    newest, _ = pacs.audit.newest() or (0, "")

    _roll_back(pacs, settings, kept, old_anchor)

    code, out = _verify(settings, capsys)
    assert code == 0, "without the checkpoints the rolled-back trail looks intact (the finding)"
    code, out = _verify(settings, capsys, "--checkpoint", str(journal))
    assert code == 1
    # The plain verify above appended its own record (kept + 1), so the trail now ends there.
    assert f"the trail ends at record {kept + 1}, but the checkpoint of" in out
    assert f"saw record {newest}: records {kept + 2}..{newest} were removed (rolled back)" in out
    assert "TRAIL ROLLED BACK OR REWRITTEN" in out


def test_trail_regrown_to_the_same_length_after_a_roll_back_fails_verify_against_the_checkpoint(
    pacs: Context,
    settings: Settings,
    syslog: SyslogSocket,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _append(pacs, 3)
    kept, _ = pacs.audit.newest() or (0, "")
    old_anchor = (settings.data_dir / "audit.anchor").read_bytes()
    _append(pacs, 4)
    journal = _save(tmp_path / "journal.txt", _checkpoint(pacs, syslog))
    newest, _ = pacs.audit.newest() or (0, "")

    _roll_back(pacs, settings, kept, old_anchor)
    _append(pacs, newest - kept)  # records of the attacker's choosing, validly chained
    assert pacs.audit.newest() is not None and pacs.audit.newest()[0] == newest  # type: ignore[index]

    assert _verify(settings, capsys)[0] == 0
    code, out = _verify(settings, capsys, "--checkpoint", str(journal))
    assert code == 1
    assert f"record {newest} is not the record the checkpoint" in out


def test_trail_that_grew_after_its_checkpoints_verifies_against_them(
    pacs: Context,
    settings: Settings,
    syslog: SyslogSocket,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _append(pacs, 2)
    first = _checkpoint(pacs, syslog)
    _append(pacs, 2)
    second = _checkpoint(pacs, syslog)
    _append(pacs, 2)
    journal = _save(tmp_path / "journal.txt", "pacs: unrelated line", first, second)

    code, out = _verify(settings, capsys, "--checkpoint", str(journal))
    assert code == 0, out
    assert "2 checkpoints of this archive in" in out and "trail holds every one" in out


def test_checkpoint_line_with_an_edited_sequence_number_is_reported_as_forged(
    pacs: Context,
    settings: Settings,
    syslog: SyslogSocket,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _append(pacs, 2)
    line = _checkpoint(pacs, syslog)
    seq = pacs.audit.newest()[0]  # type: ignore[index]
    forged = line.replace(f" seq={seq} ", f" seq={seq - 1} ")
    assert forged != line
    journal = _save(tmp_path / "journal.txt", line, forged)

    code, out = _verify(settings, capsys, "--checkpoint", str(journal))
    assert code == 1
    assert "line 2: a checkpoint line of this archive with a bad MAC (forged)" in out


def test_checkpoints_of_another_archive_do_not_count(
    pacs: Context,
    settings: Settings,
    syslog: SyslogSocket,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other_settings = initialise(
        tmp_path / "other", ae_title="OTHER", hostname="localhost", db_url="", user="t"
    )
    other = open_pacs(other_settings)
    try:
        journal = _save(tmp_path / "journal.txt", _checkpoint(other, syslog))
    finally:
        other.close()

    code, out = _verify(settings, capsys, "--checkpoint", str(journal))
    assert code == 1
    assert "holds no checkpoint of this archive" in out


def test_checkpoints_can_be_piped_from_journalctl(
    pacs: Context,
    settings: Settings,
    syslog: SyslogSocket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _checkpoint(pacs, syslog)
    monkeypatch.setattr(sys, "stdin", io.StringIO(line + "\n"))
    code, out = _verify(settings, capsys, "--checkpoint", "-")
    assert code == 0, out


def test_unreadable_checkpoint_file_is_a_one_line_error(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["audit", "verify", "--data", str(settings.data_dir), "--checkpoint", str(tmp_path / "no")], {}
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("pacs: error: cannot read the checkpoint file") and err.count("\n") == 1


def test_the_checkpoint_goes_to_syslog_as_authpriv_tagged_pacs(pacs: Context, syslog: SyslogSocket) -> None:
    message = _checkpoint(pacs, syslog)
    seq, hash_ = pacs.audit.newest()  # type: ignore[misc]
    assert message.startswith(f"<{10 * 8 + 6}>pacs: PACS-AUDIT-CHECKPOINT v1 archive=")
    assert f" seq={seq} hash={hash_} mac=" in message


# -- an emptied trail ---------------------------------------------------------------------------------


def _import_study(settings: Settings, ct_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(ct_dir), "--data", str(settings.data_dir)], environ={}) == 0
    capsys.readouterr()


def _empty_the_trail(pacs: Context, settings: Settings) -> None:
    with pacs.database.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log"))
    (settings.data_dir / "audit.anchor").unlink()


def test_emptied_trail_of_an_archive_holding_studies_fails_audit_verify(
    pacs: Context, settings: Settings, ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_study(settings, ct_dir, capsys)
    _empty_the_trail(pacs, settings)

    code, out = _verify(settings, capsys)
    assert code == 1
    assert "the audit trail is empty although the archive holds 1 studies" in out
    assert "chain intact" not in out


def test_emptied_trail_of_an_archive_holding_studies_is_a_selfcheck_finding(
    pacs: Context, settings: Settings, ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_study(settings, ct_dir, capsys)
    _empty_the_trail(pacs, settings)

    findings = [f for f in selfcheck.run(pacs).findings if f.check == "audit-chain"]
    assert [f.message for f in findings] == [
        "audit trail: the audit trail is empty although the archive holds 1 studies: its records were deleted"
    ]


def test_reanchor_after_an_emptied_trail_records_it_and_verifies_again(
    pacs: Context, settings: Settings, ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_study(settings, ct_dir, capsys)
    _empty_the_trail(pacs, settings)
    assert _verify(settings, capsys, "--reanchor")[0] == 0
    code, out = _verify(settings, capsys)
    assert code == 0, out
    [alert] = [r for r in pacs.audit.records() if r.event_id == EventID.SECURITY_ALERT]
    assert "the audit trail is empty" in alert.details


def test_emptied_trail_stays_broken_after_the_service_appends_to_it(
    pacs: Context, settings: Settings, ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_study(settings, ct_dir, capsys)
    _empty_the_trail(pacs, settings)
    _append(pacs, 2)

    code, out = _verify(settings, capsys)
    assert code == 1
    assert "anchor file" in out and "is missing" in out


# -- selfcheck ----------------------------------------------------------------------------------------


def _checkpoint_results(settings: Settings, **environ: str) -> list[tuple[str, str]]:
    pacs = open_pacs(load_settings(settings.data_dir, environ))
    try:
        report = selfcheck.run(pacs)
    finally:
        pacs.close()
    results = [("finding", f.message) for f in report.findings if f.check == "audit-checkpoints"]
    return results + [("note", n.message) for n in report.notes if n.check == "audit-checkpoints"]


def test_selfcheck_flags_checkpoints_turned_off(settings: Settings) -> None:
    assert _checkpoint_results(settings, PACS_AUDIT_CHECKPOINT_MINUTES="0") == [
        (
            "finding",
            "audit checkpoints are off: someone with the service account could roll the trail back unseen",
        )
    ]


def test_selfcheck_says_when_the_syslog_socket_is_missing(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "no-log"
    [(kind, message)] = _checkpoint_results(settings, PACS_AUDIT_SYSLOG_SOCKET=str(missing))
    assert kind == "note"
    assert message.startswith(f"the syslog socket {missing} is missing")


def test_selfcheck_is_quiet_about_checkpoints_with_a_syslog_socket(
    settings: Settings, syslog: SyslogSocket
) -> None:
    assert _checkpoint_results(settings, PACS_AUDIT_SYSLOG_SOCKET=str(syslog.path)) == []


def test_selfcheck_flags_an_unreadable_ca_for_the_remote_syslog(
    settings: Settings, syslog: SyslogSocket
) -> None:
    results = _checkpoint_results(
        settings,
        PACS_AUDIT_SYSLOG_SOCKET=str(syslog.path),
        PACS_AUDIT_REMOTE_SYSLOG="logs.example:6514",
        PACS_AUDIT_REMOTE_SYSLOG_CA="/nonexistent/ca.pem",
    )
    assert [kind for kind, _ in results] == ["finding"]
    assert "/nonexistent/ca.pem" in results[0][1]


# -- remote syslog over TLS (RFC 5425) ----------------------------------------------------------------


class TlsReceiver:
    """A syslog-over-TLS server on 127.0.0.1 that wants a client certificate of `client_ca`."""

    def __init__(self, issued: pki.Issued, client_ca: Path, directory: Path) -> None:
        pki.write_private_key(directory / "receiver.key", issued.key)
        pki.write_certificate(directory / "receiver.crt", issued.cert)
        self.context = tls.server_context(directory / "receiver.crt", directory / "receiver.key", client_ca)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.frames: list[bytes] = []
        self.peers: list[str] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            raw, _ = self.listener.accept()
            with self.context.wrap_socket(raw, server_side=True) as conn:
                peer = conn.getpeercert()
                self.peers.append(dict(x[0] for x in peer["subject"])["commonName"] if peer else "")
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.frames.append(data)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(str(exc))

    def close(self) -> None:
        self.thread.join(timeout=30)
        self.listener.close()


def _archive_ca(settings: Settings) -> pki.Issued:
    return pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )


def test_checkpoint_reaches_a_remote_syslog_over_mutual_tls_in_an_octet_counted_frame(
    pacs: Context, settings: Settings, tmp_path: Path
) -> None:
    issued = pki.issue_server_cert(_archive_ca(settings), "localhost", extra_names=["127.0.0.1"])
    receiver = TlsReceiver(issued, settings.tls_dir / CA_CERT, tmp_path)
    remote = with_overrides(settings, "audit", remote_syslog=f"127.0.0.1:{receiver.port}", syslog_socket="")
    sinks = checkpoints.sinks(remote, tls.client_context)
    line = checkpoints.write_checkpoint(pacs.audit, checkpoints.Signer(pacs.keyring), sinks)
    receiver.close()

    assert receiver.errors == []
    assert receiver.peers == ["localhost"]  # the archive's server certificate, as client
    [frame] = receiver.frames
    length, _, message = frame.partition(b" ")
    assert int(length) == len(message)
    assert message.startswith(b"<86>1 ") and message.endswith(line.encode())
    assert b" pacs " in message and b" checkpoint - " in message


def test_remote_syslog_with_a_certificate_of_another_ca_gets_no_checkpoint(
    pacs: Context, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = pki.issue_server_cert(pki.create_ca("Someone else"), "localhost", extra_names=["127.0.0.1"])
    receiver = TlsReceiver(foreign, settings.tls_dir / CA_CERT, tmp_path)
    remote = with_overrides(settings, "audit", remote_syslog=f"127.0.0.1:{receiver.port}", syslog_socket="")
    line = checkpoints.write_checkpoint(
        pacs.audit, checkpoints.Signer(pacs.keyring), checkpoints.sinks(remote, tls.client_context)
    )
    receiver.close()

    assert receiver.frames == []
    assert line in capsys.readouterr().err  # delivered nowhere else: standard error keeps it


# -- pacs serve ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_pacs_serve_checkpoints_at_start_and_stop_and_the_journal_copy_verifies(
    workers: int, tmp_path: Path, syslog: SyslogSocket, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "served"
    initialise(data, ae_title="PACS", hostname="localhost", db_url="", user="test")
    process = pacs_serve(
        data,
        tmp_path / "serve.log",
        PACS_DICOM_PORT=str(_free_port()),
        PACS_DICOM_WORKERS=str(workers),
        PACS_WEB_PORT=str(_free_port()),
        PACS_AUDIT_SYSLOG_SOCKET=str(syslog.path),
    )
    try:
        assert process.stdout is not None
        assert "DICOM TLS listening" in process.stdout.readline(), (tmp_path / "serve.log").read_text()
        at_start = syslog.receive()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()
        at_stop = [syslog.receive()]
        syslog.sock.settimeout(0.5)
        while True:
            try:
                at_stop.append(syslog.receive())
            except TimeoutError:
                break
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    pacs = open_pacs(load_settings(data, {}))
    try:
        seq, hash_ = pacs.audit.newest()  # type: ignore[misc]
        kinds = [r.event_type for r in pacs.audit.records()]
    finally:
        pacs.close()
    assert "PACS-AUDIT-CHECKPOINT" in at_start
    assert f" seq={seq} hash={hash_} " in at_stop[-1], "the last checkpoint holds the stop record"
    assert kinds[-1] == "110121"  # Application Stop
    journal = _save(tmp_path / "journal.txt", at_start, *at_stop)
    settings = load_settings(data, {})
    code, out = _verify(settings, capsys, "--checkpoint", str(journal))
    assert code == 0, out
