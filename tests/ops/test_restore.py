"""``pacs restore``: verified before anything is written; a bad or foreign backup is refused, a failed
restore leaves nothing behind.
"""

from __future__ import annotations

import errno
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, Table

from pacs.core.config import Settings
from pacs.ops import backup as pacs_backup
from pacs.ops import restore as pacs_restore
from tests.ops.backup_helpers import (
    PASSPHRASE,
    _backup,
    _restore,
    _run,
)


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
