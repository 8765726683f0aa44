"""Envelope encryption: AES-256-GCM data keys, key wrapping and the chunked blob stream.

Every object gets its own random 256-bit data key (DEK). The DEK is wrapped with a
key-encryption key (KEK) from :class:`storage.keys.KeyRing`; the wrapped form and the
KEK version are kept in the index, so a rotation re-wraps DEKs without touching blobs.

The blob stream follows the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár):
plaintext is cut into fixed-size chunks, each sealed with AES-GCM under a nonce made of a
random per-blob prefix, the chunk counter and a "last chunk" flag. The stream header and
the caller's identity bytes (the blob id) are authenticated with every chunk, so a
flipped byte, a reordered, dropped or appended chunk, a truncated file or a blob moved
to another name all fail authentication.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
CHUNK_SIZE = 1 << 20
MAGIC = b"PACSBLOB"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sBI7s")
HEADER_SIZE = _HEADER.size
_TAG_BYTES = 16
_WRAP_NONCE_BYTES = 12


class IntegrityError(Exception):
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


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class StreamEncryptor:
    """Incrementally encrypt a plaintext stream into the blob format.

    Feed plaintext with :meth:`update` and collect the returned ciphertext; call
    :meth:`finalize` exactly once to seal the last chunk. The header is returned by
    the first call to :meth:`update` or by :meth:`finalize`, whichever comes first.
    """

    def __init__(self, dek: bytes, identity: bytes, chunk_size: int = CHUNK_SIZE) -> None:
        self._aead = AESGCM(dek)
        self._chunk_size = chunk_size
        self._prefix = os.urandom(7)
        self._header = _HEADER.pack(MAGIC, FORMAT_VERSION, chunk_size, self._prefix)
        self._aad = self._header + identity
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
    header = source.read(HEADER_SIZE)
    if len(header) != HEADER_SIZE:
        raise IntegrityError("blob is shorter than its header")
    magic, version, chunk_size, prefix = _HEADER.unpack(header)
    if magic != MAGIC or version != FORMAT_VERSION or not 0 < chunk_size <= 64 * CHUNK_SIZE:
        raise IntegrityError("blob header is not recognised")
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
