"""``pacs import``: bringing files, folders and patient CDs (DICOMDIR) into the archive.

:func:`collect` expands the paths an admin names into the files to store: a folder that
holds a DICOMDIR (at the top or anywhere below) contributes the files that DICOMDIR
references, and the rest of the tree is walked file by file. :func:`run`
stores them one by one, carrying on past bad files, and audits one Import event per
study plus one for each object that replaced an earlier version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from pacs.core.access_events import import_failures, new_version_kept
from pacs.core.audit import AuditLog, EventID
from pacs.ops.received import Received, StudyTally
from storage.archive import Archive, ArchiveError, HeaderError
from storage.index import StoreOutcome

_FILE_ID_COMPONENT = re.compile(r"^[A-Za-z0-9_]{1,8}$")


@dataclass(frozen=True)
class Failure:
    """A path that could not be imported, and why."""

    path: Path
    reason: str


@dataclass
class Summary:
    """What an import did."""

    received: Received = field(default_factory=Received)
    failures: list[Failure] = field(default_factory=list)

    @property
    def studies(self) -> dict[str, StudyTally]:
        """Tallies per study."""
        return self.received.studies

    @property
    def stored(self) -> int:
        """Objects newly stored."""
        return sum(t.stored for t in self.studies.values())

    @property
    def duplicates(self) -> int:
        """Objects that were already in the archive, byte for byte."""
        return sum(t.duplicates for t in self.studies.values())

    @property
    def new_versions(self) -> int:
        """Objects kept as a new version of a stored SOP instance."""
        return sum(t.new_versions for t in self.studies.values())


def _is_dicomdir(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR"


def _resolve_case_insensitive(root: Path, parts: list[str]) -> Path | None:
    current = root
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        matches = [child for child in current.iterdir() if child.name.upper() == part.upper()]
        if len(matches) != 1:
            return None
        current = matches[0]
    return current


def dicomdir_files(dicomdir: Path) -> tuple[list[Path], list[Failure]]:
    """The files referenced by a DICOMDIR, resolved below its folder (case-insensitively)."""
    try:
        directory = pydicom.dcmread(dicomdir, stop_before_pixels=True)
        records = directory.DirectoryRecordSequence
    except (InvalidDicomError, AttributeError, OSError, ValueError) as exc:
        return [], [Failure(dicomdir, f"unreadable DICOMDIR: {exc}")]
    files: list[Path] = []
    failures: list[Failure] = []
    root = dicomdir.parent
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        shown = "\\".join(parts)
        if not all(_FILE_ID_COMPONENT.match(p) for p in parts):
            failures.append(Failure(dicomdir, f"DICOMDIR names an invalid file ID {shown!r}"))
            continue
        resolved = _resolve_case_insensitive(root, parts)
        if resolved is None or not resolved.is_file():
            failures.append(Failure(root.joinpath(*parts), f"referenced by {dicomdir.name} but missing"))
            continue
        files.append(resolved)
    return files, failures


def collect(paths: Iterable[Path]) -> tuple[list[Path], list[Failure]]:
    """Expand `paths` into the files to import and the paths that cannot be.

    A DICOMDIR file contributes the files it references. A folder contributes every
    non-hidden file below it, except that a folder holding a DICOMDIR (the named folder or
    any sub-folder, such as a patient CD copied there) contributes only the files its
    DICOMDIR references: nothing else below it is walked, so a CD's viewer files are not
    imported and a DICOMDIR nested inside a CD is ignored in favour of the outer one.
    """
    files: list[Path] = []
    failures: list[Failure] = []
    for path in paths:
        if path.is_dir():
            found, failed = _walk(path)
        elif path.is_file():
            found, failed = dicomdir_files(path) if _is_dicomdir(path) else ([path], [])
        else:
            found, failed = [], [Failure(path, "no such file or directory")]
        files += found
        failures += failed
    return files, failures


def _walk(folder: Path) -> tuple[list[Path], list[Failure]]:
    """The files to import from `folder`, and the paths that cannot be.

    Through its DICOMDIR if it holds one; otherwise every non-hidden file in path order,
    descending the same way into sub-folders (but not into symbolic links to folders).
    """
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        return [], [Failure(folder, f"unreadable folder: {exc.strerror or exc}")]
    dicomdir = next((child for child in children if _is_dicomdir(child) and child.is_file()), None)
    if dicomdir is not None:
        return dicomdir_files(dicomdir)
    files: list[Path] = []
    failures: list[Failure] = []
    for child in children:
        if child.name.startswith("."):
            continue
        if child.is_dir() and not child.is_symlink():
            found, failed = _walk(child)
            files += found
            failures += failed
        elif child.is_file():
            files.append(child)
    return files, failures


def run(
    archive: Archive,
    audit: AuditLog,
    files: list[Path],
    *,
    user: str,
    on_progress: Callable[[Path, Failure | None], None] = lambda _path, _failure: None,
) -> Summary:
    """Store every file, continuing past bad ones, and audit the import.

    The Import records are written even when the import stops early (an interrupt, a
    database error), for whatever was stored until then.
    """
    summary = Summary()
    try:
        for path in files:
            failure = _store_one(archive, audit, path, summary, user)
            if failure is not None:
                summary.failures.append(failure)
            on_progress(path, failure)
    finally:
        for event in summary.received.events(EventID.IMPORT, user_id=user):
            audit.append(event)
        if summary.failures:
            audit.append(import_failures(len(summary.failures), by=user))
    return summary


def _store_one(archive: Archive, audit: AuditLog, path: Path, summary: Summary, user: str) -> Failure | None:
    """Store one file, counting it in `summary`; a bad file becomes a :class:`Failure`."""
    try:
        result = archive.store(path)
    except (HeaderError, ArchiveError) as exc:
        return Failure(path, str(exc))
    except OSError as exc:
        return Failure(path, exc.strerror or str(exc))
    summary.received.count(result)
    if result.outcome is StoreOutcome.NEW_VERSION:
        audit.append(new_version_kept(EventID.IMPORT, result, by=user))
    return None
