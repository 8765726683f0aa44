"""The encrypted blob store: one file per object, under a random name, written durably.

Layout under the blob root::

    ab/ab<30 hex>.blob       a blob, named by its random 128-bit id
    tmp/<random>.part        partial blobs of format 1 (older versions wrote there first)

A blob is written straight under its final name and flushed once, with ``fdatasync``,
by :meth:`BlobWriter.commit`; where the file system does not make a new entry durable
with its file (see :mod:`storage.durable`) the shard directory is flushed too. A crash
before that leaves an *incomplete* blob, one without its authenticated last chunk,
which :meth:`BlobStore.recover` tells apart from a complete one. Each blob carries its
own wrapped data key, so a complete blob can be read and re-indexed without the index.
File names never tie a blob to a patient or a UID.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from storage import crypto, durable
from storage.errors import PacsError
from storage.keys import KeyRing


class NotRecoverableError(PacsError):
    """A blob that cannot be read without its index row."""


_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class BlobRef:
    """Everything needed to find, decrypt and check one blob; kept in the index."""

    blob_id: str
    key_version: int
    wrapped_key: bytes
    size: int
    sha256: str


class BlobWriter:
    """Streams plaintext into a new encrypted blob under its final name.

    Nothing is durable until :meth:`commit`; :meth:`abort` removes the file.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self._dek = crypto.new_data_key()
        self._key_version = store.keyring.current_version
        identity = self.blob_id.encode()
        self._wrapped = crypto.wrap_key(store.keyring.kek(self._key_version), self._dek, identity)
        slot = crypto.encode_key_slot(self._key_version, self._wrapped)
        self._encryptor = crypto.StreamEncryptor(self._dek, identity, slot)
        self._digest = hashlib.sha256()
        self._size = 0
        self._sealed = False
        self.path = store.path_of(self.blob_id)
        store.ensure_shard(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    @property
    def size(self) -> int:
        """Plaintext bytes written so far."""
        return self._size

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the plaintext written so far."""
        return self._digest.hexdigest()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append plaintext."""
        assert self._file is not None and not self._sealed, "blob writer is closed"
        self._digest.update(data)
        self._size += len(data)
        sealed = self._encryptor.update(data)
        if sealed:
            self._file.write(sealed)

    def seal(self) -> None:
        """Write the authenticated last chunk; the blob is complete but not yet durable."""
        assert self._file is not None, "blob writer is closed"
        if not self._sealed:
            self._file.write(self._encryptor.finalize())
            self._file.flush()
            self._sealed = True

    def reference(self) -> BlobRef:
        """The reference of the sealed blob (it is durable once :meth:`commit` returns)."""
        assert self._sealed, "seal the blob first"
        return BlobRef(self.blob_id, self._key_version, self._wrapped, self._size, self.sha256)

    def seal_beside(self, purpose: str, data: bytes) -> bytes:
        """`data` sealed beside this blob for `purpose` (see :func:`storage.crypto.seal_beside`)."""
        return crypto.seal_beside(self._dek, self.blob_id.encode(), purpose, data)

    def commit(self) -> BlobRef:
        """Seal the blob and flush it to the device; return its reference."""
        assert self._file is not None, "blob writer is closed"
        try:
            self.seal()
            durable.flush_data(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
        if not self._store.entry_durable:
            durable.flush_directory(self.path.parent)
        return self.reference()

    def abort(self) -> None:
        """Discard the blob (it was never acknowledged)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self.abort()


class _ChunkReader(io.RawIOBase):
    """A read-only raw stream over an iterator of plaintext chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


class BlobStore:
    """Encrypted blobs under one root directory, keyed by a :class:`KeyRing`."""

    def __init__(self, root: Path, keyring: KeyRing) -> None:
        self.root = root
        self.keyring = keyring
        self.temp_dir = root / "tmp"
        self.entry_durable = durable.entry_durable_with_file(root)

    @classmethod
    def create(cls, root: Path, keyring: KeyRing) -> BlobStore:
        """Create the blob root (0700) and its shard directories, durably."""
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for shard in range(256):
            (root / f"{shard:02x}").mkdir(mode=0o700, exist_ok=True)
            durable.flush_directory(root / f"{shard:02x}")
        durable.flush_directory(root)
        return cls(root, keyring)

    def path_of(self, blob_id: str) -> Path:
        """The file of `blob_id`; raise ValueError for anything but a 32-hex-digit id."""
        if not _BLOB_ID.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / f"{blob_id}.blob"

    def ensure_shard(self, shard: Path) -> None:
        """Create a shard directory durably if it does not exist (they are made at creation)."""
        if not shard.is_dir():
            shard.mkdir(mode=0o700, exist_ok=True)
            durable.flush_directory(shard.parent)

    def writer(self) -> BlobWriter:
        """Start a new blob."""
        return BlobWriter(self)

    def read(self, ref: BlobRef) -> Iterator[bytes]:
        """Yield the authenticated plaintext of `ref`, chunk by chunk.

        Raises :class:`storage.crypto.IntegrityError` if the blob was altered,
        truncated or swapped, and FileNotFoundError if it is gone.
        """
        dek = self._data_key(ref)
        with open(self.path_of(ref.blob_id), "rb") as source:
            yield from crypto.decrypt_stream(source, dek, ref.blob_id.encode())

    def open_beside(self, ref: BlobRef, purpose: str, sealed: bytes) -> bytes:
        """What was sealed beside the blob of `ref` for `purpose`; IntegrityError if it was altered."""
        return crypto.open_beside(self._data_key(ref), ref.blob_id.encode(), purpose, sealed)

    def seal_beside(self, ref: BlobRef, purpose: str, data: bytes) -> bytes:
        """`data` sealed beside the stored blob of `ref` for `purpose`."""
        return crypto.seal_beside(self._data_key(ref), ref.blob_id.encode(), purpose, data)

    def _data_key(self, ref: BlobRef) -> bytes:
        return crypto.unwrap_key(self.keyring.kek(ref.key_version), ref.wrapped_key, ref.blob_id.encode())

    def read_range(self, ref: BlobRef, start: int, end: int) -> Iterator[bytes]:
        """Yield the plaintext bytes `start` .. `end` (exclusive) of `ref`, decrypting only their chunks.

        Each chunk is authenticated; raises as :meth:`read` does (the blob's length is
        checked against ``ref.size``).
        """
        identity = ref.blob_id.encode()
        dek = self._data_key(ref)
        end = min(end, ref.size)
        if start >= end:
            return
        with open(self.path_of(ref.blob_id), "rb") as source:
            chunk_size = crypto.read_header(source)[1]
            source.seek(0)
            first = start // chunk_size
            chunks = crypto.decrypt_chunks(source, dek, identity, first, (end - 1) // chunk_size, ref.size)
            at = first * chunk_size
            for chunk in chunks:
                yield chunk[max(0, start - at) : end - at]
                at += len(chunk)

    def open(self, ref: BlobRef) -> BinaryIO:
        """A buffered file object over the plaintext of `ref`, authenticated as it is read."""
        return io.BufferedReader(_ChunkReader(self.read(ref)), buffer_size=crypto.CHUNK_SIZE)

    def delete(self, blob_id: str) -> None:
        """Remove a blob if it exists."""
        self.path_of(blob_id).unlink(missing_ok=True)

    def blob_ids(self) -> Iterator[str]:
        """Yield the id of every finished blob on disk."""
        for path in self.root.glob("??/*.blob"):
            if _BLOB_ID.match(path.stem):
                yield path.stem

    def temp_files(self) -> list[Path]:
        """Partial blobs of format 1 left in the temp directory."""
        return sorted(self.temp_dir.glob("*.part"))

    def age_seconds(self, blob_id: str) -> float:
        """Seconds since the blob was last written to (inf if it is gone)."""
        try:
            return time.time() - self.path_of(blob_id).stat().st_mtime
        except FileNotFoundError:
            return math.inf

    def embedded_ref(self, blob_id: str) -> BlobRef:
        """The reference a blob carries in its own key slot (size and SHA-256 left empty).

        Raises :class:`NotRecoverableError` for a format-1 blob (its key is only in the
        index), :class:`~storage.crypto.IntegrityError` for a damaged header and
        FileNotFoundError if the blob is gone.
        """
        with open(self.path_of(blob_id), "rb") as source:
            version = crypto.read_header(source)[0]
            if version < 2:
                raise NotRecoverableError("a format-1 blob keeps its key only in the index")
            key_version, wrapped = crypto.read_key_slot(source)
        return BlobRef(blob_id, key_version, wrapped, 0, "")
