"""Reports and documents of a study: SR reports, encapsulated PDFs, and what other objects are.

Three views of one object of a study, for physicians:

- ``GET /studies/<study>/documents/<sop>``: a page in the app's layout showing the document;
- ``GET /studies/<study>/documents/<sop>/panel``: the same as an HTML fragment (no layout, no
  script) the viewer's script puts in a viewport for an object without pixels (404 for an image);
- ``GET /studies/<study>/documents/<sop>/pdf``: an encapsulated PDF's bytes, opened as a
  document of its own (in a new tab) or downloaded, under the app's one CSP: nothing frames it.

An SR document (Basic Text, Enhanced, Comprehensive SR, Key Object Selection, ...) is shown as a
report (:mod:`webviewer.sr`), a PDF by its facts with links to open and download it, anything
else (RT objects, waveforms, other encapsulated documents) by the name of its SOP Class and its key attributes
(:mod:`webviewer.docinfo`). The instance must belong to the study in the URL. Only an object's
data set before Pixel Data is read (:func:`webviewer.dicomweb.load_header`, through its memory
cache), and whether pixels follow comes from the archive's frame map, so the page of a 2 GB
image decrypts its header alone; a report or a document has no Pixel Data, so its header is all
of it (as large as the archive accepted, ``[dicom] max_object_mb``). Opening the page is audited
as opening the viewer is; the panel and the PDF as the viewer's other requests are (once per session).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, Response, abort, current_app, render_template
from pydicom.dataset import Dataset

from storage.archive import InstanceInfo
from webviewer.auth import physician_required
from webviewer.dicomweb import (
    audit_study_access,
    audited_once,
    find_instance,
    load_header,
    remember_audited,
    study_summary,
)
from webviewer.docinfo import (
    Fact,
    Kind,
    class_facts,
    key_facts,
    kind_of,
    patient_facts,
    pdf_bytes,
    report_facts,
    sop_class,
)
from webviewer.sr import Report, read_report

bp = Blueprint("documents", __name__)
PDF_FILENAME = "document.pdf"  # never anything of the patient's
MAX_RESOLVED = 1000  # references of a report looked up in the archive


@dataclass(frozen=True)
class Document:
    """What the templates show of one object."""

    study_uid: str
    sop_uid: str
    kind: Kind
    sop_class: str
    title: str
    facts: list[Fact]
    report: Report | None = None
    pdf_size: int = 0
    # The SOP Instance UIDs the report points to that are in this study.
    in_study: frozenset[str] = field(default_factory=frozenset)


def _in_study(study: str, report: Report) -> frozenset[str]:
    """Which of the objects `report` references are current instances of `study`."""
    wanted = sorted(report.sop_uids)[:MAX_RESOLVED]
    if not wanted:
        return frozenset()
    found = current_app.extensions["pacs"].archive.current_instances(wanted)
    return frozenset(info.sop_uid for info in found if info.study_uid == study)


def describe(info: InstanceInfo, ds: Dataset, *, has_pixels: bool) -> Document:
    """The :class:`Document` of `info`, whose header is `ds`; `has_pixels`: Pixel Data follows it."""
    kind = kind_of(ds, has_pixels=has_pixels)
    common = {"study_uid": info.study_uid, "sop_uid": info.sop_uid, "kind": kind, "sop_class": sop_class(ds)}
    if kind is Kind.REPORT:
        report = read_report(ds)
        facts = report_facts(report) + class_facts(ds)
        in_study = _in_study(info.study_uid, report)
        return Document(**common, title=report.title, facts=facts, report=report, in_study=in_study)
    title = str(ds.get("DocumentTitle", "") or "") or common["sop_class"].removesuffix(" Storage")
    if kind is Kind.PDF:
        size = len(pdf_bytes(ds) or b"")
        return Document(**common, title=title, facts=key_facts(ds), pdf_size=size)
    return Document(**common, title=title, facts=key_facts(ds, has_pixels=has_pixels))


def _object(study: str, sop: str) -> tuple[InstanceInfo, Dataset]:
    """The instance `sop` of `study` and its data set before Pixel Data (404 if it is not in that study)."""
    info = find_instance(study, None, sop)
    return info, load_header(info)


def _described(study: str, sop: str) -> tuple[Document, Dataset]:
    """The :class:`Document` of `sop` in `study`, and its header."""
    info, ds = _object(study, sop)
    has_pixels = current_app.extensions["pacs"].archive.frame_map(info).has_pixels
    return describe(info, ds, has_pixels=has_pixels), ds


@bp.get("/studies/<study>/documents/<sop>")
@physician_required
def page(study: str, sop: str) -> str:
    """The document in a page of its own, with the patient and study it belongs to."""
    doc, ds = _described(study, sop)
    audit_study_access(study_summary(study), how="viewer")
    remember_audited(study)
    return render_template("document.html", doc=doc, patient=patient_facts(ds))


@bp.get("/studies/<study>/documents/<sop>/panel")
@physician_required
def panel(study: str, sop: str) -> str:
    """The document as an HTML fragment for a viewport of the viewer; 404 for an image."""
    doc, _ = _described(study, sop)
    audited_once(study)
    if doc.kind is Kind.IMAGE:
        abort(404)
    return render_template("document_panel.html", doc=doc, heading=2)


@bp.get("/studies/<study>/documents/<sop>/pdf")
@physician_required
def pdf(study: str, sop: str) -> Response:
    """The encapsulated PDF of the object, to open in a tab of its own or to download."""
    _, ds = _object(study, sop)
    audited_once(study)
    data = pdf_bytes(ds)
    if data is None:
        abort(404)
    response = Response(data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'inline; filename="{PDF_FILENAME}"'
    return response
