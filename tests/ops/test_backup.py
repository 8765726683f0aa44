"""``pacs backup`` / ``pacs restore``: online snapshots, encrypted and authenticated, restored whole."""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pacs.core.accounts import Accounts
from pacs.core.config import Settings, load_settings
from pacs.core.context import open_pacs
from pacs.ops import selfcheck
from storage.models import Instance, WebSession
from tests.conftest import RunningDicom
from tests.data.make_series import make_ct_series
from tests.ops.backup_helpers import (
    _backup,
    _restore,
    _run,
)


def test_a_restored_archive_holds_every_object_byte_identical(
    settings: Settings,
    db_url: str,
    originals: dict[str, bytes],
    passphrase_file: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = tmp_path / "archive.pacsbak"
    _backup(settings, backup, passphrase_file, capsys)
    assert backup.stat().st_mode & 0o777 == 0o600
    extra = ["--db", request.getfixturevalue("second_pg_database")] if db_url else []
    code, out, err = _restore(backup, tmp_path / "restored", passphrase_file, capsys, *extra)
    assert code == 0, err
    assert "verify: 12 objects checked: all intact" in out
    restored = open_pacs(load_settings(tmp_path / "restored", {}))
    try:
        for sop_uid, data in originals.items():
            with restored.archive.open(sop_uid) as stream:
                assert stream.read() == data
        assert Accounts(restored.database, restored.keyring, audit=restored.audit).get("dr.who") is not None
        assert restored.audit.verify().ok
        later = tmp_path / "later"
        make_ct_series(later, slices=1, rows=16, columns=16)
        restored.archive.store(next(later.glob("*.dcm")))
        with restored.database.read() as session:
            assert session.scalar(select(func.count()).select_from(Instance)) == 13
    finally:
        restored.close()


def test_the_passphrase_can_come_on_standard_input(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO(passphrase_file.read_text()))
    code, out, err = _run(
        capsys, "restore", str(backup), "--passphrase-file", "-", "--quiet", "--data", str(tmp_path / "r")
    )
    assert code == 0, err
    assert "all intact" in out


def test_the_restored_index_is_where_the_options_say(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    keys = tmp_path / "etc" / "keys"
    code, _, err = _restore(backup, tmp_path / "r", passphrase_file, capsys, "--key-dir", str(keys))
    assert code == 0, err
    restored = load_settings(tmp_path / "r", {})
    assert restored.key_dir == keys.resolve()
    assert (keys / "kek-0001.key").read_bytes() == (embedded.key_dir / "kek-0001.key").read_bytes()
    assert not (tmp_path / "r" / "keys").exists()


def test_backup_refuses_a_weak_passphrase_and_an_existing_file(
    settings: Settings, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weak = tmp_path / "weak"
    weak.write_text("password1234\n")
    code, _, err = _run(
        capsys,
        "backup",
        str(tmp_path / "b"),
        "--passphrase-file",
        str(weak),
        "--data",
        str(settings.data_dir),
    )
    assert code == 2 and "backup passphrase: " in err
    assert not (tmp_path / "b").exists()
    (tmp_path / "b").write_bytes(b"keep me")
    code, _, err = _run(
        capsys,
        "backup",
        str(tmp_path / "b"),
        "--passphrase-file",
        str(passphrase_file),
        "--data",
        str(settings.data_dir),
    )
    assert code == 2 and "already exists" in err
    assert (tmp_path / "b").read_bytes() == b"keep me"


def test_backup_and_restore_are_audited_and_satisfy_selfcheck(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pacs = open_pacs(embedded)
    try:
        assert [f.check for f in selfcheck.run(pacs).findings] == ["backup"]
    finally:
        pacs.close()
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    pacs = open_pacs(embedded)
    try:
        assert selfcheck.run(pacs).ok
        events = [json.loads(r.details) for r in pacs.audit.records() if r.event_id == "110106"]
    finally:
        pacs.close()
    assert events[-1]["what"] == "backup" and events[-1]["objects"] == 12
    assert events[-1]["file"] == str(backup.resolve())
    assert _restore(backup, tmp_path / "r", passphrase_file, capsys)[0] == 0
    restored = open_pacs(load_settings(tmp_path / "r", {}))
    try:
        restores = [json.loads(r.details) for r in restored.audit.records() if r.event_id == "110107"]
        assert restored.audit.verify().ok
    finally:
        restored.close()
    assert restores[-1]["what"] == "restore" and restores[-1]["objects"] == 12


def test_web_sessions_are_not_carried_into_a_backup(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datetime import UTC, datetime

    pacs = open_pacs(embedded)
    try:
        with pacs.database.write() as session:
            now = datetime.now(UTC)
            session.add(WebSession(id="a" * 64, user_name="dr.who", data="{}", created_at=now, last_seen=now))
    finally:
        pacs.close()
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    assert _restore(backup, tmp_path / "r", passphrase_file, capsys)[0] == 0
    restored = open_pacs(load_settings(tmp_path / "r", {}))
    try:
        with restored.database.read() as session:
            assert session.scalar(select(func.count()).select_from(WebSession)) == 0
    finally:
        restored.close()


def _stored_uids(pacs_settings: Settings) -> set[str]:
    pacs = open_pacs(pacs_settings)
    try:
        with pacs.database.read() as session:
            return set(session.scalars(select(Instance.sop_uid)))
    finally:
        pacs.close()


def test_a_backup_taken_during_a_storescu_push_restores_every_acknowledged_object(
    dicom: RunningDicom, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = dicom.enrol("CT1")
    series = tmp_path / "push"
    make_ct_series(series, slices=300, rows=128, columns=128)
    command = [
        "/usr/bin/storescu",
        *node.tls_args(),
        "-aet",
        "CT1",
        "-aec",
        dicom.ae_title,
        "127.0.0.1",
        str(dicom.port),
        *map(str, sorted(series.glob("*.dcm"))),
    ]
    push = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={"TCP_NODELAY": "1"}
    )
    try:
        deadline = time.monotonic() + 120
        while len(_stored_uids(dicom.pacs.settings)) < 30:
            assert push.poll() is None, "the push ended before the backup could start"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        acknowledged = _stored_uids(dicom.pacs.settings)
        backup = tmp_path / "during.pacsbak"
        _backup(dicom.pacs.settings, backup, passphrase_file, capsys)
        pushing_after_backup = push.poll() is None
    finally:
        output = push.communicate(timeout=300)[0]
    assert push.returncode == 0, output
    final = _stored_uids(dicom.pacs.settings)
    assert len(final) == 300

    code, _, err = _restore(backup, tmp_path / "restored", passphrase_file, capsys)
    assert code == 0, err
    restored = _stored_uids(load_settings(tmp_path / "restored", {}))
    assert acknowledged <= restored <= final
    if pushing_after_backup:
        assert len(restored) < 300
    assert _run(capsys, "verify", "--data", str(tmp_path / "restored"))[0] == 0
