"""The encrypted blob store: one file per object, under a random name, written durably.

Layout under the blob root::

    tmp/<random>.part        a blob being written (always garbage after a crash)
    ab/ab<30 hex>.blob       a finished blob, named by its random 128-bit id

A blob is written to ``tmp/``, fsynced, renamed into its shard and the shard directory
is fsynced, so once :meth:`BlobWriter.commit` returns the blob survives a crash. The
index is the only place that ties a blob to a patient or a UID; file names never do.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from storage import crypto
from storage.keys import KeyRing

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")
_READ_SIZE = 1 << 20


@dataclass(frozen=True)
class BlobRef:
    """Everything needed to find, decrypt and check one blob; kept in the index."""

    blob_id: str
    key_version: int
    wrapped_key: bytes
    size: int
    sha256: str


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """Streams plaintext into a new encrypted blob; nothing is visible until :meth:`commit`."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self._dek = crypto.new_data_key()
        self._encryptor = crypto.StreamEncryptor(self._dek, self.blob_id.encode())
        self._digest = hashlib.sha256()
        self._size = 0
        self._temp = store.temp_dir / f"{secrets.token_hex(16)}.part"
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    @property
    def size(self) -> int:
        """Plaintext bytes written so far."""
        return self._size

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the plaintext written so far."""
        return self._digest.hexdigest()

    def write(self, data: bytes) -> None:
        """Append plaintext."""
        assert self._file is not None, "blob writer is closed"
        self._digest.update(data)
        self._size += len(data)
        self._file.write(self._encryptor.update(data))

    def copy_from(self, source: BinaryIO) -> None:
        """Append everything readable from `source`, a chunk at a time."""
        while chunk := source.read(_READ_SIZE):
            self.write(chunk)

    def commit(self) -> BlobRef:
        """Seal, fsync and move the blob into place; return its reference."""
        assert self._file is not None, "blob writer is closed"
        try:
            self._file.write(self._encryptor.finalize())
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
        final = self._store.path_of(self.blob_id)
        try:
            self._store.ensure_shard(final.parent)
            os.rename(self._temp, final)
            _fsync_dir(final.parent)
        except BaseException:
            self._temp.unlink(missing_ok=True)
            raise
        version = self._store.keyring.current_version
        wrapped = crypto.wrap_key(self._store.keyring.kek(version), self._dek, self.blob_id.encode())
        return BlobRef(self.blob_id, version, wrapped, self._size, self.sha256)

    def abort(self) -> None:
        """Discard the partial blob."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)

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

    @classmethod
    def create(cls, root: Path, keyring: KeyRing) -> BlobStore:
        """Create the blob root (0700) and its temp directory."""
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (root / "tmp").mkdir(mode=0o700, exist_ok=True)
        for shard in range(256):
            (root / f"{shard:02x}").mkdir(mode=0o700, exist_ok=True)
        _fsync_dir(root)
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
            _fsync_dir(shard.parent)

    def writer(self) -> BlobWriter:
        """Start a new blob."""
        return BlobWriter(self)

    def read(self, ref: BlobRef) -> Iterator[bytes]:
        """Yield the authenticated plaintext of `ref`, chunk by chunk.

        Raises :class:`storage.crypto.IntegrityError` if the blob was altered,
        truncated or swapped, and FileNotFoundError if it is gone.
        """
        dek = crypto.unwrap_key(self.keyring.kek(ref.key_version), ref.wrapped_key, ref.blob_id.encode())
        with open(self.path_of(ref.blob_id), "rb") as source:
            yield from crypto.decrypt_stream(source, dek, ref.blob_id.encode())

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
        """Partial blobs left in the temp directory."""
        return sorted(self.temp_dir.glob("*.part"))
