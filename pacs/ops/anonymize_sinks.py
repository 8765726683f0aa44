"""Where an anonymized copy goes: a new folder, a new ZIP file, or a ZIP streamed to a writable object.

A :class:`Sink` takes each file of the copy (a relative name such as ``S0001/I000001.dcm``),
written through :meth:`Sink.member` as its bytes come, and is finished once all are in, or
discarded if the copy failed:
a folder or ZIP file left half-written is removed. A target that exists already is refused,
so nothing is overwritten or mixed with an earlier copy. Folders are 0700, files 0600.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import IO, Protocol

from storage.errors import PacsError


class TargetError(PacsError):
    """The folder or ZIP file given for an anonymized copy cannot be used (it exists, or has no folder)."""


class Sink(Protocol):
    """The files of one copy, written as they come."""

    destination: str

    def member(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """The file `name` (relative, ``/``-separated) to write; complete once the block ends well."""

    def finish(self) -> None:
        """Complete the copy (a ZIP's directory is written)."""

    def discard(self) -> None:
        """Remove what a failed copy wrote."""


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise TargetError(f"{path} exists already: give a new folder or ZIP file")


class FolderSink:
    """A copy written into a new folder."""

    def __init__(self, root: Path) -> None:
        _refuse_existing(root)
        root.mkdir(mode=0o700, parents=True)
        self.root = root
        self.destination = str(root.resolve())

    @contextmanager
    def member(self, name: str) -> Iterator[IO[bytes]]:
        """The file `name` under the folder (0600), visible only once whole."""
        target = self.root.joinpath(*name.split("/"))
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as sink:
                yield sink
            os.link(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def finish(self) -> None:
        """Nothing is left to write."""

    def discard(self) -> None:
        """Remove the folder and everything written into it."""
        shutil.rmtree(self.root, ignore_errors=True)


class ZipSink:
    """A copy written as a ZIP archive into a writable object (a file, or a stream answered to a browser)."""

    def __init__(self, target: IO[bytes], destination: str) -> None:
        self.destination = destination
        self._target = target
        self._zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)

    @contextmanager
    def member(self, name: str) -> Iterator[IO[bytes]]:
        """The member `name`, streamed (ZIP64 so any size fits)."""
        with self._zip.open(name, "w", force_zip64=True) as member:
            yield member

    def finish(self) -> None:
        """Write the ZIP's central directory."""
        self._zip.close()

    def discard(self) -> None:
        """Stop writing (what a stream received is incomplete, and a browser sees a broken download)."""
        with suppress(ValueError):  # a member still open: the ZIP stays unfinished
            self._zip.close()


class ZipFileSink(ZipSink):
    """A copy written as a new ZIP file (0600), removed if the copy fails."""

    def __init__(self, path: Path) -> None:
        _refuse_existing(path)
        if not path.parent.is_dir():
            raise TargetError(f"{path.parent} is not a folder")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.path = path
        self._file = os.fdopen(fd, "wb")
        super().__init__(self._file, str(path.resolve()))

    def finish(self) -> None:
        """Complete and close the file."""
        super().finish()
        self._file.close()

    def discard(self) -> None:
        """Close and remove the unfinished file."""
        try:
            super().discard()
        finally:
            self._file.close()
            self.path.unlink(missing_ok=True)


def sink_for(path: Path) -> Sink:
    """A ZIP file for a name ending in ``.zip``, otherwise a folder."""
    return ZipFileSink(path) if path.suffix.lower() == ".zip" else FolderSink(path)
