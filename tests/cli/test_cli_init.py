"""The ``pacs`` command line: ``pacs init``, and commands run where there is no archive."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from pacs.core import pki
from pacs.core.context import open_pacs
from storage.keys import KeyRing
from tests.cli.cli_helpers import (
    _one_line_error,
    _run,
    _settings,
)


def test_init_creates_a_private_data_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "pacs"
    code, out, _ = _run(
        capsys, "init", "--data", str(data), "--ae-title", "CLINIC", "--hostname", "pacs.example"
    )
    assert code == 0
    assert "CLINIC" in out
    assert os.stat(data).st_mode & 0o777 == 0o700
    for key in ("kek-0001.key", "audit.key", "ca.key", "server.key"):
        assert os.stat(data / "keys" / key).st_mode & 0o777 == 0o600
    assert os.stat(data / "keys").st_mode & 0o777 == 0o700
    config = tomllib.loads((data / "pacs.toml").read_text())
    assert config["dicom"] == {
        "ae_title": "CLINIC",
        "port": 2762,
        "bind": "0.0.0.0",
        "plaintext_port": 0,
        "max_associations": 10,
        "workers": 0,
        "max_pdu": 262144,
        "acse_timeout": 30,
        "handshake_timeout": 10,
        "max_pending_per_address": 8,
        "dimse_timeout": 60,
        "network_timeout": 60,
        "max_object_mb": 4096,
        "max_frame_mb": 256,
    }
    assert config["web"]["port"] == 8443 and config["web"]["session_idle_minutes"] == 15
    assert (data / "pacs.toml").read_text().count("\n# ") >= 15


def test_key_encryption_key_is_kept_apart_from_the_blobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pacs"
    assert _run(capsys, "init", "--data", str(data))[0] == 0
    ring = KeyRing.load(data / "keys")
    assert ring.current_version == 1
    blob_files = [p.read_bytes() for p in (data / "blobs").rglob("*") if p.is_file()]
    assert all(ring.kek(1) not in content for content in blob_files)
    assert not any(p.name.endswith(".key") for p in (data / "blobs").rglob("*"))


def test_init_can_keep_the_keys_outside_the_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, keys = tmp_path / "pacs", tmp_path / "etc" / "keys"
    assert _run(capsys, "init", "--data", str(data), "--key-dir", str(keys))[0] == 0
    assert tomllib.loads((data / "pacs.toml").read_text())["storage"]["key_dir"] == str(keys)
    assert (keys / "kek-0001.key").stat().st_mode & 0o777 == 0o600
    assert keys.stat().st_mode & 0o777 == 0o700
    assert not (data / "keys").exists()
    assert _run(capsys, "verify", "--data", str(data))[0] == 0


def test_init_refuses_a_key_directory_inside_the_blobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pacs"
    code, _, err = _run(capsys, "init", "--data", str(data), "--key-dir", str(data / "blobs" / "k"))
    assert code == 2
    assert "must not be inside the blob directory" in _one_line_error(err)
    assert not data.exists()


def test_init_issues_a_server_certificate_for_the_hostname(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pacs"
    assert _run(capsys, "init", "--data", str(data), "--hostname", "192.0.2.10")[0] == 0
    ca = pki.load_certificate(data / "tls" / "ca.crt")
    server = pki.load_certificate(data / "tls" / "server.crt")
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.0.2.10" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    assert pki.load_private_key(data / "keys" / "server.key").public_key() == server.public_key()


def test_init_is_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "pacs"
    assert _run(capsys, "init", "--data", str(data))[0] == 0
    pacs = open_pacs(_settings(data))
    try:
        records = list(pacs.audit.records())
    finally:
        pacs.close()
    assert [(r.event_id, r.event_type, r.action) for r in records] == [
        ("110100", "110129", "C"),
        ("110113", "110136", "C"),
    ]
    assert json.loads(records[1].details)["user"] == "admin"


def test_init_refuses_an_existing_pacs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "pacs"
    assert _run(capsys, "init", "--data", str(data))[0] == 0
    before = (data / "keys" / "kek-0001.key").read_bytes()
    code, _, err = _run(capsys, "init", "--data", str(data))
    assert code == 2
    assert "already holds a PACS" in _one_line_error(err)
    assert (data / "keys" / "kek-0001.key").read_bytes() == before


def test_init_refuses_an_index_database_that_already_holds_an_archive(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert _run(capsys, "init", "--data", str(first), "--db", pg_database)[0] == 0
    code, _, err = _run(capsys, "init", "--data", str(second), "--db", pg_database)
    assert code == 2
    assert "already holds tables" in _one_line_error(err)
    assert not second.exists()
    code, out, _ = _run(capsys, "audit", "verify", "--data", str(first))
    assert code == 0, out


def test_init_refuses_a_directory_with_other_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "photos.txt").write_text("holiday")
    code, _, err = _run(capsys, "init", "--data", str(tmp_path))
    assert code == 2
    assert "not an empty directory" in _one_line_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.txt"]


def test_init_rejects_an_invalid_ae_title(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        capsys, "init", "--data", str(tmp_path / "d"), "--ae-title", "A_TITLE_THAT_IS_TOO_LONG"
    )
    assert code == 2
    assert "AE title" in _one_line_error(err)
    assert not (tmp_path / "d").exists()


def test_a_command_without_data_directory_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "verify")
    assert code == 2
    assert "--data" in _one_line_error(err)


def test_a_directory_that_is_not_a_pacs_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "verify", "--data", str(tmp_path))
    assert code == 2
    assert "pacs init" in _one_line_error(err)
