"""The anonymize page (admin and physician roles): a de-identified copy of a study, downloaded as a ZIP.

The form shows the study (it reads patient data, hence the physician role; the admin role as for
every study-care page) and the options of :mod:`pacs.ops.anonymize`: the replacement patient
name and ID, dates removed, kept or shifted (Retain Longitudinal Temporal Information With
Full or Modified Dates), Clean Descriptors, and whether objects that may show burned-in
annotation are copied. The POST answers the ZIP as it is written, one object at a time (memory
holds one object's header and a step of its pixel data); its ``MANIFEST.json`` lists every
object and says which were flagged. The copy is audited with the user and the address the
request came from.
"""

from __future__ import annotations

import io
from collections.abc import Generator, Iterator

from flask import Blueprint, Response, abort, current_app, flash, render_template, request

from pacs.ops.anonymize import Care, copy_steps, likely_flagged
from pacs.ops.anonymize_sinks import ZipSink
from pacs.ops.deid import OptionError, Options
from storage.errors import NotFoundError
from storage.header import is_valid_uid
from storage.records import InstanceInfo
from webviewer.auth import me, roles_required, source

bp = Blueprint("anonymize", __name__, url_prefix="/admin")
care_required = roles_required("admin", "physician")
DOWNLOAD_NAME = "anonymized-study.zip"


class _Pipe(io.RawIOBase):
    """A write-only stream that keeps what the ZIP writer wrote until the response takes it."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        """What was written since the last take."""
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _care() -> Care:
    return current_app.extensions["pacs"]


def _study(study_uid: str) -> list[InstanceInfo]:
    """The study's current objects; 404 if there is no such study."""
    if not is_valid_uid(study_uid):
        abort(404)
    try:
        return _care().archive.study_instances(study_uid)
    except NotFoundError:
        abort(404)


def _form(study_uid: str, instances: list[InstanceInfo], options: Options, allow: bool) -> str:
    """The form, with the study it copies and what it would leave out."""
    head = _care().archive.dataset_without_pixels(instances[0])
    return render_template(
        "anonymize/form.html",
        study_uid=study_uid,
        patient_name=str(head.get("PatientName", "") or ""),
        patient_id=str(head.get("PatientID", "") or ""),
        description=str(head.get("StudyDescription", "") or ""),
        objects=len(instances),
        likely_flagged=likely_flagged(instances),
        options=options,
        allow=allow,
    )


@bp.get("/studies/<study_uid>/anonymize")
@care_required
def form(study_uid: str) -> str:
    """The options of a de-identified copy of the study."""
    return _form(study_uid, _study(study_uid), Options(), False)


def _zip(steps: Generator[object], pipe: _Pipe, sink: ZipSink) -> Iterator[bytes]:
    """The ZIP's bytes as the copy is written; a download broken off ends the copy (audited as failed)."""
    try:
        for _ in steps:
            data = pipe.take()
            if data:
                yield data
    except BaseException:
        steps.close()
        sink.discard()
        raise
    yield pipe.take()


@bp.post("/studies/<study_uid>/anonymize")
@care_required
def download(study_uid: str) -> Response | tuple[str, int]:
    """Answer the de-identified copy as a ZIP download (or the form again, saying what is wrong)."""
    instances = _study(study_uid)
    allow = request.form.get("allow_burned_in") == "on"
    options = Options(
        retain_dates=request.form.get("dates") == "keep",
        shift_dates=request.form.get("dates") == "shift",
        clean_descriptors=request.form.get("clean_descriptors") == "on",
        patient_name=request.form.get("patient_name", "").strip(),
        patient_id=request.form.get("patient_id", "").strip(),
    )
    try:
        options.check()
    except OptionError as exc:
        flash(str(exc))
        return _form(study_uid, instances, options, allow), 400
    pipe = _Pipe()
    sink = ZipSink(pipe, f"web download to {source()}")
    steps = copy_steps(_care(), study_uid, sink, options, allow_burned_in=allow, by=me(), source=source())
    response = Response(_zip(steps, pipe, sink), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{DOWNLOAD_NAME}"'
    response.headers["Cache-Control"] = "no-store"
    return response
