"""The engines under the index: SQLCipher tuned for WAL and explicit BEGIN, and a writer queue.

SQLite is opened through SQLCipher with a raw 256-bit key. Writers take turns in
:class:`WriterQueue` (a thread lock, then an ``flock`` shared by every process), and
begin with ``BEGIN IMMEDIATE``, so concurrent writers queue rather than fail.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import QueuePool

from storage.errors import PacsError

URL_FORM = "postgresql://USER@HOST:PORT/DATABASE"


class IndexUnreachableError(PacsError):
    """The index database URL cannot be read, or the database at it cannot be reached."""


def sqlite_url(path: Path, key: bytes) -> URL:
    """The SQLCipher URL of `path`, opened with the raw 256-bit `key`."""
    return URL.create("sqlite+pysqlcipher", password=f"x'{key.hex()}'", database=str(path))


def normalise_url(url: str) -> URL:
    """`url` parsed, PostgreSQL URLs pointed at psycopg; :class:`IndexUnreachableError` if unreadable."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise IndexUnreachableError(
            f"the index database URL cannot be read; its form is {URL_FORM}"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def check_reachable(engine: Engine) -> None:
    """Connect to `engine` once; a failure is an :class:`IndexUnreachableError` with its first line."""
    try:
        engine.connect().close()
    except DBAPIError as exc:
        said = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        where = f"{engine.url.host or 'localhost'}:{engine.url.port or 5432}/{engine.url.database or ''}"
        raise IndexUnreachableError(f"the index database at {where} cannot be reached: {said}") from None


def tune_sqlite(engine: Engine, *, synchronous: str = "FULL") -> None:
    """WAL mode flushed at every commit (or not: NORMAL), a busy timeout, and explicit BEGIN."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("pacs_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_engine(path: Path, key: bytes, synchronous: str) -> Engine:
    """An engine on the SQLCipher file `path`, tuned by :func:`tune_sqlite`."""
    # The pysqlcipher dialect defaults to SingletonThreadPool, which closes the
    # connections of other threads once more than pool_size threads use it.
    engine = create_engine(
        sqlite_url(path, key),
        poolclass=QueuePool,
        pool_size=8,
        connect_args={"check_same_thread": False},
        hide_parameters=True,
    )
    tune_sqlite(engine, synchronous=synchronous)
    return engine


class WriterQueue:
    """Lets one writer at a time into SQLite: threads queue on a lock, processes on an flock.

    Waiting here wakes a writer as soon as the previous one is done, where SQLite's own
    busy handler would sleep for growing intervals.
    """

    def __init__(self, lock_path: Path) -> None:
        self._path = lock_path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Close the lock file (it is opened again by the next writer)."""
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
