"""One object on its way into the archive: checked, encrypted and indexed as its bytes arrive.

:class:`IncomingObject` is the single store path. The DICOM service feeds it P-DATA
fragments as they come off the association; ``pacs import`` and STOW-RS feed it a file.
Each piece goes to the :class:`~storage.walker.Part10Walker` (structure, header, size)
and straight into the encrypting :class:`~storage.blobs.BlobWriter`; no plaintext is
written anywhere. :meth:`IncomingObject.finish` then:

1. proves the object complete and reads its header and frame map (:mod:`storage.framemap`);
2. seals the blob and, unless the index already holds the same bytes as some version (a
   duplicate, dropped before it is flushed), flushes it with one ``fdatasync`` while the
   index rows are written and then its DICOM JSON (:mod:`storage.instance_json`, from the
   head the walk kept; building it first would hold the GIL the flush needs to start);
3. commits the index rows once the blob is durable, without flushing them: the blob is
   the source of truth, and a lost commit is re-indexed from it (:mod:`storage.reindex`).

A failure while writing (a malformed header, the size limit, a full disk) discards the
partial blob at once and is raised by :meth:`~IncomingObject.finish`; the rest of the
object is then read and ignored, so the sender can be answered with a status.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from storage.blobs import BlobRef, BlobWriter
from storage.errors import ArchiveError, IndexUnavailableError, ObjectTooLargeError, OutOfSpaceError
from storage.header import HeaderError, InstanceHeader
from storage.index import StoreOutcome, StoreResult
from storage.instance_json import PURPOSE, instance_path, text_from_head
from storage.json_texts import keep_text
from storage.parts import ArchiveParts
from storage.walker import Part10Walker

SPACE_CHECK_BYTES = 8 << 20
HEAD_KEPT = 1 << 20  # most bytes of a data set before Pixel Data kept for its DICOM JSON


class IncomingObject:
    """Receives one DICOM Part 10 object; see the module docstring."""

    def __init__(self, archive: ArchiveParts) -> None:
        self._archive = archive
        self._walker = Part10Walker(max_header=archive.max_header_bytes, keep_head=HEAD_KEPT)
        self._writer: BlobWriter | None = None
        self._error: ArchiveError | HeaderError | None = None
        self._size = 0
        self._next_space_check = 0
        self._done = False

    @property
    def error(self) -> ArchiveError | HeaderError | None:
        """Why the object will be refused, once that is known."""
        return self._error

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next piece of the object; never raises: a failure is kept for :meth:`finish`.

        After a failure the partial blob is gone and further pieces are ignored.
        """
        if self._error is not None or self._done:
            return
        try:
            self._take(data)
        except (ArchiveError, HeaderError) as exc:
            self._fail(exc)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._fail(OutOfSpaceError("disk full while writing the object"))
            else:
                self._fail(ArchiveError(f"could not write the object: {exc.strerror or exc}"))

    def _take(self, data: bytes | bytearray | memoryview) -> None:
        self._size += len(data)
        limit = self._archive.max_object_bytes
        if limit and self._size > limit:
            raise ObjectTooLargeError(f"object exceeds the {limit}-byte limit")
        if self._size >= self._next_space_check:
            self._archive.check_space()
            self._next_space_check = self._size + SPACE_CHECK_BYTES
        self._walker.feed(data)
        if self._writer is None:
            self._writer = self._archive._blobs.writer()
        self._writer.write(data)

    def _fail(self, error: ArchiveError | HeaderError) -> None:
        self._error = error
        self._discard()

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def abort(self) -> None:
        """Give up on the object (the association ended, the file could not be read)."""
        self._done = True
        self._discard()

    def finish(self, check: Callable[[InstanceHeader], None] | None = None) -> StoreResult:
        """Make the object durable and index it; raise why not (nothing is then kept).

        Raises :class:`~storage.header.HeaderError` for an incomplete or malformed
        object, :class:`ObjectTooLargeError` and :class:`OutOfSpaceError` as
        configured, and :class:`IndexUnavailableError` when the blob is durable but the
        index could not be written (the blob is kept and indexed later). `check` sees the
        header of a complete object before anything is kept; what it raises is raised.
        """
        self._done = True
        try:
            if self._error is not None:
                raise self._error
            walked = self._walker.close()
            header = walked.header()
            if check is not None:
                check(header)
            assert self._writer is not None  # the walker saw bytes, so they were written
            return self._store(self._writer, header, walked.frame_map.pack(), walked.head)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise OutOfSpaceError("disk full while writing the object") from exc
            raise
        finally:
            self._discard()

    def _store(
        self, writer: BlobWriter, header: InstanceHeader, frame_map: bytes, head: bytes | None
    ) -> StoreResult:
        archive = self._archive
        writer.seal()
        duplicate_of = archive.version_with(header.sop_uid, writer.sha256)
        if duplicate_of is not None:
            return StoreResult.of(StoreOutcome.DUPLICATE, header, duplicate_of, writer.size, writer.sha256)
        ref = writer.reference()
        # The index rows are written while the blob is flushed, and committed after.
        flushed = archive.flusher.submit(writer.commit)

        def describe_then_wait(connection: Connection) -> None:
            keep_text(connection, ref.blob_id, _sealed_text(writer, header, head))
            flushed.result()

        try:
            version, outcome = archive.index_blob(
                header, ref, before_commit=describe_then_wait, frame_map=frame_map
            )
        except BaseException as exc:
            if flushed.exception() is not None:
                raise  # not durable: the blob goes
            self._writer = None
            if isinstance(exc, sa_exc.DBAPIError):
                return self._index_failed(header, ref, exc)
            archive.remember_unindexed(ref.blob_id)
            raise
        self._writer = None
        if outcome is StoreOutcome.DUPLICATE:
            archive.discard_duplicate(ref.blob_id)
        return StoreResult.of(outcome, header, version, ref.size, ref.sha256)

    def _index_failed(self, header: InstanceHeader, ref: BlobRef, exc: sa_exc.DBAPIError) -> StoreResult:
        """After a failed index commit: succeed if it landed after all, else drop or keep the blob.

        A commit can land and still raise (the connection lost during COMMIT). If the
        index says no row references the blob, the blob goes, so a refused object leaves
        nothing behind (a full disk under the index, say); if the index cannot even be
        asked (an outage), the durable blob stays for the sweep.
        """
        archive = self._archive
        referenced = archive.blob_referenced(ref.blob_id)
        if referenced:
            current = archive.version_with(header.sop_uid, ref.sha256) or 1
            return StoreResult.of(StoreOutcome.STORED, header, current, ref.size, ref.sha256)
        if referenced is None:
            archive.remember_unindexed(ref.blob_id)
            raise IndexUnavailableError(
                "the index is unavailable: the object is kept and will be indexed when it is back"
            ) from exc
        archive._blobs.delete(ref.blob_id)
        if _disk_full(exc):
            raise OutOfSpaceError("disk full while indexing the object") from exc
        raise IndexUnavailableError("the index could not be written; the object was not stored") from exc


def _sealed_text(writer: BlobWriter, header: InstanceHeader, head: bytes | None) -> bytes | None:
    """The object's DICOM JSON sealed beside its blob; None if its head was not kept or does not convert."""
    if head is None:
        return None
    path = instance_path(header.study_uid, header.series_uid, header.sop_uid)
    try:
        text = text_from_head(head, header.transfer_syntax, path)
    except Exception:  # derived data never refuses an object: its first request writes the text instead
        return None
    return writer.seal_beside(PURPOSE, text.encode())


def _disk_full(exc: sa_exc.DBAPIError) -> bool:
    """Whether the database failed for want of disk space (SQLite and PostgreSQL wording)."""
    text = str(exc.orig)
    return "disk is full" in text or "No space left on device" in text
