"""The checks of the data directory: file modes, where the keys live, the index's encryption, the disk."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pacs.core.config import CONFIG_NAME
from pacs.core.context import Context
from pacs.ops.selfcheck.report import Finding, Note, Result
from pacs.ops.status import DiskState, disk_status
from storage import rotation


def _loose(path: Path) -> int:
    """The group/other permission bits of `path` (0 when private)."""
    return stat.S_IMODE(path.lstat().st_mode) & 0o077


def check_permissions(pacs: Context, now: datetime) -> Iterator[Result]:
    """Data, key and config files must be private to the service's user."""
    settings = pacs.settings
    directories = [settings.data_dir, settings.key_dir, settings.blob_dir, settings.tls_dir]
    files = [settings.data_dir / CONFIG_NAME, *sorted(p for p in settings.key_dir.iterdir() if p.is_file())]
    if pacs.database.is_sqlite:
        files.append(settings.index_path)
    for path in directories + files:
        if not path.exists():
            yield Finding("permissions", f"{path} is missing", "restore it from a backup (pacs restore)")
            continue
        loose = _loose(path)
        if loose:
            wanted = "0700" if path.is_dir() else "0600"
            mode = stat.S_IMODE(path.lstat().st_mode)
            yield Finding(
                "permissions",
                f"{path} has mode {mode:04o}: group or others may {'enter' if path.is_dir() else 'read'} it",
                f"chmod {wanted} {path}",
            )


def check_key_location(pacs: Context, now: datetime) -> Iterator[Result]:
    """The key-encryption keys must not sit with the blobs they protect."""
    settings = pacs.settings
    if settings.key_dir.is_relative_to(settings.blob_dir.resolve()):
        yield Finding(
            "key-location",
            f"the key directory {settings.key_dir} is inside the blob directory",
            "move it out (e.g. to /etc/pacs/keys) and set [storage] key_dir in pacs.toml",
        )
    elif settings.key_dir.is_relative_to(settings.data_dir):
        yield Note(
            "key-location",
            f"the keys are in {settings.key_dir}, inside the data directory: a copy of that directory "
            "can be read; an appliance keeps them apart (install.sh uses /etc/pacs/keys)",
        )


def check_index_encryption(pacs: Context, now: datetime) -> Iterator[Result]:
    """The index holds PHI: SQLCipher must encrypt it; PostgreSQL keeps it in clear."""
    if not pacs.database.is_sqlite:
        yield Finding(
            "index-encryption",
            "the index is in PostgreSQL, which holds patient names, IDs and the audit trail in clear "
            "(the images stay encrypted)",
            "use the embedded encrypted index (empty [storage] db_url), or keep PostgreSQL on an encrypted "
            "disk of this appliance, reached over TLS or a local socket, as docs/SECURITY.md describes",
        )
        return
    with open(pacs.settings.index_path, "rb") as handle:
        head = handle.read(16)
    if head == b"SQLite format 3\x00":
        yield Finding(
            "index-encryption",
            f"{pacs.settings.index_path} is an unencrypted SQLite file",
            "restore the archive from a backup into a new data directory (pacs restore)",
        )


def check_key_rotation(pacs: Context, now: datetime) -> Iterator[Result]:
    """No data key is left under an older key-encryption key by an unfinished rotation."""
    current = pacs.keyring.current_version
    left = rotation.pending(pacs.database, current)
    if left:
        yield Finding(
            "key-rotation",
            f"{left} data keys are still wrapped by a key-encryption key older than {current}: "
            "a rotation did not finish",
            "run 'pacs keys rotate' again: it carries on where the last one stopped",
        )


def check_disk(pacs: Context, now: datetime) -> Iterator[Result]:
    """Free disk stays above the watermark, with room to spare."""
    disk = disk_status(pacs.settings)
    if disk.state is DiskState.NO_WATERMARK:
        yield Finding(
            "disk",
            "no free-space watermark: a full disk would fail stores half-way",
            "set [storage] min_free_mb (default 1024) in pacs.toml",
        )
    elif not disk.ok:
        below = disk.state is DiskState.BELOW
        yield Finding(
            "disk",
            f"{disk.free_mb} MiB free, {disk.state.value} the {disk.watermark_mb} MiB watermark: "
            + ("new objects are refused (0xA700)" if below else "new objects will soon be refused"),
            "free disk space or move the archive to a larger disk",
        )
