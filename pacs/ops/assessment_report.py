"""Writing a security assessment report: assess, render, keep in the history, audit.

Used by ``pacs selfcheck --report`` and by the admin web page (:class:`ReportDesk`). A run is
audited twice, as every selfcheck run is (``selfcheck_run``) and as a report written with the
SHA-256 of its HTML (``assessment_written``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pacs.core import events, security_events
from pacs.core.context import Context
from pacs.ops.assessment import assess
from pacs.ops.assessment_history import ReportEntry, ReportHistory
from pacs.ops.assessment_render import render_html, render_pdf
from pacs.ops.selfcheck import Report


@dataclass(frozen=True)
class WrittenReport:
    """A report just written: its entry in the history, its documents and selfcheck's report."""

    entry: ReportEntry
    html: bytes
    pdf: bytes | None
    report: Report


def write_report(pacs: Context, *, by: str, pdf: bool, now: datetime | None = None) -> WrittenReport:
    """Assess the archive, render the report (and its PDF if `pdf`), keep it and audit it."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    assessment = assess(pacs, now)
    html = render_html(assessment).encode("utf-8")
    document = render_pdf(html.decode("utf-8")) if pdf else None
    history = ReportHistory(pacs.settings.data_dir)
    findings = [f.message for f in assessment.report.findings]
    entry = history.keep(now, html, document, findings=len(findings), by=by, stem=history.stem_for(now))
    pacs.audit.append(events.selfcheck_run(by=by, findings=findings))
    pacs.audit.append(
        security_events.assessment_written(
            by=by, findings=findings, sha256=entry.sha256, formats=["html", "pdf"] if pdf else ["html"]
        )
    )
    return WrittenReport(entry, html, document, assessment.report)


class ReportDesk:
    """The reports of one open archive, for the admin web page."""

    def __init__(self, pacs: Context) -> None:
        self._pacs = pacs
        self._history = ReportHistory(pacs.settings.data_dir)

    def reports(self) -> list[ReportEntry]:
        """Every kept report, newest first."""
        return self._history.entries()

    def generate(self, *, user: str) -> ReportEntry:
        """Write a new report, HTML and PDF, as asked by `user`; return its entry."""
        return write_report(self._pacs, by=user, pdf=True).entry

    def file(self, name: str) -> Path:
        """The kept file `name`; raises :class:`~pacs.ops.assessment_history.ReportNotFoundError`."""
        return self._history.path(name)
