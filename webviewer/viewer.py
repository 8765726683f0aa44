"""The viewer page of a study, its tag panel, and the study download as a ZIP.

Opening the page and downloading are audited (DICOM Instances Accessed, and Export).
The ZIP is streamed: objects are decrypted a chunk at a time into the response and
never written to disk.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, jsonify, render_template, stream_with_context
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from pacs.core.access_events import study_downloaded
from pacs.ops.exporting import export_names
from webviewer.auth import me, physician_required, record, source
from webviewer.dicomweb import (
    audit_study_access,
    audited_once,
    check_uid,
    find_instance,
    instance_list,
    load_object,
    remember_audited,
    series_list,
    study_summary,
)

bp = Blueprint("viewer", __name__)
TAG_VALUE_LIMIT = 256
_BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


@bp.get("/studies/<study>")
@physician_required
def view(study: str) -> str:
    """The viewer page (its script reads the images through :mod:`webviewer.dicomweb`)."""
    summary = study_summary(study)
    audit_study_access(summary, how="viewer")
    remember_audited(study)
    # The series list and the first series' images travel with the page, which saves
    # the script two round trips before the first image.
    series = series_list(study)
    first = series[0]["0020000E"]["Value"][0] if series else None
    preload = {"series": series, "instances": {first: instance_list(study, first)} if first else {}}
    return render_template("viewer.html", study_uid=study, study=summary, preload=preload)


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
    return jsonify(tag_rows(load_object(info)))


@bp.get("/studies/<study>/download")
@physician_required
def download(study: str) -> Response:
    """The study's objects, decrypted, as one ZIP (streamed, audited)."""
    summary = study_summary(study)
    archive = current_app.extensions["pacs"].archive
    instances = archive.study_instances(check_uid(study))
    patient_id, count = str(summary.get("PatientID", "")), len(instances)
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
