"""``pacs backup``: an encrypted, authenticated snapshot of a whole archive, taken while it runs.

One read transaction lists the blobs and dumps the index rows, and blobs never change once
written, so the snapshot is consistent without stopping the server. Web sessions and login
throttles are left out. The file (:mod:`pacs.ops.backup_format`) is written under a
temporary name and renamed once flushed: it is complete or absent. Every backup, written or
failed, is audited; :mod:`pacs.ops.restore` reads one back.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, MetaData, Table, select, text

from pacs.core import events
from pacs.core.config import CONFIG_NAME
from pacs.core.context import Context
from pacs.ops.backup_format import (
    FORMAT,
    KDF_LANES,
    KDF_MEMORY_KIB,
    KDF_TIME,
    MAGIC,
    PREAMBLE,
    ROWS_PER_MEMBER,
    BackupError,
    Progress,
    check_value,
    derive_key,
    encode,
    private_file,
)
from storage import crypto, durable

_SKIPPED_TABLES = frozenset({"alembic_version", "web_sessions", "login_throttle"})


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds."""

    path: Path
    objects: int
    rows: dict[str, int]
    size: int
    snapshot_at: str


@dataclass(frozen=True)
class _Snapshot:
    """What the read transaction put into the tar stream."""

    taken_at: str
    blobs: int
    rows: dict[str, int]


class _EncryptingWriter(io.RawIOBase):
    """A write-only file that encrypts into `sink` and counts what it wrote."""

    def __init__(self, sink: BinaryIO, key: bytes, identity: bytes) -> None:
        self._sink = sink
        self._encryptor = crypto.StreamEncryptor(key, identity)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        self._sink.write(self._encryptor.update(bytes(data)))
        return len(data)

    def finish(self) -> None:
        self._sink.write(self._encryptor.finalize())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> int:
    with open(path, "rb") as handle:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = os.fstat(handle.fileno()).st_size, 0o600, 0
        tar.addfile(info, handle)
    return info.size


def _tables(connection: Connection) -> list[Table]:
    metadata = MetaData()
    metadata.reflect(bind=connection)
    return [t for t in metadata.sorted_tables if t.name not in _SKIPPED_TABLES]


def _dump_rows(tar: tarfile.TarFile, connection: Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in _tables(connection):
        counts[table.name] = 0
        result = connection.execute(select(table)).mappings()
        part = 0
        while rows := result.fetchmany(ROWS_PER_MEMBER):
            part += 1
            body = "".join(
                json.dumps({k: encode(v) for k, v in row.items()}, ensure_ascii=False) + "\n" for row in rows
            )
            _add_bytes(tar, f"index/{table.name}.{part:05d}.jsonl", body.encode())
            counts[table.name] += len(rows)
    return counts


def _schema_revision(connection: Connection) -> str:
    """The index's Alembic revision, as the snapshot in `connection` sees it."""
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def backup(
    pacs: Context, out: Path, passphrase: str, *, by: str, progress: Progress | None = None
) -> BackupSummary:
    """Write an encrypted snapshot of `pacs` to `out` (a new file, 0600, complete or absent).

    Audited as done by `by`, whether it is written or fails. Raises :class:`BackupError`
    if `out` exists or an indexed blob disappears meanwhile (a study deleted during the
    backup: run it again).
    """
    try:
        summary = _write(pacs, out, passphrase, progress)
    except BaseException as exc:
        pacs.audit.append(events.backup_failed(by=by, file=str(out.resolve()), error=repr(exc)))
        raise
    pacs.audit.append(
        events.backup_written(
            by=by,
            file=str(summary.path.resolve()),
            objects=summary.objects,
            size=summary.size,
            snapshot_at=summary.snapshot_at,
        )
    )
    return summary


def _write(pacs: Context, out: Path, passphrase: str, progress: Progress | None) -> BackupSummary:
    """Write the backup file under a temporary name, flush it and rename it to `out`."""
    if out.exists():
        raise BackupError(f"{out} already exists; not overwriting it")
    salt = os.urandom(16)
    key = derive_key(passphrase, salt, KDF_TIME, KDF_MEMORY_KIB, KDF_LANES)
    preamble = PREAMBLE.pack(MAGIC, FORMAT, KDF_TIME, KDF_MEMORY_KIB, KDF_LANES, salt, check_value(key))
    partial = out.with_name(f".{out.name}.partial")
    try:
        with private_file(partial) as sink:
            sink.write(preamble)
            writer = _EncryptingWriter(sink, key, preamble)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                snapshot = _write_snapshot(pacs, tar, progress)
            writer.finish()
            sink.flush()
            durable.flush_file(sink.fileno())
        os.rename(partial, out)
        durable.flush_directory(out.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupSummary(out, snapshot.blobs, snapshot.rows, out.stat().st_size, snapshot.taken_at)


def _write_snapshot(pacs: Context, tar: tarfile.TarFile, progress: Progress | None) -> _Snapshot:
    """Every member of the tar stream, from one read transaction, and the manifest last."""
    with pacs.database.snapshot() as connection:
        revision = _schema_revision(connection)
        taken_at = datetime.now(UTC).isoformat(timespec="seconds")
        head = {
            "format": FORMAT,
            "created_at": taken_at,
            "host": socket.gethostname(),
            "revision": revision,
            "index": "sqlcipher" if pacs.database.is_sqlite else "postgresql",
        }
        _add_bytes(tar, "backup.json", json.dumps(head).encode())
        members = 1 + _add_configuration(tar, pacs)
        blobs = _add_blobs(tar, pacs, connection, progress)
        rows = _dump_rows(tar, connection)
    members += blobs + sum(-(-count // ROWS_PER_MEMBER) for count in rows.values())
    manifest = {"members": members, "blobs": blobs, "rows": rows}
    _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    return _Snapshot(taken_at, blobs, rows)


def _add_configuration(tar: tarfile.TarFile, pacs: Context) -> int:
    """Add pacs.toml, the key directory and the certificates; return how many files."""
    settings = pacs.settings
    _add_file(tar, CONFIG_NAME, settings.data_dir / CONFIG_NAME)
    added = 1
    for directory, prefix in ((settings.key_dir, "keys"), (settings.tls_dir, "tls")):
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            _add_file(tar, f"{prefix}/{path.name}", path)
            added += 1
    return added


def _add_blobs(tar: tarfile.TarFile, pacs: Context, connection: Connection, progress: Progress | None) -> int:
    """Add every blob the snapshot indexes, as stored; return how many."""
    blob_ids = connection.execute(text("SELECT blob_id FROM instances ORDER BY id")).scalars().all()
    paths = [pacs.archive.blob_file(b) for b in blob_ids]
    try:
        total = sum(p.stat().st_size for p in paths)
        done = 0
        for path in paths:
            done += _add_file(tar, f"blobs/{path.parent.name}/{path.name}", path)
            if progress is not None:
                progress(done, total)
    except FileNotFoundError as exc:
        raise BackupError(
            f"object file {exc.filename} vanished during the backup (a study was deleted); "
            "run the backup again"
        ) from None
    return len(paths)
