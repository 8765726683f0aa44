"""The viewer page of a study, the patient's other studies, its tag panel, and the study download as a ZIP.

Opening the page and downloading are audited (DICOM Instances Accessed, and Export);
listing the patient's other studies (priors) is audited as a query. Opening a prior's
images is audited as viewing that study by the DICOMweb endpoints that serve them.
The ZIP is streamed: objects are decrypted a chunk at a time into the response and
never written to disk.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, stream_with_context
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacs.core.access_events import query_run, study_downloaded
from pacs.ops.exporting import export_names
from webviewer import people
from webviewer.auth import me, physician_required, record, source
from webviewer.dicomweb import (
    audit_study_access,
    audited_once,
    check_uid,
    find_instance,
    load_header,
    remember_audited,
)
from webviewer.qido import instance_list, series_list

bp = Blueprint("viewer", __name__)
TAG_VALUE_LIMIT = 256
RELATED_LIMIT = 200
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_SUMMARY_KEYS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


def _study_query(**keys: str) -> Dataset:
    query = Dataset()
    for keyword in _SUMMARY_KEYS:
        setattr(query, keyword, None)
    query.StudyInstanceUID = None
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    return query


def summary(study: str) -> Dataset:
    """The study-level attributes of `study` the viewer shows (patient sex included), or 404."""
    found = current_app.extensions["pacs"].archive.find(
        "STUDY", _study_query(StudyInstanceUID=check_uid(study))
    )
    if not found:
        abort(404)
    return found[0]


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list)):
        return "\\".join(map(str, value))
    return str(value)


def related_studies(current: Dataset) -> list[dict[str, Any]]:
    """The patient's other studies (same Patient ID and issuer), newest first; audited as a query."""
    patient_id, issuer = _text(current, "PatientID"), _text(current, "IssuerOfPatientID")
    studies: list[dict[str, Any]] = []
    if patient_id:
        found = current_app.extensions["pacs"].archive.find(
            "STUDY", _study_query(PatientID=patient_id), limit=RELATED_LIMIT
        )
        # Matching treats * and ? as wildcards: only exact matches are the same patient.
        same = [
            ds
            for ds in found
            if _text(ds, "PatientID") == patient_id
            and _text(ds, "IssuerOfPatientID") == issuer
            and str(ds.StudyInstanceUID) != str(current.StudyInstanceUID)
        ]
        studies = [_related_row(ds) for ds in same]
    record(
        query_run(
            by=me(),
            source=source(),
            patient_id=patient_id,
            study_uid=str(current.StudyInstanceUID),
            what="related studies",
            matches=len(studies),
        )
    )
    return studies


def _related_row(ds: Dataset) -> dict[str, Any]:
    return {
        "study": str(ds.StudyInstanceUID),
        "date": _text(ds, "StudyDate"),
        "time": _text(ds, "StudyTime"),
        "description": _text(ds, "StudyDescription"),
        "accession": _text(ds, "AccessionNumber"),
        "modalities": _text(ds, "ModalitiesInStudy"),
        "series": ds.get("NumberOfStudyRelatedSeries") or 0,
        "instances": ds.get("NumberOfStudyRelatedInstances") or 0,
    }


def page_study(ds: Dataset) -> dict[str, str]:
    """What the viewer's corners show of the patient and the study."""
    return {
        "name": people.person_name(_text(ds, "PatientName")).name,
        "id": _text(ds, "PatientID"),
        "sex": _text(ds, "PatientSex"),
        "age": people.age("", _text(ds, "PatientBirthDate"), _text(ds, "StudyDate")),
        "birth": _text(ds, "PatientBirthDate"),
        "date": _text(ds, "StudyDate"),
        "time": _text(ds, "StudyTime"),
        "description": _text(ds, "StudyDescription"),
    }


@bp.get("/studies/<study>")
@physician_required
def view(study: str) -> str:
    """The viewer page (its script reads the images through :mod:`webviewer.dicomweb`)."""
    current = summary(study)
    audit_study_access(current, how="viewer")
    remember_audited(study)
    # The series list, the first series' images and the patient's other studies travel
    # with the page, which saves the script round trips before the first image.
    series = series_list(study)
    first = series[0]["0020000E"]["Value"][0] if series else None
    preload = {
        "series": series,
        "instances": {first: instance_list(study, first)} if first else {},
        "study": page_study(current),
        "related": related_studies(current),
    }
    return render_template(
        "viewer.html", study_uid=study, study=current, shown=preload["study"], preload=preload
    )


@bp.get("/studies/<study>/related")
@physician_required
def related(study: str) -> Response:
    """The patient's other studies, newest first (a query, audited as one)."""
    return jsonify(related_studies(summary(study)))


def _value(element: DataElement) -> str:
    if element.VR == "SQ":
        return f"[{len(element.value)} item(s)]"
    if element.VR in _BINARY_VRS:
        return f"[binary, {len(element.value or b'')} bytes]"
    text = str(element.value)
    return text if len(text) <= TAG_VALUE_LIMIT else text[:TAG_VALUE_LIMIT] + "…"


def tag_rows(ds: Dataset) -> list[dict[str, str]]:
    """The top-level elements of `ds` (file meta first), for the tag panel."""
    elements = [*(ds.file_meta if hasattr(ds, "file_meta") else []), *ds]
    return [
        {
            "tag": f"({element.tag.group:04X},{element.tag.element:04X})",
            "keyword": element.keyword or element.name,
            "vr": str(element.VR),
            "value": _value(element),
        }
        for element in elements
        if element.keyword != "PixelData"
    ]


@bp.get("/studies/<study>/instances/<sop>/tags")
@physician_required
def tags(study: str, sop: str) -> Response:
    """The tags of one instance of `study`."""
    info = find_instance(study, None, sop)
    audited_once(study)
    return jsonify(tag_rows(load_header(info)))


@bp.get("/studies/<study>/download")
@physician_required
def download(study: str) -> Response:
    """The study's objects, decrypted, as one ZIP (streamed, audited)."""
    current = summary(study)
    archive = current_app.extensions["pacs"].archive
    instances = archive.study_instances(check_uid(study))
    patient_id, count = str(current.get("PatientID", "")), len(instances)
    record(study_downloaded(me(), source=source(), patient_id=patient_id, study_uid=study, instances=count))

    def chunks() -> Iterator[bytes]:
        buffer = _Buffer()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
            for name, info in export_names(instances):
                with bundle.open(name, "w", force_zip64=True) as entry:
                    for piece in archive.read_instance(info):
                        entry.write(piece)
                        yield buffer.take()
        yield buffer.take()

    response = Response(stream_with_context(chunks()), mimetype="application/zip")
    response.headers["Content-Disposition"] = 'attachment; filename="study.zip"'
    return response


class _Buffer:
    """A write-only, unseekable sink for :class:`zipfile.ZipFile` that hands out what it got."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        """Nothing to flush: :meth:`take` hands the data out."""

    def take(self) -> bytes:
        """Everything written since the last call."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data
