"""Envelope encryption: AES-256-GCM data keys, key wrapping and the chunked blob stream.

Every object gets its own random 256-bit data key (DEK). The DEK is wrapped with a
key-encryption key (KEK) from :class:`storage.keys.KeyRing`; the wrapped form and the
KEK version are kept in the index, so a rotation re-wraps DEKs without touching blobs.

The blob stream follows the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár):
plaintext is cut into fixed-size chunks, each sealed with AES-GCM under a nonce made of a
random per-blob prefix, the chunk counter and a "last chunk" flag. The stream header and
the caller's identity bytes (the blob id) are authenticated with every chunk, so a
flipped byte, a reordered, dropped or appended chunk, a truncated file or a blob moved
to another name all fail authentication. Chunk *i* lies at a fixed offset, so a range of
chunks can be decrypted alone (:func:`decrypt_chunks`); the file's size, checked against
the plaintext size, says which chunk is the last.

Format 2 blobs carry their own wrapped data key in a *key slot* right after the stream
header, so a blob can be decrypted, and re-indexed, without its index row: the blob is
the source of truth. The slot is authenticated by its own wrapping (bound to the blob
id), not by the chunks. Format 1 blobs (no slot) are still read.

A value derived from an object and kept in the index (its DICOM JSON) is sealed *beside*
its blob (:func:`seal_beside`): under a key derived from the blob's data key for that
purpose, bound to the blob id, so it is as readable as the blob, key rotations included.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage.errors import PacsError

KEY_BYTES = 32
CHUNK_SIZE = 1 << 20
MAGIC = b"PACSBLOB"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_HEADER = struct.Struct(">8sBI7s")
HEADER_SIZE = _HEADER.size
_SLOT = struct.Struct(">IH")
_MAX_WRAPPED = 256
_TAG_BYTES = 16
_WRAP_NONCE_BYTES = 12


class IntegrityError(PacsError):
    """Raised when ciphertext, a wrapped key or a stream fails authentication."""


def new_data_key() -> bytes:
    """Return a fresh random 256-bit data key."""
    return AESGCM.generate_key(bit_length=256)


def wrap_key(kek: bytes, dek: bytes, identity: bytes) -> bytes:
    """Seal `dek` under `kek`, bound to `identity`; returns ``nonce || ciphertext``."""
    nonce = os.urandom(_WRAP_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, dek, b"pacs-dek\x00" + identity)


def unwrap_key(kek: bytes, wrapped: bytes, identity: bytes) -> bytes:
    """Open a key sealed by :func:`wrap_key`; raise :class:`IntegrityError` on any mismatch."""
    nonce, sealed = wrapped[:_WRAP_NONCE_BYTES], wrapped[_WRAP_NONCE_BYTES:]
    try:
        return AESGCM(kek).decrypt(nonce, sealed, b"pacs-dek\x00" + identity)
    except InvalidTag as exc:
        raise IntegrityError("wrapped data key failed authentication") from exc


def _beside_key(dek: bytes, purpose: str) -> AESGCM:
    info = b"pacs-beside\x00" + purpose.encode()
    return AESGCM(HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=info).derive(dek))


def seal_beside(dek: bytes, identity: bytes, purpose: str, data: bytes) -> bytes:
    """Seal `data` kept with the blob of `dek` and `identity`, for `purpose`: ``nonce || ciphertext``."""
    nonce = os.urandom(_WRAP_NONCE_BYTES)
    return nonce + _beside_key(dek, purpose).encrypt(nonce, data, identity)


def open_beside(dek: bytes, identity: bytes, purpose: str, sealed: bytes) -> bytes:
    """Open what :func:`seal_beside` sealed; raise :class:`IntegrityError` on any mismatch."""
    try:
        return _beside_key(dek, purpose).decrypt(
            sealed[:_WRAP_NONCE_BYTES], sealed[_WRAP_NONCE_BYTES:], identity
        )
    except InvalidTag as exc:
        raise IntegrityError(
            f"the {purpose} kept beside blob {identity.decode()} failed authentication"
        ) from exc


def encode_key_slot(key_version: int, wrapped: bytes) -> bytes:
    """The key slot of a format-2 blob: the KEK version and the data key wrapped under it."""
    return _SLOT.pack(key_version, len(wrapped)) + wrapped


def read_key_slot(source: BinaryIO) -> tuple[int, bytes]:
    """Read the (KEK version, wrapped data key) of a format-2 blob, positioned after its header."""
    fixed = source.read(_SLOT.size)
    if len(fixed) != _SLOT.size:
        raise IntegrityError("blob is shorter than its key slot")
    version, length = _SLOT.unpack(fixed)
    wrapped = source.read(length)
    if length > _MAX_WRAPPED or len(wrapped) != length:
        raise IntegrityError("blob key slot is malformed")
    return version, wrapped


def read_header(source: BinaryIO) -> tuple[int, int, bytes, bytes]:
    """Read a blob's stream header: (format version, chunk size, nonce prefix, the header bytes)."""
    header = source.read(HEADER_SIZE)
    if len(header) != HEADER_SIZE:
        raise IntegrityError("blob is shorter than its header")
    magic, version, chunk_size, prefix = _HEADER.unpack(header)
    if magic != MAGIC or version not in _READABLE_VERSIONS or not 0 < chunk_size <= 64 * CHUNK_SIZE:
        raise IntegrityError("blob header is not recognised")
    return version, chunk_size, prefix, header


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class StreamEncryptor:
    """Incrementally encrypt a plaintext stream into the blob format.

    With a `key_slot` (from :func:`encode_key_slot`) the stream is format 2; without one
    (backups, whose key comes from a passphrase) format 1. Feed plaintext with
    :meth:`update` and collect the returned ciphertext; call :meth:`finalize` exactly once
    to seal the last chunk. The header (and key slot) is returned by the first call to
    :meth:`update` or by :meth:`finalize`, whichever comes first.
    """

    def __init__(
        self, dek: bytes, identity: bytes, key_slot: bytes | None = None, chunk_size: int = CHUNK_SIZE
    ) -> None:
        self._aead = AESGCM(dek)
        self._chunk_size = chunk_size
        self._prefix = os.urandom(7)
        version = FORMAT_VERSION if key_slot is not None else 1
        stream_header = _HEADER.pack(MAGIC, version, chunk_size, self._prefix)
        self._aad = stream_header + identity
        self._header = stream_header + (key_slot or b"")
        self._buffer = bytearray()
        self._counter = 0
        self._header_sent = False

    def _take_header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return self._header

    def _seal(self, chunk: bytes, last: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), chunk, self._aad)
        self._counter += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        """Add plaintext; return whatever ciphertext is complete so far."""
        out = [self._take_header()]
        self._buffer += data
        # Keep at least one byte back so the final chunk is never empty unless the stream is.
        while len(self._buffer) > self._chunk_size:
            chunk = bytes(self._buffer[: self._chunk_size])
            del self._buffer[: self._chunk_size]
            out.append(self._seal(chunk, last=False))
        return b"".join(out)

    def finalize(self) -> bytes:
        """Seal the remaining plaintext as the last chunk and return it."""
        tail = self._take_header() + self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return tail


def decrypt_stream(source: BinaryIO, dek: bytes, identity: bytes) -> Iterator[bytes]:
    """Yield the plaintext chunks of a blob read from `source`.

    Each chunk is authenticated before it is yielded. Raises :class:`IntegrityError` when
    the header is malformed, a chunk fails authentication, the stream ends before its last
    chunk, or data follows the last chunk.
    """
    version, chunk_size, prefix, header = read_header(source)
    if version >= 2:
        read_key_slot(source)
    aead = AESGCM(dek)
    aad = header + identity
    sealed_size = chunk_size + _TAG_BYTES
    counter = 0
    sealed = source.read(sealed_size)
    while True:
        if len(sealed) < _TAG_BYTES:
            raise IntegrityError("blob is truncated")
        following = source.read(sealed_size)
        last = not following
        try:
            yield aead.decrypt(_nonce(prefix, counter, last), sealed, aad)
        except InvalidTag as exc:
            raise IntegrityError(f"blob chunk {counter} failed authentication") from exc
        if last:
            return
        counter += 1
        sealed = following


def decrypt_chunks(
    source: BinaryIO, dek: bytes, identity: bytes, first: int, last: int, plaintext_size: int
) -> Iterator[bytes]:
    """Yield the plaintext of chunks `first` .. `last` of a blob of `plaintext_size` bytes.

    Only those chunks are read, each authenticated before it is yielded, its "last chunk"
    flag known from the size. Raises :class:`IntegrityError` when the file is not exactly
    as long as that size makes it, or a chunk fails authentication.
    """
    version, chunk_size, prefix, header = read_header(source)
    if version >= 2:
        read_key_slot(source)
    base = source.tell()
    count = max(1, -(-plaintext_size // chunk_size))
    if os.fstat(source.fileno()).st_size != base + plaintext_size + count * _TAG_BYTES:
        raise IntegrityError("blob is truncated or extended")
    aead, aad = AESGCM(dek), header + identity
    source.seek(base + first * (chunk_size + _TAG_BYTES))
    for counter in range(first, min(last, count - 1) + 1):
        # Exactly the chunk's length: asking more of a short last chunk costs a fresh buffer.
        sealed = source.read(min(chunk_size, plaintext_size - counter * chunk_size) + _TAG_BYTES)
        try:
            yield aead.decrypt(_nonce(prefix, counter, counter == count - 1), sealed, aad)
        except InvalidTag as exc:
            raise IntegrityError(f"blob chunk {counter} failed authentication") from exc
