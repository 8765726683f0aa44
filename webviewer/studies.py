"""The study list: search by patient, date, modality and accession, sorted by a column, a page at a time.

The form's values become a :class:`storage.search.StudyQuery` (not DICOM matching: see
:mod:`storage.search`): the words of a name in any order, a part of a patient ID or of
an accession number; dates come from the browser's date inputs. ``patient`` lists one
patient's studies (the "n studies" link of a row). ``sort`` is a column of
:data:`storage.search.SORTS` and ``dir`` ``asc`` or ``desc`` (newest first by default).
Every search is audited with its criteria.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from flask import Blueprint, current_app, render_template, request

from pacs.core.access_events import query_run
from storage.search import SORTS, StudyQuery, StudyRow
from webviewer import people
from webviewer.auth import me, physician_required, record, source
from webviewer.paging import current_page, neighbours, url_with

bp = Blueprint("studies", __name__)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
# The fields of a StudyQuery that the search form fills.
CRITERIA = ("name", "patient_id", "birth_date", "date_from", "date_to", "modality", "accession", "patient")
# The columns whose headers sort the list, and the direction of their first click.
SORTABLE = {"name": False, "patient_id": False, "birth_date": False, "date": True, "accession": False}


def _text(field: str, limit: int = 64) -> str:
    return request.args.get(field, "").strip()[:limit]


def _date(field: str) -> str:
    match = _DATE.match(request.args.get(field, "").strip())
    return "".join(match.groups()) if match else ""


def read_search() -> StudyQuery:
    """The search of this request's query string (first page, newest first)."""
    patient = request.args.get("patient", "")
    return StudyQuery(
        name=_text("name"),
        patient_id=_text("patient_id"),
        birth_date=_date("birth_date"),
        date_from=_date("from"),
        date_to=_date("to"),
        modality=_text("modality", 16).upper(),
        accession=_text("accession", 16),
        patient=int(patient) if patient.isdigit() and len(patient) <= 12 else None,
    )


def criteria(search: StudyQuery) -> dict[str, Any]:
    """The criteria of `search` that were given (what the audit record lists)."""
    return {field: getattr(search, field) for field in CRITERIA if getattr(search, field)}


def read_sort() -> tuple[str, bool]:
    """The sort column and whether it is descending (newest first when not given or unknown)."""
    sort = request.args.get("sort", "date")
    if sort not in SORTS:
        return "date", True
    direction = request.args.get("dir", "")
    return sort, direction == "desc" if direction in ("asc", "desc") else SORTABLE[sort]


@dataclass(frozen=True)
class Listed:
    """A study row as the template shows it."""

    row: StudyRow
    name: people.ShownName
    sex: str
    age: str
    born: str
    date: str
    time: str
    modalities: str


def listed(row: StudyRow) -> Listed:
    """How `row` is shown."""
    return Listed(
        row=row,
        name=people.person_name(row.patient_name),
        sex=people.SEXES.get(row.sex.upper(), ""),
        age=people.age(row.patient_age, row.birth_date, row.study_date),
        born=people.iso_date(row.birth_date),
        date=people.iso_date(row.study_date),
        time=people.iso_time(row.study_time),
        modalities=", ".join(part for part in row.modalities.split("\\") if part),
    )


def sort_links(sort: str, descending: bool) -> dict[str, dict[str, str]]:
    """For each sortable column: the URL that sorts by it (the other way if it is the sort) and
    its ``aria-sort`` value."""
    links: dict[str, dict[str, str]] = {}
    for column, first_descending in SORTABLE.items():
        current = column == sort
        down = not descending if current else first_descending
        links[column] = {
            "url": url_with("studies.index", sort=column, dir="desc" if down else "asc", page=None),
            "aria": ("descending" if descending else "ascending") if current else "none",
        }
    return links


@bp.get("/")
@physician_required
def index() -> str:
    """The study list (``/``)."""
    services = current_app.extensions["pacs"]
    search = read_search()
    sort, descending = read_sort()
    page = current_page()
    size = services.config.page_size
    query = replace(search, sort=sort, descending=descending, limit=size + 1, offset=(page - 1) * size)
    found = services.archive.search_studies(query)
    record(query_run(by=me(), source=source(), what="study list", keys=criteria(search), page=page))
    rows = [listed(row) for row in found[:size]]
    return render_template(
        "studies.html",
        studies=rows,
        search=search,
        patient=rows[0] if search.patient is not None and rows else None,
        sorts=sort_links(sort, descending),
        **neighbours("studies.index", page, more=len(found) > size),
    )
