"""The data directory: its layout, its creation by ``pacs init``, and opening what is in it.

Layout (everything 0700/0600; the key directory may be moved elsewhere by
``[storage] key_dir`` but is never inside ``blobs/``)::

    pacs.toml        settings
    keys/            kek-0001.key, audit.key, ca.key, server.key
    tls/             ca.crt, server.crt
    blobs/           encrypted objects (see storage.blobs)
    index.db         the SQLCipher index (unless [storage] db_url names PostgreSQL)
    audit.anchor     the newest audit chain position, MACed
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from pacs.core import events, pki
from pacs.core.audit import AuditLog
from pacs.core.config import CONFIG_NAME, Settings, render_config, with_overrides
from storage import durable
from storage.archive import Archive
from storage.blobs import BlobStore
from storage.db import Database
from storage.errors import PacsError
from storage.keys import KeyRing, create_secret, read_secret

AUDIT_KEY = "audit.key"
CA_KEY, CA_CERT = "ca.key", "ca.crt"
SERVER_KEY, SERVER_CERT = "server.key", "server.crt"
INDEX_KEY_PURPOSE = "pacs index sqlcipher v1"
# Where pacs serve spools objects being received, in clear, until they are stored.
INCOMING = "incoming"


class DataDirError(PacsError):
    """The data directory cannot be created or opened; the message says why."""


@dataclass
class Context:
    """An open archive: its settings, index, archive facade and audit trail."""

    settings: Settings
    keyring: KeyRing
    database: Database
    archive: Archive
    audit: AuditLog
    # The (from, to) schema revisions that opening it migrated, if it did.
    migrated: tuple[str, str] | None = None

    def close(self) -> None:
        """Release locks and database connections."""
        self.archive.close()


def open_database(settings: Settings, keyring: KeyRing) -> Database:
    """Open the index database of `settings` (without migrating it)."""
    return Database.open(
        settings.storage.db_url,
        sqlite_path=settings.index_path,
        # Derived from the first KEK, so adding a KEK version does not change it; a KEK
        # rotation that retires version 1 must re-key the index (PRAGMA rekey).
        sqlite_key=keyring.derive(INDEX_KEY_PURPOSE, version=1),
    )


def open_pacs(settings: Settings, *, actor: str = "pacs") -> Context:
    """Open the archive described by `settings` (the data directory must be initialised).

    The index is migrated to this version's schema first; a migration is audited as done
    by `actor`.
    """
    keyring = KeyRing.load(settings.key_dir)
    database = open_database(settings, keyring)
    change = database.migrate()
    migrated = (change[0], change[1]) if change is not None and change[0] is not None else None
    archive = Archive(
        database,
        BlobStore(settings.blob_dir, keyring),
        min_free_bytes=settings.storage.min_free_mb * 2**20,
        max_object_bytes=settings.dicom.max_object_mb * 2**20,
        max_header_bytes=settings.storage.max_header_kb * 2**10,
    )
    audit = AuditLog(database, read_secret(settings.key_dir / AUDIT_KEY), settings.data_dir / "audit.anchor")
    if migrated is not None:
        audit.append(events.schema_migrated(by=actor, old=migrated[0], new=migrated[1]))
    return Context(settings, keyring, database, archive, audit, migrated)


def refuse_existing(data_dir: Path) -> None:
    """Raise :class:`DataDirError` unless `data_dir` is new or an empty directory."""
    if (data_dir / CONFIG_NAME).exists():
        raise DataDirError(
            f"{data_dir} already holds a PACS ({CONFIG_NAME} exists); refusing to overwrite it"
        )
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise DataDirError(f"{data_dir} exists and is not an empty directory; refusing to use it")


def _write_private(path: Path, content: str) -> None:
    durable.write_new(path, content.encode("utf-8"), 0o600)


def _create_tls(settings: Settings) -> None:
    settings.tls_dir.mkdir(mode=0o700)
    ca = pki.create_ca(f"Mini-PACS CA {settings.server.hostname}"[:64])  # a CN holds 64 characters
    server = _issue_server_cert(settings, ca)
    pki.write_private_key(settings.key_dir / CA_KEY, ca.key)
    pki.write_private_key(settings.key_dir / SERVER_KEY, server.key)
    pki.write_certificate(settings.tls_dir / CA_CERT, ca.cert)
    pki.write_certificate(settings.tls_dir / SERVER_CERT, server.cert)


def _issue_server_cert(
    settings: Settings, ca: pki.Issued, key: ec.EllipticCurvePrivateKey | None = None
) -> pki.Issued:
    extra = [name for name in ("localhost", "127.0.0.1", "::1") if name != settings.server.hostname]
    return pki.issue_server_cert(ca, settings.server.hostname, extra_names=extra, key=key)


def load_ca(settings: Settings) -> pki.Issued:
    """The archive's CA (its key and certificate), which issues node and server certificates."""
    return pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )


def renew_server_certificate(settings: Settings) -> x509.Certificate:
    """Replace the server certificate with a new one from the archive's CA, for the same key.

    It names ``[server] hostname`` (and localhost), so it also serves after that name
    changed. The file is replaced atomically; a running ``pacs serve`` uses it once
    restarted.
    """
    ca = load_ca(settings)
    try:
        renewed = _issue_server_cert(settings, ca, pki.load_private_key(settings.key_dir / SERVER_KEY))
    except ValueError as exc:
        raise DataDirError(f"cannot issue a server certificate: {exc}") from exc
    pki.write_certificate(settings.tls_dir / SERVER_CERT, renewed.cert)
    return renewed.cert


def remove_created(directory: Path, existed: bool) -> None:
    """Undo a failed init or restore: empty `directory` if it existed (empty) before, else remove it."""
    if not existed:
        shutil.rmtree(directory, ignore_errors=True)
        return
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def initialise(
    data_dir: Path, *, ae_title: str, hostname: str, db_url: str, user: str, key_dir: str = ""
) -> Settings:
    """Create a new archive in `data_dir` and return its settings.

    `key_dir` (default ``keys`` inside `data_dir`) must be empty or new and must not lie
    inside the blob directory. Refuses a directory that already holds a PACS or anything
    else. On failure the partly created directory is removed again.
    """
    refuse_existing(data_dir)
    settings = _new_settings(data_dir, ae_title=ae_title, hostname=hostname, db_url=db_url, key_dir=key_dir)
    existed = data_dir.exists()
    external_keys = not settings.key_dir.is_relative_to(settings.data_dir)
    keys_existed = settings.key_dir.exists()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    try:
        keyring = KeyRing.create(settings.key_dir)
        create_secret(settings.key_dir / AUDIT_KEY)
        _create_tls(settings)
        BlobStore.create(settings.blob_dir, keyring)
        _create_index(settings, keyring)
        _write_private(data_dir / CONFIG_NAME, render_config(settings))
        pacs = open_pacs(settings)
        try:
            index = "postgresql" if db_url else "sqlcipher"
            pacs.audit.append(
                events.archive_initialised(by=user, ae_title=ae_title, hostname=hostname, index=index)
            )
        finally:
            pacs.close()
    except BaseException:
        remove_created(data_dir, existed)
        if external_keys:
            remove_created(settings.key_dir, keys_existed)
        raise
    return settings


def _new_settings(data_dir: Path, *, ae_title: str, hostname: str, db_url: str, key_dir: str) -> Settings:
    """The settings of a new archive; refuses a key directory inside the blobs or holding anything."""
    settings = Settings(data_dir=data_dir.resolve())
    settings = with_overrides(settings, "dicom", ae_title=ae_title)
    settings = with_overrides(settings, "server", hostname=hostname)
    settings = with_overrides(settings, "storage", db_url=db_url)
    if key_dir:
        settings = with_overrides(settings, "storage", key_dir=str(Path(key_dir).resolve()))
        if settings.key_dir.is_relative_to(settings.blob_dir.resolve()):
            raise DataDirError(f"the key directory {settings.key_dir} must not be inside the blob directory")
        if settings.key_dir.exists() and any(settings.key_dir.iterdir()):
            raise DataDirError(f"key directory {settings.key_dir} is not empty; refusing to use it")
    return settings


def _create_index(settings: Settings, keyring: KeyRing) -> None:
    """Create the index schema in a database that must hold no tables yet."""
    database = open_database(settings, keyring)
    try:
        if database.table_names():
            raise DataDirError(
                "the index database already holds tables (another archive's?); "
                "refusing to use it: give an empty database"
            )
        database.migrate()
    finally:
        database.dispose()
