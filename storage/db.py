"""The index database: the schema, the migrations, and read and write sessions (SQLCipher or PostgreSQL).

SQLite is the embedded default and is always opened through SQLCipher with a raw
256-bit key, so the file on disk holds no readable text. PostgreSQL is reached through
psycopg. The schema is created and upgraded only by the Alembic migrations in
``storage/migrations``; the models below are what the code reads and writes.
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
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    false,
    inspect,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from storage import engines

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic's command API is not thread-safe; migrations in one process take turns.
_MIGRATION_LOCK = threading.Lock()


def as_utc(moment: datetime) -> datetime:
    """`moment` with its UTC zone: SQLite hands back the naive UTC datetimes it was given."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _bytewise(length: int) -> String:
    """A string column that sorts bytewise on PostgreSQL too, so prefix ranges use the index."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of every table in the index."""


class Patient(Base):
    """A patient, identified by Patient ID and issuer (or by name and birth date without one)."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_key: Mapped[str] = mapped_column(String(400), unique=True)
    patient_id: Mapped[str] = mapped_column(_bytewise(64), index=True)
    issuer: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(324))
    name_norm: Mapped[str] = mapped_column(_bytewise(324), index=True)
    birth_date: Mapped[str] = mapped_column(String(8), index=True)
    sex: Mapped[str] = mapped_column(String(16))


class Study(Base):
    """A study, with the attributes needed by C-FIND and the study list, and its counts."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str] = mapped_column(String(8))
    study_time: Mapped[str] = mapped_column(String(16))
    accession: Mapped[str] = mapped_column(_bytewise(16), index=True)
    study_id: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(64))
    referring_name: Mapped[str] = mapped_column(String(324))
    referring_norm: Mapped[str] = mapped_column(_bytewise(324))
    modalities: Mapped[str] = mapped_column(String(200))
    # Patient's Age (0010,1010) as the study recorded it ("052Y"), empty when absent.
    patient_age: Mapped[str] = mapped_column(String(4), default="", server_default="")
    num_series: Mapped[int] = mapped_column(Integer, default=0)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    # Frames of the current instances (an instance without Number of Frames is one).
    num_frames: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Timezone Offset From UTC ("-0500") of the first object that carries one; None if none did.
    timezone_offset: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Series(Base):
    """A series within a study, with its instance count."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str] = mapped_column(String(16), index=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(64))
    body_part: Mapped[str] = mapped_column(String(16))
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    num_frames: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PatientWord(Base):
    """One word of a patient's name, folded (``storage.search.words``), for the study list's search.

    The primary key (word, patient) serves prefix ranges of a word.
    """

    __tablename__ = "patient_words"

    word: Mapped[str] = mapped_column(_bytewise(64), primary_key=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"), primary_key=True, index=True)


class Instance(Base):
    """One stored version of a SOP instance and the blob that holds its bytes."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("sop_uid", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    is_current: Mapped[bool] = mapped_column(Boolean)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    frames: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    bits_allocated: Mapped[int | None] = mapped_column(Integer)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Native Pixel Data shorter than the image attributes call for (stored, answered with a warning).
    pixel_data_short: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Where the header and each frame lie in the blob (storage.framemap); None until first computed.
    frame_map: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class AuditRecord(Base):
    """One row of the hash-chained audit trail (written only by ``pacs.core.audit``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    recorded_at: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(1))
    outcome: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[str] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Node(Base):
    """An enrolled DICOM node: who may associate, from where, with which certificate and rights."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    host: Mapped[str] = mapped_column(String(64))
    port: Mapped[int | None] = mapped_column(Integer)
    permissions: Mapped[str] = mapped_column(String(64))
    cert_fingerprint: Mapped[str] = mapped_column(String(64))
    cert_subject: Mapped[str] = mapped_column(String(256))
    cert_pem: Mapped[str] = mapped_column(Text)
    cert_issued: Mapped[bool] = mapped_column(Boolean)
    plaintext: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A web user: password hash, roles and TOTP second factor (``pacs.core.accounts``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    roles: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(256))
    must_change_password: Mapped[bool] = mapped_column(Boolean)
    disabled: Mapped[bool] = mapped_column(Boolean)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_confirmed: Mapped[bool] = mapped_column(Boolean)
    last_totp_step: Mapped[int] = mapped_column(BigInteger)
    recovery_codes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Login failures of an account, an address or both, when it may try again (``pacs.core.throttle``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    retry_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Attempts admitted and not yet settled (they count as failures until then), and until when.
    pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pending_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A web session: the SHA-256 of its cookie token, its user and data (``webviewer.sessions``)."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str | None] = mapped_column(String(64), index=True)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AccessToken(Base):
    """A personal access token for DICOMweb clients: the SHA-256 of its secret, never the secret.

    ``scopes`` is a comma-separated list (``read``, ``store``); ``prefix`` is the start of the
    secret, shown in lists so a user can tell tokens apart (``pacs.core.tokens``).
    """

    __tablename__ = "access_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_fk: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_from: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(64))


# A patient's studies newest first, and all studies newest first, with what the study list's
# search reads while it walks them (storage.search): no row is read for that.
Index("ix_studies_patient_date", Study.patient_fk, Study.study_date, Study.study_time)
Index("ix_studies_newest", Study.study_date, Study.study_time, Study.id, Study.patient_fk)
Index("ix_instances_series_current", Instance.series_fk, Instance.is_current)


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
