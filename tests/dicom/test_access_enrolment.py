"""Enrolment and removal with the command line: they reach the running server within seconds, and bad input
is one line and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pacs.core import pki
from pacs.core.context import CA_CERT
from tests.conftest import NodeFiles, RunningDicom
from tests.dicom.access_helpers import (
    REFRESH_WAIT,
    _cli,
    _echo,
    _handshake_refused,
    _other_ca_node,
    _security_alert,
    _tls_context,
    _wait_for,
)

# -- enrolment reaches the running server ---------------------------------------------------------


def test_a_node_enrolled_with_the_cli_while_the_server_runs_can_echo(
    dicom: RunningDicom, tmp_path: Path
) -> None:
    data = str(dicom.pacs.settings.data_dir)
    out = tmp_path / "us1"
    assert (
        _cli("modality", "add", "US1", "--host", "127.0.0.1", "--issue-cert", str(out), "--data", data) == 0
    )
    result = dicom.dcmtk("echoscu", NodeFiles("US1", out))
    assert result.returncode == 0, result.stderr


def test_a_node_removed_with_the_cli_while_the_server_runs_is_refused(dicom: RunningDicom) -> None:
    ct = dicom.enrol("CT1")
    assert dicom.dcmtk("echoscu", ct).returncode == 0
    assert _cli("modality", "remove", "CT1", "--data", str(dicom.pacs.settings.data_dir)) == 0
    result = dicom.dcmtk("echoscu", ct)
    assert result.returncode != 0
    record = _handshake_refused(dicom)
    assert record["details"]["reason"] == "CERTIFICATE_NOT_ENROLLED"
    assert record["details"]["certificate_subject"].endswith("CN=CT1")


def test_a_pinned_certificate_is_trusted_within_seconds_of_enrolment(
    dicom: RunningDicom, tmp_path: Path
) -> None:
    cert, key = _other_ca_node(tmp_path, "US1")
    context = _tls_context(dicom.pacs.settings.tls_dir / CA_CERT, cert, key)
    assert not _echo(dicom, "US1", context)  # not yet: its CA is not ours
    data = str(dicom.pacs.settings.data_dir)
    assert _cli("modality", "add", "US1", "--host", "127.0.0.1", "--cert", str(cert), "--data", data) == 0
    assert _wait_for(lambda: _echo(dicom, "US1", context), timeout=REFRESH_WAIT, interval=0.5)


def test_a_removed_pinned_node_is_refused_at_the_handshake_although_tls_still_trusts_its_certificate(
    dicom: RunningDicom, tmp_path: Path
) -> None:
    cert, key = _other_ca_node(tmp_path, "US1")
    context = _tls_context(dicom.pacs.settings.tls_dir / CA_CERT, cert, key)
    data = str(dicom.pacs.settings.data_dir)
    assert _cli("modality", "add", "US1", "--host", "127.0.0.1", "--cert", str(cert), "--data", data) == 0
    assert _wait_for(lambda: _echo(dicom, "US1", context), timeout=REFRESH_WAIT, interval=0.5)
    assert _cli("modality", "remove", "US1", "--data", data) == 0
    assert _wait_for(lambda: not _echo(dicom, "US1", context), timeout=REFRESH_WAIT, interval=0.25)
    _security_alert(
        dicom, "TLS handshake refused", reason="CERTIFICATE_NOT_ENROLLED", certificate_subject="CN=US1"
    )


# -- the command line: bad input is one line and exit status 2 -----------------------------------


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive (not serving) with one enrolled node, CT1, for the command line tests."""
    data = tmp_path_factory.mktemp("cli") / "data"
    assert _cli("init", "--data", str(data)) == 0
    out = data.parent / "ct1"
    assert (
        _cli("modality", "add", "CT1", "--host", "10.1.2.3", "--issue-cert", str(out), "--data", str(data))
        == 0
    )
    return data


def _error(capsys: pytest.CaptureFixture[str], *argv: str, environ: dict[str, str] | None = None) -> str:
    """Run a command that must fail on bad input; return its one-line error."""
    capsys.readouterr()
    code = _cli(*argv, environ=environ)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pacs: error: ")
    return lines[0]


def _add(archive_dir: Path, ae_title: str, tmp_path: Path, *options: str) -> list[str]:
    return [
        "modality",
        "add",
        ae_title,
        *options,
        "--issue-cert",
        str(tmp_path / "out"),
        "--data",
        str(archive_dir),
    ]


def test_cli_refuses_a_duplicate_ae_title(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _error(capsys, *_add(archive_dir, "CT1", tmp_path, "--host", "10.1.2.4"))
    assert "CT1" in error
    assert "already enrolled" in error


@pytest.mark.parametrize("ae_title", ["SEVENTEEN-CHARS-X", "CT\\1"], ids=["17 chars", "backslash"])
def test_cli_refuses_an_invalid_ae_title(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], ae_title: str
) -> None:
    error = _error(capsys, *_add(archive_dir, ae_title, tmp_path, "--host", "10.1.2.4"))
    assert "AE title" in error


def test_cli_writes_no_certificate_for_a_refused_enrolment(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _error(capsys, *_add(archive_dir, "SEVENTEEN-CHARS-X", tmp_path, "--host", "10.1.2.4"))
    assert not (tmp_path / "out" / "client.key").exists()
    assert not (tmp_path / "out" / "client.crt").exists()


@pytest.mark.parametrize("host", ["10.1.2.0/33", "10.1.2.3/24", "10.1.2.300", "clinic.example"])
def test_cli_refuses_a_bad_address_or_network(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    error = _error(capsys, *_add(archive_dir, "US1", tmp_path, "--host", host))
    assert "--host" in error
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_unreadable_certificate(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    for pem in (garbage, tmp_path / "missing.pem"):
        argv = [
            "modality",
            "add",
            "US1",
            "--host",
            "10.1.2.4",
            "--cert",
            str(pem),
            "--data",
            str(archive_dir),
        ]
        assert str(pem.name) in _error(capsys, *argv)


def test_cli_refuses_an_unknown_permission(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    error = _error(
        capsys, *_add(archive_dir, "US1", tmp_path, "--host", "10.1.2.4", "--allow", "store,delete")
    )
    assert "--allow" in error
    assert not (tmp_path / "out").exists()


def test_cli_refuses_plaintext_for_a_network(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = tmp_path / "us1.crt"
    pki.write_certificate(cert, pki.issue_client_cert(pki.create_ca(), "US1").cert)
    argv = ["modality", "add", "US1", "--host", "10.1.2.0/24", "--plaintext", "--cert", str(cert)]
    error = _error(capsys, *argv, "--data", str(archive_dir), environ={"PACS_DICOM_PLAINTEXT_PORT": "11112"})
    assert "--plaintext" in error
    assert "network" in error


def test_cli_lists_the_enrolled_nodes(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert _cli("modality", "list", "--data", str(archive_dir)) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("CT1 "))
    assert "10.1.2.3/32" in row
    assert "store" in row
    assert "find" not in row
    assert "issued" in row


def test_cli_refuses_to_remove_an_unknown_node(archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = _error(capsys, "modality", "remove", "NOBODY", "--data", str(archive_dir))
    assert "NOBODY" in error
