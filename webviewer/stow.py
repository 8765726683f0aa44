"""STOW-RS, the Studies Service's store transaction (PS3.18 10.5): ``POST /dicomweb/studies[/{study}]``.

The body is ``multipart/related; type="application/dicom"``, one DICOM Part 10 object per part.
It is read as it streams in (:mod:`webviewer.multipart_reader`), and each part's bytes go
straight into an :class:`~storage.ingest.IncomingObject`, the path of C-STORE and ``pacs
import``: checked, encrypted and made durable as they arrive, never held whole, never written
in clear. The app's body limit does not apply here; a part is limited by the archive's largest
object ([dicom] max_object_mb) and the free-space watermark ([storage] min_free_mb), as a
C-STORE is. Posted to ``/studies/{study}``, an object of another study is refused.

The answer is the Store Instances Response Module (PS3.18 Annex I) as DICOM JSON: the study's
Retrieve URL, a Referenced SOP Sequence of what was stored (each with its Retrieve URL, and a
Warning Reason where there is one) and a Failed SOP Sequence with a Failure Reason for each part
that was not: 200 when all were stored, 202 when some failed or have warnings, 409 when none was
stored, 400 for a malformed body, 415 for another content type. Before it is sent, each study
the request delivered has its audit record (who, from where, the counts), as a study a DICOM
association delivers has before its first object is acknowledged; a study whose record cannot
be written is answered as failed (Out of Resources), though its objects are kept.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from werkzeug.http import parse_options_header

from pacs.core.access_events import instances_stored, new_version_kept, objects_refused
from pacs.core.audit import AuditEvent, AuditLog, EventID
from pacs.ops.received import Received
from storage.archive import (
    Archive,
    IncomingObject,
    IndexUnavailableError,
    ObjectTooLargeError,
    OutOfSpaceError,
    StoreResult,
)
from storage.errors import PacsError
from storage.header import HeaderError, InstanceHeader
from storage.index import StoreOutcome
from webviewer.auth import me, source, store_required
from webviewer.dicomweb import DICOM_JSON, check_uid
from webviewer.multipart import not_acceptable, parse_accept
from webviewer.multipart_reader import MultipartError, MultipartReader, Part
from webviewer.urls import service_root

bp = Blueprint("stow", __name__, url_prefix="/dicomweb")

# The requests whose body the HTTPS server streams to the app instead of buffering it.
STOW_PATH = re.compile(r"/dicomweb/studies(/[0-9.]{1,64})?/?")
DICOM = "application/dicom"
VIA = "STOW-RS"
# Failure Reason (0008,1197) and Warning Reason (0008,1196) values, PS3.18 Table I.2-1 and I.2-2.
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
STUDY_MISMATCH = 0xC409  # in the Cxxx range, "cannot understand": not of the study posted to
DATA_SET_DOES_NOT_MATCH = 0xB007
# A part's first bytes are kept to name its SOP instance when it fails (the UIDs come early).
HEAD_BYTES = 64 * 1024
NO_BODY_LIMIT = sys.maxsize  # Flask reads None as "the app's limit"
_AFTER_SOP_INSTANCE_UID = 0x00080018


def is_stow_request(method: str, path: str) -> bool:
    """Whether a request is a STOW-RS store, whose body is streamed rather than buffered."""
    return method == "POST" and STOW_PATH.fullmatch(path) is not None


class StudyMismatchError(PacsError):
    """The object belongs to another study than the one it was posted to."""

    def __init__(self, header: InstanceHeader, study: str) -> None:
        super().__init__(f"the object is of study {header.study_uid}, not of {study}")
        self.header = header


@dataclass
class Failed:
    """A part that was not stored, the SOP instance it seems to hold ("" where unknown), and why."""

    sop_class_uid: str
    sop_uid: str
    reason: int
    message: str


@dataclass
class Stored:
    """A part that was stored, with its Warning Reason if it has one."""

    result: StoreResult
    warning: int | None = None


@dataclass
class StowRequest:
    """What one STOW-RS request stored and failed to store; see the module docstring."""

    archive: Archive
    study: str | None
    stored: list[Stored] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)

    def read(self, reader: MultipartReader) -> None:
        """Store every part of the body; a malformed body raises :class:`MultipartError`."""
        for part in reader.parts():
            self._store(part)

    def _store(self, part: Part) -> None:
        """Stream one part into the archive as it is read; a body cut off inside it fails it."""
        media_type, _ = parse_options_header(part.content_type or DICOM)
        if media_type.lower() != DICOM:
            message = f"a part of type {media_type} is not stored"
            self.failed.append(Failed("", "", CANNOT_UNDERSTAND, message))
            return
        incoming = self.archive.receive()
        head = bytearray()
        try:
            for chunk in part.chunks():
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                incoming.write(chunk)
        except MultipartError as exc:
            incoming.abort()
            self._fail(head, CANNOT_UNDERSTAND, str(exc))
            raise
        except BaseException:
            incoming.abort()
            raise
        self._finish(incoming, head)

    def _finish(self, incoming: IncomingObject, head: bytearray) -> None:
        """Make the object of one part durable (or learn why not) and note how it went."""
        try:
            result = incoming.finish(self._check)
        except StudyMismatchError as exc:
            header = exc.header
            self.failed.append(Failed(header.sop_class_uid, header.sop_uid, STUDY_MISMATCH, str(exc)))
        except HeaderError as exc:
            self._fail(head, CANNOT_UNDERSTAND, str(exc))
        except (OutOfSpaceError, ObjectTooLargeError, IndexUnavailableError) as exc:
            self._fail(head, OUT_OF_RESOURCES, str(exc))
        except Exception as exc:  # never acknowledged, never a traceback to the client
            current_app.logger.exception("storing a STOW-RS part failed")
            self._fail(head, PROCESSING_FAILURE, f"not stored: {type(exc).__name__}")
        else:
            self.stored.append(Stored(result, DATA_SET_DOES_NOT_MATCH if result.pixel_data_short else None))

    def _check(self, header: InstanceHeader) -> None:
        """Refuse an object of another study than the one posted to (before anything is kept)."""
        if self.study is not None and header.study_uid != self.study:
            raise StudyMismatchError(header, self.study)

    def _fail(self, head: bytearray, reason: int, message: str) -> None:
        self.failed.append(Failed(*_identify(bytes(head)), reason, message))

    def audit(self, audit: AuditLog) -> None:
        """Audit what each study received (and the parts refused); a study unaudited fails."""
        received = Received()
        for stored in self.stored:
            received.count(stored.result)
        by, where = me(), source()
        for study_uid, tally in received.studies.items():
            events = [
                instances_stored(
                    EventID.INSTANCES_TRANSFERRED,
                    by=by,
                    source=where,
                    patient_id=tally.patient_id,
                    study_uid=study_uid,
                    counts=tally.counts(),
                    via=VIA,
                ),
                *(
                    new_version_kept(EventID.INSTANCES_TRANSFERRED, s.result, by=by, source=where)
                    for s in self.stored
                    if s.result.study_uid == study_uid and s.result.outcome is StoreOutcome.NEW_VERSION
                ),
            ]
            if not _append_all(audit, events):
                self._unaudited(study_uid)
        if self.failed:
            audit.append_after(objects_refused(len(self.failed), by=by, source=where))

    def _unaudited(self, study_uid: str) -> None:
        """Answer the objects of `study_uid` as failed: kept, but their audit record is missing."""
        message = "kept, but the audit trail cannot be written"
        for stored in [s for s in self.stored if s.result.study_uid == study_uid]:
            self.stored.remove(stored)
            result = stored.result
            self.failed.append(Failed(result.sop_class_uid, result.sop_uid, OUT_OF_RESOURCES, message))


def _append_all(audit: AuditLog, events: Iterable[AuditEvent]) -> bool:
    """Append `events` in turn; False (logged) at the first that cannot be written."""
    try:
        for event in events:
            audit.append(event)
    except Exception:
        current_app.logger.exception("the audit record of a STOW-RS study was not written")
        return False
    return True


def _identify(head: bytes) -> tuple[str, str]:
    """The SOP Class and Instance UIDs in the first bytes of a Part 10 object ("" where unreadable)."""
    try:
        ds = read_partial(io.BytesIO(head), stop_when=lambda tag, vr, length: tag > _AFTER_SOP_INSTANCE_UID)
        return str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
    except Exception:  # anything that is not a readable DICOM header is simply unnamed
        return "", ""


def _boundary() -> str:
    """The boundary of a multipart/related application/dicom body (else 415, or 400 without one)."""
    media_type, params = parse_options_header(request.headers.get("Content-Type", ""))
    root = params.get("type", DICOM).lower()
    if media_type.lower() != "multipart/related" or root != DICOM:
        message = f'STOW-RS takes multipart/related; type="{DICOM}", not {media_type or "no body"}'
        abort(Response(message, status=415, mimetype="text/plain"))
    boundary = params.get("boundary")
    if not boundary:
        abort(Response("the multipart body has no boundary", status=400, mimetype="text/plain"))
    return boundary


def _check_accept() -> None:
    """406 unless the client takes DICOM JSON (the only form of the answer)."""
    ranges = parse_accept(request.headers.get("Accept"))
    if ranges and not any(r.matches(DICOM_JSON) or r.matches("application/json") for r in ranges):
        not_acceptable(f"the STOW-RS response is {DICOM_JSON}")


def _url(*uids: str) -> str:
    """The WADO-RS URL of a study (series, instance) on this server."""
    levels = ("studies", "series", "instances")
    path = "/".join(f"{level}/{uid}" for level, uid in zip(levels, uids, strict=False))
    return f"{service_root()}/{path}"


def _response_dataset(stow: StowRequest) -> Dataset:
    """The Store Instances Response Module of `stow` (PS3.18 Table I.1-1)."""
    ds = Dataset()
    studies = {s.result.study_uid for s in stow.stored}
    study = stow.study or (studies.pop() if len(studies) == 1 else None)
    ds.add_new(0x00081190, "UR", _url(study) if study else None)
    referenced = []
    for stored in stow.stored:
        item, result = Dataset(), stored.result
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = result.sop_class_uid, result.sop_uid
        item.add_new(0x00081190, "UR", _url(result.study_uid, result.series_uid, result.sop_uid))
        if stored.warning is not None:
            item.WarningReason = stored.warning
        referenced.append(item)
    failed = []
    for failure in stow.failed:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = failure.sop_class_uid, failure.sop_uid
        item.FailureReason = failure.reason
        failed.append(item)
    if referenced:
        ds.ReferencedSOPSequence = referenced
    if failed:
        ds.FailedSOPSequence = failed
    return ds


def _status(stow: StowRequest) -> int:
    if not stow.stored:
        return 409
    if stow.failed or any(s.warning is not None for s in stow.stored):
        return 202
    return 200


@bp.url_value_preprocessor
def _no_body_limit(_endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """Lift the app's body limit (before the CSRF check reads the form): each part has its own."""
    request.max_content_length = NO_BODY_LIMIT


@bp.post("/studies")
@bp.post("/studies/<study>")
@store_required
def store(study: str | None = None) -> Response:
    """Store the objects of a multipart/related body (see the module docstring)."""
    if study is not None:
        check_uid(study)
    _check_accept()
    reader = MultipartReader(request.stream, _boundary())
    services = current_app.extensions["pacs"]
    stow = StowRequest(services.archive, study)
    try:
        stow.read(reader)
    except MultipartError as exc:
        if not stow.stored and not stow.failed:
            return Response(f"malformed multipart body: {exc}", status=400, mimetype="text/plain")
    except OSError as exc:  # the client went away or stopped sending (pacs.serve.streamed_body)
        abort(Response(f"the request body was cut off: {exc}", status=400, mimetype="text/plain"))
    finally:
        stow.audit(services.audit)
    if not stow.stored and not stow.failed:
        return Response("the multipart body holds no part", status=400, mimetype="text/plain")
    for failure in stow.failed:
        current_app.logger.info("STOW-RS part not stored (%04X): %s", failure.reason, failure.message)
    body = _response_dataset(stow).to_json()
    return Response(body, status=_status(stow), mimetype=DICOM_JSON)
