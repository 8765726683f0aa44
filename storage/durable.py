"""Making writes durable: the one place that flushes files and directories to the device.

:func:`write_new` and :func:`replace` write a small file whole or not at all: the data
goes to a hidden temporary file beside it (``.NAME.RANDOM.tmp``), which is flushed and
then linked or renamed into place, and the directory is flushed. A crash at any point
leaves the old file (or none) and at most a temporary file, never a partial one.

A new file written and flushed with ``fdatasync`` survives a power loss, but whether its
*name* does depends on the file system. On the journalling file systems below, creating
the entry and allocating the file's blocks go into the journal transaction that the
file's own ``fdatasync`` commits, so the entry is durable with the file and no directory
flush is needed. Anywhere else the directory is flushed too.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

# ext4 (data=ordered or journal; ext4 without a journal is made only on request),
# XFS (the log force covers the create) and btrfs (fsync logs the new name).
ENTRY_DURABLE_WITH_FILE = frozenset({"ext4", "xfs", "btrfs"})
_MOUNTINFO = Path("/proc/self/mountinfo")


def flush_data(fd: int) -> None:
    """Flush a file's data, and the metadata needed to read it back, to the device."""
    os.fdatasync(fd)


def flush_directory(path: Path) -> None:
    """Flush a directory, so that the entries created or renamed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush_file(fd: int) -> None:
    """Flush a file's data and all its metadata to the device (``fsync``)."""
    os.fsync(fd)


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside `path` for the temporary copy of a write in progress."""
    return path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")


def _write_temporary(path: Path, data: bytes, mode: int) -> Path:
    temporary = temporary_name(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        flush_file(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    return temporary


def write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create `path` holding `data`, whole or not at all; raise FileExistsError if it exists."""
    temporary = _write_temporary(path, data, mode)
    try:
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    flush_directory(path.parent)


def replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` (or create it) with `data`: readers see the old file or the new one."""
    temporary = _write_temporary(path, data, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    flush_directory(path.parent)


def _unescape(field: str) -> str:
    """A mountinfo path field, with its octal escapes (``\\040`` for a space) decoded."""
    return field.encode().decode("unicode_escape")


@lru_cache(maxsize=32)
def file_system_type(path: Path) -> str:
    """The type of the file system that holds `path` (e.g. ``ext4``), or "" if unknown."""
    try:
        lines = _MOUNTINFO.read_text().splitlines()
    except OSError:
        return ""
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, kinds = left.split(), right.split()
        if len(fields) < 5 or not kinds:
            continue
        mount_point = _unescape(fields[4])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, kinds[0]
    return best_type


def entry_durable_with_file(directory: Path) -> bool:
    """Whether a new file's ``fdatasync`` alone makes its entry in `directory` durable."""
    return file_system_type(directory) in ENTRY_DURABLE_WITH_FILE
