"""The archive facade: receive, store, open, find, delete and verify DICOM objects.

:class:`Archive` ties the encrypted :class:`~storage.blobs.BlobStore` to the index
:class:`~storage.db.Database`. Objects come in through :meth:`Archive.receive` (an
:class:`~storage.ingest.IncomingObject` fed as bytes arrive) or :meth:`Archive.store`
(a file); either returns only once the blob is flushed to the device, so a caller may
acknowledge the object then. The index commit is not flushed: the blob is the source of
truth, and :mod:`storage.reindex` restores index rows a crash lost. Writers hold a
shared lock on ``<blobs>/lock``; clean-ups that need no writer take it exclusively.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset
from sqlalchemy import Connection, Select, select
from sqlalchemy import exc as sa_exc

from storage import index, matching, search, trash, verify
from storage.blobs import BlobRef, BlobStore
from storage.db import Database
from storage.errors import (
    ArchiveError,
    IndexUnavailableError,
    NotFoundError,
    ObjectTooLargeError,
    OutOfSpaceError,
)
from storage.framemap import FrameMap
from storage.frames import FrameReader
from storage.header import HeaderError, InstanceHeader, is_valid_uid
from storage.index import StoreOutcome, StoreResult
from storage.ingest import IncomingObject
from storage.json_texts import JsonTexts
from storage.locks import WriterLock
from storage.models import Instance, Patient, Series, Study
from storage.records import DeletedStudy, InstanceInfo, SeriesImage
from storage.verify import VerifyReport
from storage.visibility import PurgeMark

READ_SIZE = 1 << 20


class Archive:
    """Encrypted, indexed storage of DICOM objects."""

    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        *,
        min_free_bytes: int = 0,
        max_object_bytes: int = 0,
        max_header_bytes: int = 1 << 20,
    ) -> None:
        self.database = database
        self._blobs = blobs
        self.min_free_bytes = min_free_bytes
        self.max_object_bytes = max_object_bytes
        self.max_header_bytes = max_header_bytes
        self._writer_lock = WriterLock(blobs.root / "lock")
        self._unindexed_guard = threading.Lock()
        self._ids = index.IdCache()
        self._purges = PurgeMark(blobs.root / "purges")
        self._unindexed: set[str] = set()
        self.flusher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-flush")
        self._frames = FrameReader(database, blobs, max_header_bytes)
        self.json_texts = JsonTexts(database, blobs, self._frames)

    def hold_writer_lock(self) -> None:
        """Take the shared writer lock now, not at the first store (a server does, so clean-ups wait)."""
        self._writer_lock.hold_shared()

    def close(self) -> None:
        """Release the writer lock and the database connections."""
        self.flusher.shutdown(wait=True)
        self._writer_lock.close()
        self.database.dispose()

    def check_space(self, size: int = 0) -> None:
        """Raise :class:`OutOfSpaceError` if writing `size` more bytes would go below the watermark."""
        free = shutil.disk_usage(self._blobs.root).free
        if free - size < self.min_free_bytes:
            raise OutOfSpaceError(
                f"only {free // 2**20} MiB free, below the {self.min_free_bytes // 2**20} MiB watermark"
            )

    def receive(self) -> IncomingObject:
        """Start receiving one DICOM Part 10 object, fed with :meth:`IncomingObject.write`."""
        self.hold_writer_lock()
        return IncomingObject(self)

    def store(self, path: Path) -> StoreResult:
        """Store the DICOM Part 10 file at `path` durably and index it.

        Raises :class:`~storage.header.HeaderError` for a file that is not a complete,
        valid DICOM object, :class:`ObjectTooLargeError` and :class:`OutOfSpaceError` as
        configured, :class:`IndexUnavailableError` as :meth:`IncomingObject.finish` does.
        """
        size = path.stat().st_size
        if self.max_object_bytes and size > self.max_object_bytes:
            limit = self.max_object_bytes
            raise ObjectTooLargeError(f"object of {size} bytes exceeds the {limit}-byte limit")
        self.check_space(size)
        incoming = self.receive()
        try:
            with open(path, "rb") as source:
                while (chunk := source.read(READ_SIZE)) and incoming.error is None:
                    incoming.write(chunk)
        except BaseException:
            incoming.abort()
            raise
        return incoming.finish()

    def version_with(self, sop_uid: str, sha256: str) -> int | None:
        """The latest version of `sop_uid`, current or not, that holds exactly `sha256`, if any.

        An index that cannot be asked answers None: the object is then stored, and a
        duplicate is recognised when it is indexed.
        """
        try:
            with self.database.engine.connect() as connection:
                return index.held_version(connection, sop_uid, sha256)
        except sa_exc.DBAPIError:
            return None

    def index_blob(
        self,
        header: InstanceHeader,
        ref: BlobRef,
        *,
        received_at: datetime | None = None,
        before_commit: Callable[[Connection], object] | None = None,
        frame_map: bytes | None = None,
    ) -> tuple[int, StoreOutcome]:
        """Commit the index rows of a blob (not flushed: the blob is the source of truth).

        `before_commit` runs between writing the rows and committing them, on their connection:
        the store path waits there for the blob to be durable, so no row ever points at a blob
        that could still be lost. Retries once if a cached patient, study or series row vanished meanwhile.
        """
        if self._purges.changed():
            self._ids.clear()  # another process purged rows whose ids the cache may hold
        for attempt in (1, 2):
            try:
                with self.database.write_connection(durable=False) as connection:
                    version, outcome, learned = index.add_instance(
                        connection, header, ref, self._ids, received_at=received_at, frame_map=frame_map
                    )
                    if before_commit is not None:
                        before_commit(connection)
                self._ids.remember(learned)
                return version, outcome
            except sa_exc.IntegrityError:
                self._ids.clear()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def blob_referenced(self, blob_id: str) -> bool | None:
        """Whether an index row references `blob_id`; None if the index cannot be asked."""
        try:
            with self.database.read() as session:
                found = session.scalar(select(Instance.id).where(Instance.blob_id == blob_id).limit(1))
        except sa_exc.DBAPIError:
            return None
        return found is not None

    def discard_duplicate(self, blob_id: str) -> bool:
        """Delete a blob whose bytes the index holds under another blob; False if it was kept.

        A blob that a row references after all (another process indexed this very blob
        meanwhile), or that cannot be checked, is kept.
        """
        if self.blob_referenced(blob_id) is not False:
            return False
        self._blobs.delete(blob_id)
        return True

    def indexed_blob_ids(self, among: set[str] | None = None) -> set[str]:
        """The blob ids the index references (of those `among`, or all)."""
        query = select(Instance.blob_id)
        with self.database.read() as session:
            if among is None:
                return set(session.scalars(query))
            found: set[str] = set()
            ids = sorted(among)
            for start in range(0, len(ids), 500):
                found.update(session.scalars(query.where(Instance.blob_id.in_(ids[start : start + 500]))))
            return found

    def remember_unindexed(self, blob_id: str) -> None:
        """Note a durable blob whose index commit failed, for the next sweep to index first."""
        with self._unindexed_guard:
            self._unindexed.add(blob_id)

    def take_unindexed(self) -> set[str]:
        """The blobs noted by :meth:`remember_unindexed` since the last call."""
        with self._unindexed_guard:
            taken, self._unindexed = self._unindexed, set()
        return taken

    def instance(self, sop_uid: str, version: int | None = None) -> InstanceInfo:
        """The index entry of `sop_uid` (its current version unless `version` is given)."""
        if not is_valid_uid(sop_uid):
            raise NotFoundError(f"no instance {sop_uid!r}")
        query = _info_query().where(Instance.sop_uid == sop_uid)
        query = query.where(Instance.is_current.is_(True) if version is None else Instance.version == version)
        with self.database.read() as session:
            row = session.execute(query).one_or_none()
        if row is None:
            raise NotFoundError(f"no instance {sop_uid}" + ("" if version is None else f" version {version}"))
        return _info(*row)

    def open(self, sop_uid: str, version: int | None = None) -> BinaryIO:
        """A file object streaming the exact bytes received for `sop_uid`.

        Reading raises :class:`~storage.crypto.IntegrityError` if the blob was altered.
        """
        return self._blobs.open(self.instance(sop_uid, version).ref)

    def read_instance(self, info: InstanceInfo) -> Iterator[bytes]:
        """Yield the exact bytes received for the indexed object `info`, chunk by chunk.

        Raises :class:`~storage.crypto.IntegrityError` if the blob was altered, and
        :class:`NotFoundError` if it is gone.
        """
        try:
            yield from self._blobs.read(info.ref)
        except FileNotFoundError:
            raise NotFoundError(f"the stored object of {info.sop_uid} is missing") from None

    def blob_file(self, blob_id: str) -> Path:
        """Where the encrypted blob `blob_id` lies (for a backup, which copies it as it is)."""
        return self._blobs.path_of(blob_id)

    def has_blob(self, blob_id: str) -> bool:
        """Whether the blob `blob_id` is on disk, finished."""
        return self._blobs.path_of(blob_id).exists()

    def open_instance(self, info: InstanceInfo) -> BinaryIO:
        """A file object over the bytes of `info`, authenticated as it is read."""
        return self._blobs.open(info.ref)

    def frame_map(self, info: InstanceInfo) -> FrameMap:
        """Where the header and the frames of `info` lie; see :mod:`storage.framemap`."""
        return self._frames.frame_map(info)

    def frame_bytes(self, info: InstanceInfo, number: int) -> bytes:
        """The stored bytes of frame `number` (from 1) of `info`: native samples or fragments joined.

        Only their chunks are decrypted. Raises :class:`~storage.framemap.NoSuchFrameError` (a
        NotFoundError) for a frame the object lacks, :class:`~storage.framemap.FrameMapError`
        when its frames cannot be told apart, and IntegrityError if the blob was altered.
        """
        return self._frames.frame_bytes(info, number)

    def dataset_without_pixels(self, info: InstanceInfo) -> Dataset:
        """The data set of `info` before Pixel Data, with its file meta, reading only the chunks before it."""
        return self._frames.dataset_without_pixels(info)

    def data_sets(self, infos: list[InstanceInfo]) -> Iterator[Dataset]:
        """The data sets of `infos` before Pixel Data, in order, without file meta; read ahead in threads."""
        return self._frames.data_sets(infos)

    def find(
        self, level: str, identifier: Dataset, *, limit: int | None = None, offset: int = 0
    ) -> list[Dataset]:
        """Match `identifier` at `level` (PATIENT, STUDY, SERIES or IMAGE); see :mod:`storage.matching`."""
        with self.database.read() as session:
            return list(matching.find(session, level, identifier, limit=limit, offset=offset))

    def search_studies(self, query: search.StudyQuery) -> list[search.StudyRow]:
        """One page of the study list's search; see :mod:`storage.search`."""
        with self.database.read() as session:
            return search.find_studies(session, query)

    def study_instances(self, study_uid: str) -> list[InstanceInfo]:
        """The current instances of a study, ordered by series and instance number."""
        query = (
            _info_query()
            .where(Study.study_uid == study_uid, Instance.is_current.is_(True))
            .order_by(Series.series_number, Series.id, Instance.instance_number, Instance.id)
        )
        with self.database.read() as session:
            rows = session.execute(query).all()
        if not rows:
            raise NotFoundError(f"no study {study_uid}")
        return [_info(*row) for row in rows]

    def series_images(self, study_uid: str, series_uid: str) -> list[SeriesImage]:
        """The current instances of one series in display order, with their SOP Class and image sizes."""
        query = (
            # SeriesImage's fields are the names of Instance's columns, in the order of its constructor.
            select(*(getattr(Instance, field.name) for field in fields(SeriesImage)))
            .join(Series, Instance.series_fk == Series.id)
            .join(Study, Series.study_fk == Study.id)
            .where(
                Study.study_uid == study_uid,
                Series.series_uid == series_uid,
                Instance.is_current.is_(True),
                Study.deleted_at.is_(None),
            )
            .order_by(Instance.instance_number, Instance.id)
        )
        with self.database.read() as session:
            return [SeriesImage(*row) for row in session.execute(query)]

    def current_instances(self, sop_uids: list[str]) -> list[InstanceInfo]:
        """The current versions of `sop_uids` (those that exist), in one query."""
        query = _info_query().where(Instance.sop_uid.in_(sop_uids), Instance.is_current.is_(True))
        with self.database.read() as session:
            return [_info(*row) for row in session.execute(query.order_by(Instance.id))]

    def delete_study(self, study_uid: str) -> DeletedStudy:
        """Delete a study at once (trash or not), every version of its instances and their blobs."""
        self.hold_writer_lock()
        deleted = trash.delete_now(self.database, self._blobs.delete, study_uid)
        self._forget_purged()
        return deleted

    def purge_study(self, study_uid: str, change: trash.Change) -> int:
        """Destroy a study in the trash and every version's blob; see :func:`storage.trash.purge`."""
        self.hold_writer_lock()
        try:
            return trash.purge(self.database, self._blobs.delete, study_uid, change)
        finally:
            self._forget_purged()

    def _forget_purged(self) -> None:
        """Forget cached row ids here, and tell the other processes to forget theirs."""
        self._ids.clear()
        self._purges.touch()

    def verify(self, *, cleanup: bool = False, spool: Path | None = None) -> VerifyReport:
        """Check every stored object and the index; see :func:`storage.verify.verify`."""
        return verify.verify(self, cleanup=cleanup, spool=spool)

    def exclusive(self) -> AbstractContextManager[bool]:
        """Hold the writer lock exclusively if no other process writes; yield whether it is held."""
        return self._writer_lock.exclusive()


def _info_query() -> Select[tuple[Instance, str, str, str]]:
    """Instances with the UIDs of their series and study and their patient's ID, outside the trash."""
    return (
        select(Instance, Series.series_uid, Study.study_uid, Patient.patient_id)
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .join(Patient, Study.patient_fk == Patient.id)
        .where(Study.deleted_at.is_(None))
    )


def _info(instance: Instance, series_uid: str, study_uid: str, patient_id: str) -> InstanceInfo:
    return InstanceInfo(
        sop_uid=instance.sop_uid,
        sop_class_uid=instance.sop_class_uid,
        version=instance.version,
        transfer_syntax=instance.transfer_syntax,
        size=instance.size,
        sha256=instance.sha256,
        study_uid=study_uid,
        series_uid=series_uid,
        patient_id=patient_id,
        ref=index.blob_ref(instance),
    )


__all__ = [
    "Archive",
    "ArchiveError",
    "DeletedStudy",
    "HeaderError",
    "IncomingObject",
    "IndexUnavailableError",
    "InstanceInfo",
    "NotFoundError",
    "ObjectTooLargeError",
    "OutOfSpaceError",
    "StoreOutcome",
    "StoreResult",
    "VerifyReport",
]
