"""What the archive's own machinery calls back into: the facade as :mod:`storage.ingest`,
:mod:`storage.reindex` and :mod:`storage.verify` see it.

:class:`~storage.archive.Archive` builds an :class:`~storage.ingest.IncomingObject` for
each object received and runs :func:`~storage.reindex.sweep` over its blobs; both need
the facade's parts (its blob store, the index writes, the flush pool). This protocol
names exactly those, so neither module imports the facade that imports them. Nothing
outside ``storage`` uses it: callers go through :class:`~storage.archive.Archive`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from storage.blobs import BlobRef, BlobStore
from storage.db import Database
from storage.header import InstanceHeader
from storage.index import StoreOutcome


class ArchiveParts(Protocol):
    """The archive's blob store, limits and index writes, for its ingest and sweep."""

    _blobs: BlobStore
    database: Database
    max_object_bytes: int
    max_header_bytes: int
    flusher: Executor

    def exclusive(self) -> AbstractContextManager[bool]:
        """Hold the writer lock exclusively if no other process writes; yield whether it is held."""

    def check_space(self, size: int = 0) -> None:
        """Raise OutOfSpaceError when `size` more bytes would pass the free-space watermark."""

    def version_with(self, sop_uid: str, sha256: str) -> int | None:
        """The latest version of `sop_uid`, current or not, with this content, else None."""

    def index_blob(
        self,
        header: InstanceHeader,
        ref: BlobRef,
        *,
        received_at: datetime | None = None,
        before_commit: Callable[[Connection], object] | None = None,
        frame_map: bytes | None = None,
    ) -> tuple[int, StoreOutcome]:
        """Index a durable blob; return its version and what indexing it did."""

    def blob_referenced(self, blob_id: str) -> bool | None:
        """Whether an index row references the blob (None if the index cannot be asked)."""

    def discard_duplicate(self, blob_id: str) -> bool:
        """Remove a blob that no row references; False if it was kept."""

    def indexed_blob_ids(self, among: set[str] | None = None) -> set[str]:
        """The blob ids the index references (of `among`, if given)."""

    def remember_unindexed(self, blob_id: str) -> None:
        """Note a durable blob whose indexing failed, for the next sweep."""
