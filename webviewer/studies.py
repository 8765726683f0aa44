"""The study list: search by patient, date, modality and accession, newest first, a page at a time.

Form values become DICOM matching keys for :meth:`storage.archive.Archive.find`: a name
is a case-insensitive prefix, dates come from the browser's date inputs, and the
wildcard and multi-value characters ``* ? \\`` are removed from whatever is typed. Every
search is audited with its keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Blueprint, current_app, render_template, request
from pydicom.dataset import Dataset

from pacs.core.access_events import query_run
from webviewer.auth import me, physician_required, record, source
from webviewer.paging import current_page, neighbours

bp = Blueprint("studies", __name__)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_STRIP = str.maketrans("", "", "*?\\")
RETURNED = (
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


@dataclass(frozen=True)
class Search:
    """The search form, cleaned."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    accession: str = ""

    def keys(self) -> dict[str, str]:
        """The criteria that were given."""
        return {key: value for key, value in vars(self).items() if value}


def _text(field: str, limit: int = 64) -> str:
    return request.args.get(field, "").translate(_STRIP).strip()[:limit]


def _date(field: str) -> str:
    match = _DATE.match(request.args.get(field, "").strip())
    return "".join(match.groups()) if match else ""


def read_search() -> Search:
    """The search of this request's query string."""
    return Search(
        name=_text("name"),
        patient_id=_text("patient_id"),
        birth_date=_date("birth_date"),
        date_from=_date("from"),
        date_to=_date("to"),
        modality=_text("modality", 16).upper(),
        accession=_text("accession", 16),
    )


def identifier(search: Search) -> Dataset:
    """The C-FIND-style STUDY identifier for `search`."""
    ds = Dataset()
    for keyword in RETURNED:
        setattr(ds, keyword, "")
    ds.PatientName = f"{search.name}*" if search.name else ""
    ds.PatientID = search.patient_id
    ds.PatientBirthDate = search.birth_date
    if search.date_from or search.date_to:
        ds.StudyDate = f"{search.date_from}-{search.date_to}"
    ds.ModalitiesInStudy = search.modality
    ds.AccessionNumber = search.accession
    return ds


@bp.get("/")
@physician_required
def index() -> str:
    """The study list (``/``)."""
    services = current_app.extensions["pacs"]
    search = read_search()
    page = current_page()
    size = services.config.page_size
    found = services.archive.find("STUDY", identifier(search), limit=size + 1, offset=(page - 1) * size)
    record(query_run(by=me(), source=source(), what="study list", keys=search.keys(), page=page))
    return render_template(
        "studies.html",
        studies=found[:size],
        search=search,
        **neighbours("studies.index", page, more=len(found) > size),
    )
