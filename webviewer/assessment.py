"""The admin page of the security assessment report (admin role only): the latest, a new one, earlier ones.

``GET /admin/assessment`` shows the latest report (when, how many findings, the hash) with its
HTML and PDF for download, and every earlier one; ``POST /admin/assessment`` writes a new
report (what ``pacs selfcheck --report`` writes, audited the same way). Reports are
downloaded as attachments, never shown inside the app: they carry their own inline style,
which the app's Content-Security-Policy would refuse. ``pacs`` adds the page
and its :class:`AssessmentDesk` with :func:`attach`; an app without it has no such page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    send_file,
    url_for,
)

from pacs.ops.assessment_history import ReportEntry, ReportNotFoundError
from storage.errors import PacsError
from webviewer.auth import admin_required, me

bp = Blueprint("assessment", __name__, url_prefix="/admin")
_EXTENSION = "assessment"
_TYPES = {".html": "text/html; charset=utf-8", ".pdf": "application/pdf"}


class AssessmentDesk(Protocol):
    """What the page needs: the kept reports, a way to write one, and their files."""

    def reports(self) -> list[ReportEntry]:
        """Every kept report, newest first."""
        ...

    def generate(self, *, user: str) -> ReportEntry:
        """Write a new report (HTML and PDF) as asked by `user`, audited; return its entry."""
        ...

    def file(self, name: str) -> Path:
        """The kept file `name`; raises :class:`ReportNotFoundError` for any other name."""
        ...


def attach(app: Flask, desk: AssessmentDesk) -> None:
    """Add the page to `app` (and to its admin menu), offering the reports of `desk`."""
    app.register_blueprint(bp)
    app.extensions[_EXTENSION] = desk
    app.config["ASSESSMENT_PAGE"] = True


def _desk() -> AssessmentDesk:
    desk: AssessmentDesk = current_app.extensions[_EXTENSION]
    return desk


@bp.get("/assessment")
@admin_required
def page() -> str:
    """The latest report and the earlier ones."""
    reports = _desk().reports()
    return render_template(
        "assessment/assessment.html", latest=reports[0] if reports else None, earlier=reports[1:]
    )


@bp.post("/assessment")
@admin_required
def generate() -> Response:
    """Write a new report, then show the page with it as the latest."""
    try:
        entry = _desk().generate(user=me())
    except PacsError as exc:
        flash(f"The report could not be written: {exc}")
    else:
        flash(f"A new report was written: {entry.findings} finding{'' if entry.findings == 1 else 's'}.")
    return redirect(url_for("assessment.page"))


@bp.get("/assessment/<name>")
@admin_required
def download(name: str) -> Response:
    """A kept report's HTML or PDF, as an attachment."""
    try:
        path = _desk().file(name)
    except ReportNotFoundError:
        abort(404)
    response = send_file(path, mimetype=_TYPES[path.suffix], as_attachment=True, download_name=name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
