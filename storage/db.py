"""The index database: the schema, the migrations, and read and write sessions (SQLCipher or PostgreSQL).

SQLite is the embedded default and is always opened through SQLCipher with a raw
256-bit key, so the file on disk holds no readable text. PostgreSQL is reached through
psycopg. The schema is created and upgraded only by the Alembic migrations in
``storage/migrations``; :mod:`storage.models` is what the code reads and writes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from storage import engines

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic's command API is not thread-safe; migrations in one process take turns.
_MIGRATION_LOCK = threading.Lock()


def as_utc(moment: datetime) -> datetime:
    """`moment` with its UTC zone: SQLite hands back the naive UTC datetimes it was given."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Database:
    """The index database: an engine plus read and write sessions.

    `lazy_engine` reaches the same database with commits that are not flushed (SQLite
    ``synchronous = NORMAL`` in WAL mode, PostgreSQL ``synchronous_commit = off``), for
    index rows that can be rebuilt from the blobs; without one, every commit is flushed.
    A flushed commit also makes every earlier lazy one durable.
    """

    def __init__(
        self, engine: Engine, *, writer_lock: Path | None = None, lazy_engine: Engine | None = None
    ) -> None:
        self.engine = engine
        self._lazy_engine = lazy_engine
        self._writer = engine.execution_options(pacs_write=True)
        self._lazy_writer = (lazy_engine or engine).execution_options(pacs_write=True)
        self._write_queue = engines.WriterQueue(writer_lock) if writer_lock is not None else None
        self._write_lock: AbstractContextManager[Any] = self._write_queue or contextlib.nullcontext()

    @classmethod
    def open(cls, url: str, *, sqlite_path: Path, sqlite_key: bytes) -> Database:
        """Open PostgreSQL at `url`, or SQLCipher at `sqlite_path` when `url` is empty."""
        if url:
            engine = create_engine(engines.normalise_url(url), pool_pre_ping=True, hide_parameters=True)
            engines.check_reachable(engine)
            lazy = create_engine(
                engines.normalise_url(url),
                pool_pre_ping=True,
                hide_parameters=True,
                connect_args={"options": "-c synchronous_commit=off"},
            )
            return cls(engine, lazy_engine=lazy)
        # SQLite gives the -wal and -shm files the mode of the database file.
        os.close(os.open(sqlite_path, os.O_RDWR | os.O_CREAT, 0o600))
        engine, lazy = (engines.sqlite_engine(sqlite_path, sqlite_key, sync) for sync in ("FULL", "NORMAL"))
        return cls(engine, writer_lock=sqlite_path.with_name(sqlite_path.name + ".writer"), lazy_engine=lazy)

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the embedded SQLCipher database."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it is rolled back on exit."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session for writing, committed on success and rolled back on error.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE`` so that concurrent
        writers queue on the busy timeout instead of failing on a lock upgrade.
        """
        with self._write_lock, Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self, *, durable: bool = True) -> Iterator[Connection]:
        """Like :meth:`write`, but a Core connection, for the hot path of storing objects.

        With `durable` False the commit is not flushed (see the class docstring).
        """
        writer = self._writer if durable else self._lazy_writer
        with self._write_lock, writer.begin() as connection:
            yield connection

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only connection whose every query sees the same committed state.

        SQLite gives each transaction a snapshot of the WAL; PostgreSQL is asked for
        REPEATABLE READ. Writers in other connections are not blocked.
        """
        options: dict[str, Any] = {}
        if not self.is_sqlite:
            options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        with self.engine.connect().execution_options(**options) as connection, connection.begin():
            yield connection

    def table_names(self) -> list[str]:
        """The tables in the database (empty for a new one)."""
        return inspect(self.engine).get_table_names()

    def revision(self) -> str | None:
        """The schema's current migration revision (None for an empty database)."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def migrate(self, revision: str = "head") -> tuple[str | None, str] | None:
        """Create or upgrade the schema to `revision` (default the newest).

        Returns the (from, to) revisions of the upgrade, from None for a new database,
        or None when the schema already was at `revision`.
        """
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with _MIGRATION_LOCK, self.engine.connect() as connection:
            target = revision
            if revision == "head":
                target = ScriptDirectory.from_config(config).get_current_head()
            current = MigrationContext.configure(connection).get_current_revision()
            if current == target:
                return None
            config.attributes["connection"] = connection
            command.upgrade(config, target)
            connection.commit()
        return current, target

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self._lazy_engine is not None:
            self._lazy_engine.dispose()
        if self._write_queue is not None:
            self._write_queue.close()
