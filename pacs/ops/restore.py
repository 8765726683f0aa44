"""``pacs restore``: a backup (:mod:`pacs.ops.backup_format`) back into a new data directory, verified.

A restore reads the whole file once to authenticate it, writing nothing, and only then
writes the new data directory, so a flipped byte, a wrong passphrase or a backup from a
newer mini-PACS leaves nothing behind; a restore that fails while writing removes what it
wrote. The restored archive is verified (every object and the audit chain) and records
the restore in its audit trail.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import shutil
import struct
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, Table, func, select, text

from pacs.core import events
from pacs.core.config import CONFIG_NAME, Settings, parse_settings, render_config, with_overrides
from pacs.core.context import open_database, open_pacs, refuse_existing, remove_created
from pacs.ops.backup_format import (
    FORMAT,
    MAGIC,
    MEMBER,
    PREAMBLE,
    BackupError,
    Progress,
    check_value,
    decode,
    derive_key,
    private_file,
)
from storage import crypto, durable
from storage.blobs import BlobStore
from storage.db import MIGRATIONS, Database
from storage.keys import KeyRing, write_secret


@dataclass
class RestoreSummary:
    """What a restore wrote and what the checks afterwards found."""

    settings: Settings
    objects: int
    rows: dict[str, int]
    created_at: str
    damaged: list[str] = field(default_factory=list)
    audit_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the restored archive verifies: every object and the audit chain."""
        return not self.damaged and not self.audit_problems


class _DecryptingReader(io.RawIOBase):
    """A read-only file over the authenticated plaintext of a backup stream."""

    def __init__(self, source: BinaryIO, key: bytes, identity: bytes, progress: Callable[[], None]) -> None:
        self._chunks = crypto.decrypt_stream(source, key, identity)
        self._pending = memoryview(b"")
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            self._progress()
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def drain(self) -> None:
        """Read to the end, so the final chunk and the end of the stream are authenticated."""
        while self.read(1 << 20):
            pass


@dataclass
class _Contents:
    """What the verifying pass learnt from a backup."""

    head: dict[str, Any]
    manifest: dict[str, Any]
    config: str


def _open_stream(
    infile: Path, passphrase: str, progress: Progress | None
) -> tuple[BinaryIO, _DecryptingReader]:
    source: BinaryIO = open(infile, "rb")  # noqa: SIM115 - closed by the caller
    preamble = source.read(PREAMBLE.size)
    try:
        magic, version, time_cost, memory_kib, lanes, salt, check = PREAMBLE.unpack(preamble)
    except struct.error:
        source.close()
        raise BackupError(f"{infile} is not a pacs backup (too short)") from None
    if magic != MAGIC or version != FORMAT:
        source.close()
        raise BackupError(f"{infile} is not a pacs backup of a format this version reads")
    if not (1 <= time_cost <= 16 and 8 <= memory_kib <= 2**22 and 1 <= lanes <= 16):
        source.close()
        raise BackupError(f"{infile} is damaged (unreasonable key derivation parameters)")
    key = derive_key(passphrase, salt, time_cost, memory_kib, lanes)
    if not hmac.compare_digest(check, check_value(key)):
        source.close()
        raise BackupError(f"wrong passphrase for {infile} (or its first bytes are damaged)")
    total = infile.stat().st_size

    def report() -> None:
        if progress is not None:
            progress(source.tell(), total)

    return source, _DecryptingReader(source, key, preamble, report)


def _members(reader: _DecryptingReader) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if not member.isreg() or not MEMBER.match(member.name):
                raise BackupError(f"the backup holds an unexpected entry {member.name!r}")
            stream = tar.extractfile(member)
            assert stream is not None
            yield member, stream
    reader.drain()


def _check_revision(infile: Path, revision: object) -> None:
    """Refuse a backup whose schema revision is not one of this version's migrations."""
    if revision not in {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}:
        raise BackupError(
            f"{infile} was made by a newer mini-PACS (index schema revision {revision!r} is unknown "
            "to this version); upgrade mini-PACS first, then restore; nothing was written"
        )


def _verify_pass(infile: Path, passphrase: str, progress: Progress | None) -> _Contents:
    source, reader = _open_stream(infile, passphrase, progress)
    head: dict[str, Any] = {}
    manifest: dict[str, Any] = {}
    config = ""
    members = blobs = 0
    rows: dict[str, int] = {}
    try:
        with source:
            for member, stream in _members(reader):
                if member.name.startswith("blobs/"):
                    members += 1
                    blobs += 1
                    while stream.read(1 << 20):
                        pass
                    continue
                data = stream.read()
                if member.name == "manifest.json":
                    manifest = json.loads(data)
                    continue
                members += 1
                if member.name == "backup.json":
                    head = json.loads(data)
                    _check_revision(infile, head.get("revision"))
                elif member.name == CONFIG_NAME:
                    config = data.decode()
                elif member.name.startswith("index/"):
                    table = member.name.split("/")[1].split(".")[0]
                    rows[table] = rows.get(table, 0) + data.count(b"\n")
    except crypto.IntegrityError as exc:
        raise BackupError(f"{infile} is damaged or was tampered with ({exc}); nothing was written") from None
    except (tarfile.TarError, ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{infile} is not a readable backup ({exc}); nothing was written") from None
    expected = {"members": members, "blobs": blobs, "rows": {t: n for t, n in rows.items() if n}}
    found = {
        "members": manifest.get("members"),
        "blobs": manifest.get("blobs"),
        "rows": {t: n for t, n in manifest.get("rows", {}).items() if n},
    }
    if not head or not config or expected != found:
        raise BackupError(f"{infile} is incomplete (its manifest does not match its contents)")
    return _Contents(head, manifest, config)


def _target_settings(data_dir: Path, contents: _Contents, key_dir: str, db_url: str | None) -> Settings:
    """The restored archive's settings: the backup's, with the key directory and index overridden."""
    settings = parse_settings(contents.config, data_dir, {}, origin=f"the backup's {CONFIG_NAME}")
    if key_dir:
        settings = with_overrides(settings, "storage", key_dir=str(Path(key_dir).resolve()))
    if db_url is not None:
        settings = with_overrides(settings, "storage", db_url=db_url)
    return settings


def _check_target(settings: Settings) -> None:
    refuse_existing(settings.data_dir)
    if settings.key_dir.exists() and any(settings.key_dir.iterdir()):
        raise BackupError(f"the key directory {settings.key_dir} is not empty; choose another with --key-dir")
    if settings.storage.db_url:
        database = Database.open(settings.storage.db_url, sqlite_path=settings.index_path, sqlite_key=b"")
        try:
            if database.table_names():
                raise BackupError(
                    "the PostgreSQL database to restore into is not empty; give an empty one with --db"
                )
        finally:
            database.dispose()


def _write_file(path: Path, stream: IO[bytes]) -> None:
    with private_file(path) as sink:
        shutil.copyfileobj(stream, sink, 1 << 20)
        sink.flush()
        durable.flush_file(sink.fileno())


def _insert(connection: Connection, tables: dict[str, Table], name: str, data: bytes) -> int:
    table_name = name.split("/")[1].split(".")[0]
    rows = [{k: decode(v) for k, v in json.loads(line).items()} for line in data.splitlines()]
    connection.execute(tables[table_name].insert(), rows)
    return len(rows)


def _reset_sequences(connection: Connection, tables: dict[str, Table]) -> None:
    """PostgreSQL: move each serial column's sequence past the restored rows."""
    for table in tables.values():
        for column in table.primary_key.columns:
            sequence = connection.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
            ).scalar()
            if sequence:
                top = connection.execute(select(func.max(column))).scalar()
                connection.execute(
                    text("SELECT setval(:s, :v, :called)"),
                    {"s": sequence, "v": top or 1, "called": top is not None},
                )


def _write_pass(
    infile: Path, passphrase: str, settings: Settings, contents: _Contents, progress: Progress | None
) -> None:
    source, reader = _open_stream(infile, passphrase, progress)
    database: Database | None = None
    connection: Connection | None = None
    try:
        with source:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            settings.key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            settings.tls_dir.mkdir(mode=0o700)
            blob_store: BlobStore | None = None
            tables: dict[str, Table] = {}
            for member, stream in _members(reader):
                name = member.name
                if name == CONFIG_NAME:
                    with private_file(settings.data_dir / CONFIG_NAME) as sink:
                        sink.write(render_config(settings).encode())
                elif name.startswith("keys/"):
                    write_secret(settings.key_dir / name.split("/")[1], stream.read())
                elif name.startswith("tls/"):
                    _write_file(settings.tls_dir / name.split("/")[1], stream)
                elif name.startswith("blobs/"):
                    if blob_store is None:
                        blob_store = BlobStore.create(settings.blob_dir, KeyRing.load(settings.key_dir))
                    _write_file(settings.blob_dir / name.removeprefix("blobs/"), stream)
                elif name.startswith("index/"):
                    if connection is None:
                        database, connection, tables = _open_index(settings, contents)
                    _insert(connection, tables, name, stream.read())
            if blob_store is None:
                BlobStore.create(settings.blob_dir, KeyRing.load(settings.key_dir))
            for shard in settings.blob_dir.iterdir():
                durable.flush_directory(shard)
            if connection is None:
                database, connection, tables = _open_index(settings, contents)
            assert database is not None
            if not database.is_sqlite:
                _reset_sequences(connection, tables)
            connection.commit()
    finally:
        # Closing rolls back a failed pass, releasing its locks before the clean-up.
        if connection is not None:
            connection.close()
        if database is not None:
            database.dispose()


def _open_index(settings: Settings, contents: _Contents) -> tuple[Database, Connection, dict[str, Table]]:
    """Create the restored index at the backup's schema revision and begin one transaction."""
    database = open_database(settings, KeyRing.load(settings.key_dir))
    database.migrate(contents.head["revision"])
    connection = database.engine.connect()
    connection.begin()
    metadata = MetaData()
    metadata.reflect(bind=connection)
    return database, connection, dict(metadata.tables)


def _drop_tables(db_url: str) -> None:
    """Drop what a failed writing pass created in the PostgreSQL database it was given empty."""
    database = Database.open(db_url, sqlite_path=Path(os.devnull), sqlite_key=b"")
    try:
        metadata = MetaData()
        metadata.reflect(bind=database.engine)
        metadata.drop_all(bind=database.engine)
    finally:
        database.dispose()


def restore(
    infile: Path,
    data_dir: Path,
    passphrase: str,
    *,
    key_dir: str = "",
    db_url: str | None = None,
    by: str = "pacs",
    progress: Progress | None = None,
    write_progress: Progress | None = None,
) -> RestoreSummary:
    """Restore the backup `infile` into the new directory `data_dir`, verify it and audit it as done by `by`.

    The whole file is authenticated before anything is written. `progress` and
    `write_progress` are told how many bytes of `infile` the checking and the writing
    pass have read, of how many. Raises :class:`BackupError` for a wrong passphrase, a
    damaged or tampered file, a backup from a newer mini-PACS, or a target that already
    holds data. If writing or opening the result fails, the data and key directories are
    removed again (emptied again if they existed, empty, before) and so are the tables
    of a PostgreSQL target.
    """
    contents = _verify_pass(infile, passphrase, progress)
    settings = _target_settings(data_dir, contents, key_dir, db_url)
    _check_target(settings)
    data_existed, keys_existed = settings.data_dir.exists(), settings.key_dir.exists()
    try:
        _write_pass(infile, passphrase, settings, contents, write_progress)
        return _check_restored(infile, settings, contents, by)
    except BaseException as failure:
        try:
            remove_created(settings.data_dir, data_existed)
            remove_created(settings.key_dir, keys_existed)
            if settings.storage.db_url:
                _drop_tables(settings.storage.db_url)
        except Exception as cleanup:
            raise BackupError(f"{failure}; removing what was written failed too: {cleanup}") from failure
        raise


def _check_restored(infile: Path, settings: Settings, contents: _Contents, by: str) -> RestoreSummary:
    """Open the restored archive, anchor and verify it, and record the restore in its audit trail."""
    pacs = open_pacs(settings)
    try:
        pacs.audit.anchor_newest()
        report = pacs.archive.verify()
        chain = pacs.audit.verify()
        summary = RestoreSummary(
            settings,
            report.checked,
            contents.manifest["rows"],
            contents.head["created_at"],
            damaged=[f"{uid}: {problem}" for uid, problem in report.damaged] + report.inconsistent,
            audit_problems=chain.problems,
        )
        pacs.audit.append(
            events.restore_done(
                by=by,
                ok=summary.ok,
                file=str(infile.resolve()),
                backup_of=summary.created_at,
                objects=summary.objects,
                damaged=len(summary.damaged),
            )
        )
    finally:
        pacs.close()
    return summary
