"""Helpers of the PKI tests: a certificate's extensions and names, a umask, and issued files on disk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import NameOID

from pacs.core.pki import (
    Issued,
    write_certificate,
    write_private_key,
)

OPENSSL = Path("/usr/bin/openssl")
NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
IO_TIMEOUT = 10.0

ExtT = TypeVar("ExtT", bound=x509.ExtensionType)


def ext(cert: x509.Certificate, kind: type[ExtT]) -> x509.Extension[ExtT]:
    """Return the extension of type ``kind`` (fails the test if absent)."""
    return cert.extensions.get_extension_for_class(kind)


def common_name(cert: x509.Certificate) -> str:
    """Return the single CN of ``cert``'s subject."""
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    """Return the ExtendedKeyUsage OIDs of ``cert``."""
    return list(ext(cert, x509.ExtendedKeyUsage).value)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block with the process umask set to ``mask``."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@dataclass(frozen=True)
class PkiFiles:
    """A CA, a PACS server cert and a modality client cert on disk."""

    ca_crt: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path


def write_issued(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    """Write ``issued`` as ``<stem>.crt`` / ``<stem>.key``; return both paths."""
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    write_certificate(crt, issued.cert)
    write_private_key(key, issued.key)
    return crt, key
