"""The assessment reports written so far: kept in ``DATA/reports/``, listed in ``index.jsonl``.

Each report run keeps its HTML (and PDF, when made) under a name of its time, mode 0600,
and appends one line to ``reports/index.jsonl`` (0600): when, how many findings, the file
names and the SHA-256 of the HTML, so that a copy handed to an auditor can be matched to the
archive's own record. The directory is 0700; nothing in it is served except through the
admin page.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from storage import durable
from storage.errors import PacsError

REPORTS = "reports"
INDEX = "index.jsonl"
_NAME = re.compile(r"^assessment-\d{8}T\d{6}Z(-\d+)?\.(html|pdf)$")


class ReportNotFoundError(PacsError, LookupError):
    """No kept report has this name."""


class ReportHistoryError(PacsError):
    """``DATA/reports/`` cannot be read or written (e.g. made by another user); the message says why."""


@dataclass(frozen=True)
class ReportEntry:
    """One report run as the index records it."""

    written_at: str
    findings: int
    html: str
    sha256: str
    pdf: str = ""
    by: str = ""

    @property
    def written(self) -> datetime:
        """`written_at` as a time."""
        return datetime.fromisoformat(self.written_at)


def sha256_hex(content: bytes) -> str:
    """The SHA-256 of `content`, in hex."""
    return hashlib.sha256(content).hexdigest()


class ReportHistory:
    """The reports kept in one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / REPORTS

    def entries(self) -> list[ReportEntry]:
        """Every report run recorded, newest first (the index is in the order written; a line that
        cannot be read is skipped)."""
        try:
            lines = (self.directory / INDEX).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ReportHistoryError(
                f"cannot read the reports in {self.directory}: {exc.strerror or exc}"
            ) from None
        found = []
        for line in lines:
            try:
                found.append(ReportEntry(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return found[::-1]

    def stem_for(self, when: datetime) -> str:
        """A file name stem for a report of `when` that no kept report uses yet."""
        stem = f"assessment-{when:%Y%m%dT%H%M%SZ}"
        taken = {path.name.rsplit(".", 1)[0] for path in self._files()}
        number = 1
        candidate = stem
        while candidate in taken:
            number += 1
            candidate = f"{stem}-{number}"
        return candidate

    def _files(self) -> list[Path]:
        return list(self.directory.glob("assessment-*")) if self.directory.is_dir() else []

    def keep(
        self, when: datetime, html: bytes, pdf: bytes | None, *, findings: int, by: str, stem: str
    ) -> ReportEntry:
        """Keep the report's files under `stem` and record the run; return its entry.

        Raises :class:`ReportHistoryError` when the directory cannot be written.
        """
        try:
            return self._keep(when, html, pdf, findings=findings, by=by, stem=stem)
        except OSError as exc:
            raise ReportHistoryError(
                f"cannot keep the report in {self.directory}: {exc.strerror or exc}"
            ) from None

    def _keep(
        self, when: datetime, html: bytes, pdf: bytes | None, *, findings: int, by: str, stem: str
    ) -> ReportEntry:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        durable.write_new(self.directory / f"{stem}.html", html, 0o600)
        if pdf is not None:
            durable.write_new(self.directory / f"{stem}.pdf", pdf, 0o600)
        entry = ReportEntry(
            written_at=when.isoformat(timespec="seconds"),
            findings=findings,
            html=f"{stem}.html",
            sha256=sha256_hex(html),
            pdf=f"{stem}.pdf" if pdf is not None else "",
            by=by,
        )
        descriptor = os.open(self.directory / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as index:
            index.write(json.dumps(asdict(entry)) + "\n")
            index.flush()
            durable.flush_file(index.fileno())
        return entry

    def path(self, name: str) -> Path:
        """The kept file `name` (``assessment-….html`` or ``.pdf``); raise if there is none."""
        path = self.directory / name
        if not _NAME.match(name) or not path.is_file():
            raise ReportNotFoundError(f"no kept report is called {name!r}")
        return path
