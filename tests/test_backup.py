"""``pacs backup`` / ``pacs restore``: online snapshots, encrypted and authenticated, verified on restore."""

from __future__ import annotations

import errno
import io
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, Table, func, select

from pacs.cli import main
from pacs.core.accounts import Accounts
from pacs.core.config import Settings, load_settings
from pacs.core.context import initialise, open_pacs
from pacs.ops import backup as pacs_backup
from pacs.ops import restore as pacs_restore
from pacs.ops import selfcheck
from storage.db import Instance, WebSession
from tests.conftest import RunningDicom
from tests.data.make_series import make_ct_series

PASSPHRASE = "plum orchard lantern 1907"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


def _fill(settings: Settings, tmp_path: Path) -> dict[str, bytes]:
    make_ct_series(tmp_path / "ct", slices=12, rows=32, columns=32)
    pacs = open_pacs(settings)
    try:
        stored = {}
        for path in sorted((tmp_path / "ct").glob("*.dcm")):
            stored[pacs.archive.store(path).sop_uid] = path.read_bytes()
        Accounts(pacs.database, pacs.keyring).add("dr.who", frozenset({"physician"}))
    finally:
        pacs.close()
    return stored


@pytest.fixture
def originals(settings: Settings, tmp_path: Path) -> dict[str, bytes]:
    """A 12-slice CT and a user in the archive of `settings`; original bytes by SOP Instance UID."""
    return _fill(settings, tmp_path)


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    """An archive on the embedded index holding the 12-slice CT and a user."""
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    _fill(settings, tmp_path)
    return settings


@pytest.fixture
def second_pg_database(pg_server: str) -> Iterator[str]:
    """Another empty PostgreSQL database, to restore into."""
    name = f"pacs_restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _backup(settings: Settings, out: Path, passphrase_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output, err = _run(
        capsys,
        "backup",
        str(out),
        "--passphrase-file",
        str(passphrase_file),
        "--quiet",
        "--data",
        str(settings.data_dir),
    )
    assert code == 0, err
    assert output.startswith("backed up ")


def _restore(
    backup: Path, target: Path, passphrase_file: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    return _run(
        capsys,
        "restore",
        str(backup),
        "--passphrase-file",
        str(passphrase_file),
        "--quiet",
        "--data",
        str(target),
        *extra,
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
        assert Accounts(restored.database, restored.keyring).get("dr.who") is not None
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


def test_a_flipped_byte_in_the_backup_is_refused_and_nothing_is_written(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    data = bytearray(backup.read_bytes())
    data[len(data) * 2 // 3] ^= 0x01
    backup.write_bytes(bytes(data))
    code, _, err = _restore(backup, tmp_path / "r", passphrase_file, capsys)
    assert code == 2
    assert err.startswith("pacs: error: ") and "damaged or was tampered with" in err
    assert "nothing was written" in err
    assert not (tmp_path / "r").exists()


def test_a_truncated_backup_is_refused(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    backup.write_bytes(backup.read_bytes()[:-100])
    code, _, err = _restore(backup, tmp_path / "r", passphrase_file, capsys)
    assert code == 2 and "damaged or was tampered with" in err
    assert not (tmp_path / "r").exists()


def test_a_wrong_passphrase_is_refused(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    passphrase_file.write_text("not the passphrase at all\n")
    code, _, err = _restore(backup, tmp_path / "r", passphrase_file, capsys)
    assert code == 2
    assert err.strip() == f"pacs: error: wrong passphrase for {backup} (or its first bytes are damaged)"
    assert not (tmp_path / "r").exists()


def test_a_file_that_is_not_a_backup_is_refused(
    passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "photo.jpg"
    other.write_bytes(b"\xff\xd8\xff" + bytes(200))
    code, _, err = _restore(other, tmp_path / "r", passphrase_file, capsys)
    assert code == 2 and "is not a pacs backup" in err


def test_a_backup_from_a_newer_schema_is_refused_before_anything_is_written(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pacs_backup, "_schema_revision", lambda connection: "0099")
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    monkeypatch.undo()

    def writing_pass(*args: object) -> None:
        raise AssertionError("the writing pass started")

    monkeypatch.setattr(pacs_restore, "_write_pass", writing_pass)
    keys = tmp_path / "keys"
    code, _, err = _restore(backup, tmp_path / "r", passphrase_file, capsys, "--key-dir", str(keys))
    assert code == 2
    assert err.strip() == (
        f"pacs: error: {backup} was made by a newer mini-PACS (index schema revision '0099' is unknown "
        "to this version); upgrade mini-PACS first, then restore; nothing was written"
    )
    assert not (tmp_path / "r").exists()
    assert not keys.exists()


def test_restore_shows_the_progress_of_checking_and_then_of_restoring(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    calls: list[tuple[str, int, int]] = []
    summary = pacs_restore.restore(
        backup,
        tmp_path / "r",
        PASSPHRASE,
        progress=lambda done, total: calls.append(("checking", done, total)),
        write_progress=lambda done, total: calls.append(("restoring", done, total)),
    )
    assert summary.ok
    phases = [phase for phase, _, _ in calls]
    switch = phases.index("restoring")
    assert set(phases[:switch]) == {"checking"} and set(phases[switch:]) == {"restoring"}
    size = backup.stat().st_size
    for phase in ("checking", "restoring"):
        done = [d for p, d, total in calls if p == phase and total == size]
        assert done and len(done) == phases.count(phase)
        assert done == sorted(done) and done[-1] == size

    code, _, err = _run(
        capsys,
        "restore",
        str(backup),
        "--passphrase-file",
        str(passphrase_file),
        "--data",
        str(tmp_path / "r2"),
    )
    assert code == 0, err
    labels = [line.split()[0] for line in err.splitlines() if line.strip()]
    assert labels == ["checking", "restoring"]


def test_a_restore_that_fails_while_writing_empties_the_directories_it_was_given(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    target, keys = tmp_path / "r", tmp_path / "keys"
    target.mkdir(mode=0o700)
    keys.mkdir(mode=0o700)
    insert = pacs_restore._insert
    written: list[str] = []

    def insert_until_the_disk_is_full(
        connection: Connection, tables: dict[str, Table], name: str, data: bytes
    ) -> int:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.extend(sorted(p.name for p in (*target.iterdir(), *keys.iterdir())))
        return insert(connection, tables, name, data)

    monkeypatch.setattr(pacs_restore, "_insert", insert_until_the_disk_is_full)
    code, _, err = _restore(backup, target, passphrase_file, capsys, "--key-dir", str(keys))
    assert code == 2 and "No space left on device" in err
    assert {"pacs.toml", "blobs", "tls", "kek-0001.key"} <= set(written)
    assert list(target.iterdir()) == []
    assert list(keys.iterdir()) == []

    monkeypatch.undo()
    code, out, err = _restore(backup, target, passphrase_file, capsys, "--key-dir", str(keys))
    assert code == 0, err
    assert "verify: 12 objects checked: all intact" in out
    assert (keys / "kek-0001.key").read_bytes() == (embedded.key_dir / "kek-0001.key").read_bytes()


def test_a_restore_into_postgresql_that_fails_while_writing_leaves_the_database_empty(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    second_pg_database: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    insert = pacs_restore._insert
    calls: list[str] = []

    def insert_then_fail(connection: Connection, tables: dict[str, Table], name: str, data: bytes) -> int:
        calls.append(name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return insert(connection, tables, name, data)

    monkeypatch.setattr(pacs_restore, "_insert", insert_then_fail)
    code, _, err = _restore(backup, tmp_path / "r", passphrase_file, capsys, "--db", second_pg_database)
    assert code == 2 and "No space left on device" in err
    with psycopg.connect(second_pg_database) as connection:
        tables = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == []

    monkeypatch.undo()
    code, out, err = _restore(backup, tmp_path / "r", passphrase_file, capsys, "--db", second_pg_database)
    assert code == 0, err
    assert "verify: 12 objects checked: all intact" in out


def test_restore_refuses_a_directory_that_holds_an_archive(
    embedded: Settings,
    passphrase_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backup = tmp_path / "b.pacsbak"
    _backup(embedded, backup, passphrase_file, capsys)
    before = sorted(p.name for p in embedded.data_dir.iterdir())
    code, _, err = _restore(backup, embedded.data_dir, passphrase_file, capsys)
    assert code == 2 and "refusing to" in err
    assert sorted(p.name for p in embedded.data_dir.iterdir()) == before


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
