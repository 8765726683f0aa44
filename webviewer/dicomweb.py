"""DICOMweb access shared by the Studies Service's endpoints, and the viewer's form of a frame.

Objects are looked up by their UIDs and must belong to the study and series in the URL
(:func:`find_instance`); the first access of a session to a study is audited
(:func:`audited_once`), so the API cannot be used to read a study unaudited. A frame
for the viewer (:func:`viewer_frame`) is its samples as ``application/octet-stream`` and ``X-``
headers that say how to show them (see :class:`webviewer.pixels.Frame`), decoded from the
object's header and that frame's stored bytes alone (:func:`load_header`,
:meth:`storage.archive.Archive.frame_bytes`: a frame of a 2 GB object costs what the frame
does); a large frame asked for as :data:`webviewer.transfer.PACKED` comes losslessly packed,
its preview first (see :mod:`webviewer.transfer`), and the packed body is cached beside the
decoded frame. The lists are in :mod:`webviewer.qido`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, NoReturn

from flask import Response, abort, current_app, request, session
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from pacs.core.access_events import study_viewed
from storage.archive import Archive, InstanceInfo, NotFoundError
from storage.framemap import FrameMapError, NoSuchFrameError
from storage.header import is_valid_uid
from webviewer import transfer
from webviewer.apiauth import current_token
from webviewer.auth import me, record, source
from webviewer.decodelimits import DecodeLimits, FrameError
from webviewer.pixels import Frame, MemoryCache, decode_frame

DICOM_JSON = "application/dicom+json"
HEADER_COST = 24  # memory of a parsed header per byte of its encoding (about 20 once every element is read)


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
    """Audit this session's first access to `study` (the viewer page counts as one).

    A request authenticated by a token uses no session: its token's access to `study` is
    audited unless that was done in the last few minutes (:meth:`pacs.core.tokens.Tokens.accessed_recently`).
    """
    token = current_token()
    if token is None:
        if study not in session.get("opened", []):
            audit_study_access(study_summary(study), how="dicomweb")
            remember_audited(study)
        return
    tokens = current_app.extensions["pacs"].tokens
    if not tokens.accessed_recently(token.id, study):
        audit_study_access(study_summary(study), how=f"dicomweb, access token {token.prefix}")
        tokens.note_access(token.id, study)


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


def load_header(info: InstanceInfo) -> Dataset:
    """The object's data set before Pixel Data, with its file meta, from the memory cache if there.

    That is all a document, the tags or a frame's attributes need; only the blob's chunks
    before Pixel Data are decrypted. A deflated data set is read only when it inflates
    within the decoding limit (the frame map knows its size); otherwise the request ends with 422.
    """
    objects, _ = _caches()
    key = (info.sop_uid, info.version)
    ds = objects.get(key)
    if ds is None:
        archive, limit = _archive(), _decoding().max_frame_bytes
        found = archive.frame_map(info)
        if info.transfer_syntax == DeflatedExplicitVRLittleEndian and found.dataset_end > limit:
            _refuse(
                FrameError(
                    f"the deflated data set inflates to more than {limit / 2**20:,.1f} MiB, "
                    "the largest the viewer decodes ([web] max_frame_mb)"
                )
            )
        ds = archive.dataset_without_pixels(info)
        objects.put(key, ds, size=HEADER_COST * found.pixel_start + 4096)
    return ds


def stored_frame(info: InstanceInfo, number: int) -> bytes:
    """The stored bytes of frame `number` of `info` (a frame that cannot be found: 422)."""
    try:
        return _archive().frame_bytes(info, number)
    except FrameMapError as exc:
        raise FrameError(str(exc), 404 if isinstance(exc, NoSuchFrameError) else 422) from exc


def decoded_frame(info: InstanceInfo, number: int) -> Frame:
    """Frame `number` of `info` decoded (from the frame cache when there); :class:`FrameError` if impossible.

    Only the object's header and the chunks of the blob that hold the frame are decrypted.
    """
    _, frames = _caches()
    key = (info.sop_uid, info.version, number)
    decoded = frames.get(key)
    if decoded is None:
        header = load_header(info)
        has_pixels = _archive().frame_map(info).has_pixels
        decoded = decode_frame(
            header, number, _decoding(), partial(stored_frame, info, number) if has_pixels else None
        )
        frames.put(key, decoded)
    return decoded


def viewer_frame(info: InstanceInfo, number: int) -> Response:
    """One frame of `info` for the viewer: its samples, with ``X-`` headers saying how to show them."""
    key = (info.sop_uid, info.version, number)
    try:
        decoded = decoded_frame(info, number)
    except FrameError as exc:
        _refuse(exc)
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
