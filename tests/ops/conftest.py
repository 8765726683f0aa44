"""Fixtures of the use case tests: archives to back up, a passphrase file, a database to restore into."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pacs.core.config import Settings
from pacs.core.context import initialise
from tests.ops.backup_helpers import (
    PASSPHRASE,
    _fill,
)


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


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
