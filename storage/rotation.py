"""Key rotation: re-wrapping every object's data key under the newest key-encryption key.

Blobs are never rewritten: only the wrapped data keys in the index change, one committed
batch at a time. A rotation that stops half-way leaves every object readable (each row
names the KEK version that wraps its key), and running it again carries on where it
stopped. Servers keep running throughout; their :class:`~storage.keys.KeyRing` picks up
the new KEK for the objects they store next.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, update

from storage import crypto
from storage.db import Database
from storage.keys import KeyRing
from storage.models import Instance

DEFAULT_BATCH = 256


def key_usage(database: Database) -> dict[int, int]:
    """How many data keys each KEK version wraps, e.g. ``{1: 120, 2: 4000}``."""
    with database.read() as session:
        rows = session.execute(select(Instance.key_version, func.count()).group_by(Instance.key_version))
        return {version: count for version, count in rows}


def pending(database: Database, version: int) -> int:
    """How many data keys are still wrapped by a KEK older than `version`."""
    with database.read() as session:
        return session.scalar(select(func.count()).where(Instance.key_version < version)) or 0


def rewrap(
    database: Database,
    keyring: KeyRing,
    *,
    batch: int = DEFAULT_BATCH,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Re-wrap every data key not under the ring's current KEK; return how many were.

    Each batch is one transaction. `on_batch` is called with the size of every
    committed batch. Raises :class:`storage.crypto.IntegrityError` if a wrapped key
    fails authentication (the row is left as it was).
    """
    target = keyring.current_version
    done = 0
    while True:
        with database.write() as session:
            rows = session.execute(
                select(Instance.id, Instance.blob_id, Instance.key_version, Instance.wrapped_key)
                .where(Instance.key_version < target)
                .order_by(Instance.id)
                .limit(batch)
            ).all()
            for row_id, blob_id, version, wrapped in rows:
                identity = blob_id.encode()
                dek = crypto.unwrap_key(keyring.kek(version), wrapped, identity)
                rewrapped = crypto.wrap_key(keyring.kek(target), dek, identity)
                session.execute(
                    update(Instance)
                    .where(Instance.id == row_id, Instance.key_version == version)
                    .values(key_version=target, wrapped_key=rewrapped)
                )
        if not rows:
            return done
        done += len(rows)
        if on_batch is not None:
            on_batch(len(rows))
