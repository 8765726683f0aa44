"""The key directory: versioned key-encryption keys and other secrets, kept as 0600 files.

Layout of a key directory (mode 0700, never inside the blob directory)::

    kek-0001.key   32 random bytes, the first key-encryption key
    kek-0002.key   a later version, after a rotation; the highest version is current
    <name>.key     other named secrets (for example the audit chain key)

Keys derived for other purposes (the SQLCipher key of the index) come from a KEK
through HKDF-SHA256, so nothing but the key directory has to be kept secret.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage import durable
from storage.crypto import KEY_BYTES
from storage.errors import PacsError

_KEK_NAME = re.compile(r"^kek-(\d{4})\.key$")


class KeyFileError(PacsError):
    """Raised when the key directory is missing, unreadable or holds a malformed key."""


def write_secret(path: Path, secret: bytes) -> None:
    """Write `secret` to a new file with mode 0600, durably and atomically; refuse to overwrite.

    A crash at any point leaves either no key file or a whole one (:func:`storage.durable.write_new`).
    """
    durable.write_new(path, secret, 0o600)


def read_secret(path: Path) -> bytes:
    """Read a 32-byte secret; raise :class:`KeyFileError` naming the file if it is unusable."""
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if len(secret) != KEY_BYTES:
        raise KeyFileError(f"key file {path} does not hold a {KEY_BYTES}-byte key")
    return secret


def create_secret(path: Path) -> bytes:
    """Generate a random 32-byte secret and store it at `path` (0600)."""
    secret = os.urandom(KEY_BYTES)
    write_secret(path, secret)
    return secret


class KeyRing:
    """The versioned key-encryption keys of one key directory.

    A ring notices a KEK added to its directory by a rotation running in another
    process: :attr:`current_version` re-reads the directory when its modification time
    changes, and :meth:`kek` re-reads it for a version it has not seen yet.
    """

    def __init__(self, directory: Path, keks: dict[int, bytes]) -> None:
        self.directory = directory
        self._keks = dict(keks)
        self._lock = threading.Lock()
        self._seen = self._mtime()

    def _mtime(self) -> int:
        try:
            return os.stat(self.directory).st_mtime_ns
        except OSError:
            return 0

    def _reload(self) -> None:
        with self._lock:
            seen = self._mtime()
            self._keks.update(_read_keks(self.directory))
            self._seen = seen

    @property
    def versions(self) -> list[int]:
        """Every KEK version known, oldest first."""
        return sorted(self._keks)

    @property
    def current_version(self) -> int:
        """The version new data keys are wrapped with (the highest one)."""
        if self._mtime() != self._seen:
            self._reload()
        return max(self._keks)

    def kek(self, version: int) -> bytes:
        """Return the KEK of `version`; raise :class:`KeyFileError` if it is not in the ring."""
        if version not in self._keks:
            self._reload()
        try:
            return self._keks[version]
        except KeyError as exc:
            raise KeyFileError(
                f"key-encryption key version {version} is missing from {self.directory}"
            ) from exc

    def derive(self, purpose: str, version: int | None = None) -> bytes:
        """Derive a 32-byte key for `purpose` from the KEK of `version` (default: current)."""
        kek = self.kek(self.current_version if version is None else version)
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode())
        return hkdf.derive(kek)

    def add_version(self) -> int:
        """Create the next KEK version in the directory (0600, durably) and return its number.

        Temporary files that an interrupted earlier call left (never-used keys) are removed.
        """
        for leftover in self.directory.glob(".kek-*.tmp"):
            leftover.unlink(missing_ok=True)
        self._reload()
        version = max(self._keks) + 1
        self._keks[version] = create_secret(self.directory / _kek_name(version))
        return version

    @classmethod
    def create(cls, directory: Path) -> KeyRing:
        """Create `directory` (0700) with a first KEK; refuse a directory that holds one."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if any(_KEK_NAME.match(p.name) for p in directory.iterdir()):
            raise KeyFileError(f"{directory} already holds key-encryption keys")
        return cls(directory, {1: create_secret(directory / _kek_name(1))})

    @classmethod
    def load(cls, directory: Path) -> KeyRing:
        """Load every KEK version found in `directory`."""
        keks = _read_keks(directory)
        if not keks:
            raise KeyFileError(f"no key-encryption key in {directory}")
        return cls(directory, keks)


def _kek_name(version: int) -> str:
    return f"kek-{version:04d}.key"


def _read_keks(directory: Path) -> dict[int, bytes]:
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError as exc:
        raise KeyFileError(f"cannot read key directory {directory}: {exc.strerror}") from exc
    return {int(m.group(1)): read_secret(directory / name) for name in names if (m := _KEK_NAME.match(name))}
