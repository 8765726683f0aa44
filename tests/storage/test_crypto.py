"""Envelope encryption: the chunked AES-GCM stream and key wrapping."""

from __future__ import annotations

import io
import os

import pytest

from storage import crypto

IDENTITY = b"0123456789abcdef0123456789abcdef"


def _seal(plaintext: bytes, chunk_size: int = 64, identity: bytes = IDENTITY) -> tuple[bytes, bytes]:
    dek = crypto.new_data_key()
    encryptor = crypto.StreamEncryptor(dek, identity, chunk_size=chunk_size)
    sealed = b"".join(encryptor.update(plaintext[i : i + 50]) for i in range(0, len(plaintext), 50))
    return dek, sealed + encryptor.finalize()


def _open(dek: bytes, sealed: bytes, identity: bytes = IDENTITY) -> bytes:
    return b"".join(crypto.decrypt_stream(io.BytesIO(sealed), dek, identity))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 1000])
def test_stream_round_trips_every_length(size: int) -> None:
    plaintext = os.urandom(size)
    dek, sealed = _seal(plaintext)
    assert _open(dek, sealed) == plaintext


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    plaintext = b"DOE^JANE " * 100
    _, sealed = _seal(plaintext)
    assert b"DOE^JANE" not in sealed


def test_flipped_byte_fails_authentication() -> None:
    dek, sealed = _seal(os.urandom(300))
    for position in (crypto.HEADER_SIZE + 5, len(sealed) - 1, 3):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(crypto.IntegrityError):
            _open(dek, bytes(damaged))


def test_truncation_at_a_chunk_boundary_is_detected() -> None:
    dek, sealed = _seal(os.urandom(64 * 3))
    one_chunk = 64 + 16
    with pytest.raises(crypto.IntegrityError):
        _open(dek, sealed[: crypto.HEADER_SIZE + one_chunk])


def test_appended_data_is_detected() -> None:
    dek, sealed = _seal(os.urandom(100))
    with pytest.raises(crypto.IntegrityError):
        _open(dek, sealed + sealed[crypto.HEADER_SIZE :])


def test_reordered_chunks_are_detected() -> None:
    dek, sealed = _seal(os.urandom(64 * 3))
    chunk = 64 + 16
    body = sealed[crypto.HEADER_SIZE :]
    swapped = body[chunk : 2 * chunk] + body[:chunk] + body[2 * chunk :]
    with pytest.raises(crypto.IntegrityError):
        _open(dek, sealed[: crypto.HEADER_SIZE] + swapped)


def test_stream_is_bound_to_its_identity() -> None:
    dek, sealed = _seal(os.urandom(100))
    with pytest.raises(crypto.IntegrityError):
        _open(dek, sealed, identity=b"f" * 32)


def test_wrapped_key_opens_only_with_its_kek_and_identity() -> None:
    kek, dek = crypto.new_data_key(), crypto.new_data_key()
    wrapped = crypto.wrap_key(kek, dek, IDENTITY)
    assert crypto.unwrap_key(kek, wrapped, IDENTITY) == dek
    with pytest.raises(crypto.IntegrityError):
        crypto.unwrap_key(crypto.new_data_key(), wrapped, IDENTITY)
    with pytest.raises(crypto.IntegrityError):
        crypto.unwrap_key(kek, wrapped, b"another blob")
