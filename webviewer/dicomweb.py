"""DICOMweb access shared by the Studies Service's endpoints, and the viewer's form of a frame.

Objects are looked up by their UIDs and must belong to the study and series in the URL
(:func:`find_instance`); the first access of a session to a study is audited
(:func:`audited_once`), so the API cannot be used to read a study unaudited. A frame
for the viewer (:func:`viewer_frame`) is its samples as ``application/octet-stream`` and ``X-`` headers
that say how to show them (see :class:`webviewer.pixels.Frame`); a large frame asked for as
:data:`webviewer.transfer.PACKED` comes losslessly packed, its preview first (see
:mod:`webviewer.transfer`), and the packed body is cached beside the decoded frame.
The lists are in :mod:`webviewer.qido`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, NoReturn

import pydicom
from flask import Response, abort, current_app, request, session
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from pacs.core.access_events import study_viewed
from storage.archive import Archive, InstanceInfo, NotFoundError
from storage.header import is_valid_uid
from webviewer import transfer
from webviewer.auth import me, record, source
from webviewer.decodelimits import DecodeLimits, FrameError, check_inflated_size
from webviewer.pixels import Frame, MemoryCache, decode_frame

DICOM_JSON = "application/dicom+json"


def _archive() -> Archive:
    return current_app.extensions["pacs"].archive


def _caches() -> tuple[MemoryCache, MemoryCache]:
    services = current_app.extensions["pacs"]
    return services.objects, services.frames


def _decoding() -> DecodeLimits:
    return current_app.extensions["pacs"].decoding


def _refuse(exc: FrameError) -> NoReturn:
    """End the request with `exc`'s status and message (as text)."""
    abort(Response(str(exc), status=exc.status, mimetype="text/plain"))


def check_uid(uid: str) -> str:
    """`uid` if it is a valid UID; otherwise the request ends with 404."""
    if not is_valid_uid(uid):
        abort(404)
    return uid


def study_summary(study: str) -> Dataset:
    """The study-level attributes of `study`, or 404."""
    query = Dataset()
    query.StudyInstanceUID = check_uid(study)
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyDate",
        "StudyDescription",
        "AccessionNumber",
    ):
        setattr(query, keyword, None)
    found = _archive().find("STUDY", query, limit=1)
    if not found:
        abort(404)
    return found[0]


def audit_study_access(study: Dataset, *, how: str) -> None:
    """Record that the logged-in user opened `study`."""
    patient_id, study_uid = str(study.get("PatientID", "")), str(study.StudyInstanceUID)
    record(study_viewed(me(), source=source(), patient_id=patient_id, study_uid=study_uid, how=how))


def remember_audited(study: str) -> None:
    """Note in the session that this user's access to `study` is in the audit trail."""
    opened = session.get("opened", [])
    if study not in opened:
        session["opened"] = [*opened[-99:], study]


def audited_once(study: str) -> None:
    """Audit this session's first access to `study` (the viewer page counts as one)."""
    if study in session.get("opened", []):
        return
    audit_study_access(study_summary(study), how="dicomweb")
    remember_audited(study)


def find_instance(study: str, series_uid: str | None, sop: str) -> InstanceInfo:
    """The current version of `sop`, which must be in `study` (and `series_uid`), or 404."""
    try:
        info = _archive().instance(check_uid(sop))
    except NotFoundError:
        abort(404)
    if info.study_uid != check_uid(study):
        abort(404)
    if series_uid is not None and info.series_uid != check_uid(series_uid):
        abort(404)
    return info


def load_object(info: InstanceInfo) -> Dataset:
    """The decrypted, parsed object (pixel data still encoded), from the memory cache if there.

    A deflated data set is inflated only once it is known to fit the decoding limit
    (pydicom inflates it whole); otherwise the request ends with 422.
    """
    objects, _ = _caches()
    key = (info.sop_uid, info.version)
    ds = objects.get(key)
    if ds is None:
        with _archive().open_instance(info) as stream:
            data = stream.read()
        if info.transfer_syntax == DeflatedExplicitVRLittleEndian:
            try:
                check_inflated_size(data, _decoding().max_frame_bytes)
            except FrameError as exc:
                _refuse(exc)
        ds = pydicom.dcmread(io.BytesIO(data))
        # The dataset keeps the decrypted (or inflated) bytes as its buffer, and Pixel Data besides.
        objects.put(key, ds, size=2 * max(len(data), len(ds.PixelData) if "PixelData" in ds else 0))
    return ds


def viewer_frame(info: InstanceInfo, number: int) -> Response:
    """One frame of `info` for the viewer: its samples, with ``X-`` headers saying how to show them."""
    _, frames = _caches()
    key = (info.sop_uid, info.version, number)
    decoded = frames.get(key)
    if decoded is None:
        try:
            decoded = decode_frame(load_object(info), number, _decoding())
        except FrameError as exc:
            _refuse(exc)
        frames.put(key, decoded)
    if transfer.accepts_packed(request.headers.get("Accept", "")) and transfer.packs(decoded):
        response = Response(_packed_body((*key, transfer.PACKED), decoded), mimetype=transfer.PACKED)
    else:
        response = Response(decoded.samples, mimetype="application/octet-stream")
    response.headers.update(decoded.headers())
    response.vary.add("Accept")
    return response


def _packed_body(key: tuple[Any, ...], decoded: Frame) -> bytes | Iterator[bytes]:
    """The packed parts of `decoded`: cached, or streamed as they are encoded and cached once sent."""
    _, frames = _caches()
    cached = frames.get(key)
    return cached if cached is not None else _caching(frames, key, transfer.parts(decoded))


def _caching(cache: MemoryCache, key: tuple[Any, ...], pieces: Iterator[bytes]) -> Iterator[bytes]:
    sent = []
    for piece in pieces:
        sent.append(piece)
        yield piece
    body = b"".join(sent)
    cache.put(key, body, size=len(body))
