"""The backup file, as :mod:`pacs.ops.backup` writes it and :mod:`pacs.ops.restore` reads it back.

A backup file is::

    preamble   b"PACSBKUP", format 1, argon2id time/memory/lanes, 16-byte salt, 16-byte passphrase check
    stream     storage.crypto's chunked AES-256-GCM stream under argon2id(passphrase, salt),
               authenticated together with the preamble

Its plaintext is a tar stream, in this order::

    backup.json                 format, creation time, host, schema revision
    pacs.toml                   the settings
    keys/<name>                 the key directory (KEKs, audit key, TLS keys)
    tls/<name>                  the certificates
    blobs/<shard>/<id>.blob     every indexed object as stored (still encrypted under its data key)
    index/<table>.<n>.jsonl     the index rows, from the same read snapshot as the blob list
    manifest.json               how many members, blobs and rows per table there are
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import struct
from collections.abc import Callable
from datetime import datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO

from argon2.low_level import Type, hash_secret_raw

from storage import crypto
from storage.errors import PacsError

MAGIC = b"PACSBKUP"
FORMAT = 1
PREAMBLE = struct.Struct(">8sBIII16s16s")
KDF_TIME, KDF_MEMORY_KIB, KDF_LANES = 3, 65536, 1
ROWS_PER_MEMBER = 5000
MEMBER = re.compile(
    r"^(backup\.json|manifest\.json|pacs\.toml|keys/[\w.-]+|tls/[\w.-]+"
    r"|blobs/[0-9a-f]{2}/[0-9a-f]{32}\.blob|index/[a-z_]+\.\d{5}\.jsonl)$"
)
_CHECK_LABEL = b"pacs backup passphrase check"

Progress = Callable[[int, int], None]


class BackupError(PacsError):
    """A backup cannot be written or restored; the message says why."""


def derive_key(passphrase: str, salt: bytes, time_cost: int, memory_kib: int, lanes: int) -> bytes:
    """The 256-bit backup key: argon2id over the passphrase."""
    return hash_secret_raw(
        passphrase.encode(),
        salt,
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=lanes,
        hash_len=crypto.KEY_BYTES,
        type=Type.ID,
    )


def check_value(key: bytes) -> bytes:
    """The preamble's passphrase check: tells a wrong passphrase from a damaged file before decrypting."""
    return hmac.new(key, _CHECK_LABEL, sha256).digest()[:16]


def encode(value: Any) -> Any:
    """An index value as JSON can hold it (bytes and datetimes tagged)."""
    if isinstance(value, bytes | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    return value


def decode(value: Any) -> Any:
    """The index value :func:`encode` made `value` of."""
    if isinstance(value, dict):
        if "b64" in value:
            return base64.b64decode(value["b64"])
        if "dt" in value:
            return datetime.fromisoformat(value["dt"])
    return value


def private_file(path: Path) -> BinaryIO:
    """A new file at `path` (0600), open for writing; an existing one is refused."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
