"""WADO-RS (PS3.18 10.4): retrieve of studies, series and instances; frames; rendered images and thumbnails.

A retrieve answers ``multipart/related; type="application/dicom"``, one part per object in
series and instance order, each with its ``Content-Location``. An object goes in its stored
transfer syntax when the client names it, asks ``transfer-syntax=*``, or names none (PS3.18
would default to Explicit VR Little Endian; sending the stored object unchanged is what
clients expect and costs nothing). Otherwise it is transcoded to an accepted uncompressed
syntax (:func:`pacs.ops.transcode.transcode_for`). Objects that cannot be sent as asked are
left out: the answer is then 206 with a ``Warning`` saying how many and why, or 406 when none
can be sent. Stored objects are streamed a blob chunk at a time, never read whole; an answer
of stored objects only declares its ``Content-Length`` (their sizes are in the index), so it
is not sent chunked. Every
retrieve is audited as an export of its objects, and the study as accessed
(:func:`webviewer.dicomweb.audited_once`). Frames are :mod:`webviewer.wado_frames`, rendered
images :mod:`webviewer.rendered`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from logging import Logger

import pydicom
import pydicom.errors
from flask import Blueprint, Response, abort, current_app, request
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from pacs.core.access_events import study_downloaded
from pacs.ops.decodelimits import FrameError, FrameLimit, check_codestream, geometry
from pacs.ops.transcode import TranscodeError, target_syntax, transcode_file
from storage.archive import Archive, InstanceInfo, NotFoundError
from storage.errors import PacsError
from storage.instance_json import instance_path
from webviewer import rendered, wado_frames
from webviewer.auth import me, physician_required, record, source
from webviewer.dicomweb import audited_once, check_uid, find_instance
from webviewer.multipart import (
    Part,
    content_type,
    new_boundary,
    not_acceptable,
    parse_accept,
    related,
    related_length,
)

bp = Blueprint("wado", __name__, url_prefix="/dicomweb")
DICOM = "application/dicom"


@dataclass(frozen=True)
class Wanted:
    """The transfer syntaxes a client takes objects in: those it names, and whether any (``*``) will do."""

    syntaxes: tuple[str, ...]
    anything: bool


def wanted_syntaxes(accept: str | None) -> Wanted:
    """What an ``Accept`` header asks of application/dicom objects; 406 when it asks for something else."""
    ranges = parse_accept(accept)
    if not ranges:
        return Wanted((), anything=True)
    named: list[str] = []
    anything = False
    for found in ranges:
        dicom = found.media_type == "multipart/related" and found.type_param in (None, DICOM)
        if not (dicom or found.media_type in ("*/*", "multipart/*")):
            continue
        syntax = found.transfer_syntax if dicom else None
        if syntax in (None, "*"):
            anything = True
        else:
            named.append(syntax)
    if not (named or anything):
        not_acceptable(f'objects are sent as multipart/related; type="{DICOM}" only')
    return Wanted(tuple(named), anything)


def plan(info: InstanceInfo, wanted: Wanted) -> str:
    """The transfer syntax `info` goes out in; :class:`TranscodeError` when it cannot be sent as wanted."""
    stored = info.transfer_syntax
    if wanted.anything or stored in wanted.syntaxes:
        return stored
    target = target_syntax(stored, wanted.syntaxes)
    if UID(stored).is_compressed:
        try:
            available = get_decoder(stored).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise TranscodeError(f"{UID(stored).name} cannot be decoded here")
    return target


def location(info: InstanceInfo) -> str:
    """The Studies Service's URL of `info`."""
    return "/dicomweb" + instance_path(info.study_uid, info.series_uid, info.sop_uid)


def decodable(archive: Archive, info: InstanceInfo, limit: FrameLimit) -> None:
    """Refuse (:class:`FrameError`) an object to transcode whose frames `limit` or their streams forbid.

    Checked before the answer starts, from the header and each frame's own stream header,
    so that such an object is left out with its reason instead of failing mid-answer.
    """
    shape = geometry(archive.dataset_without_pixels(info))
    limit.check(shape.native_bytes, "a frame")
    if UID(info.transfer_syntax).is_encapsulated:
        for number in range(1, shape.frames + 1):
            check_codestream(info.transfer_syntax, archive.frame_bytes(info, number), shape)


@dataclass(frozen=True)
class _Sender:
    """Makes the parts of an answer (nothing in it needs the request's context, which has ended by then)."""

    archive: Archive
    limit: FrameLimit
    log: Logger

    def transcoded(self, info: InstanceInfo, syntax: str) -> bytes:
        """The object of `info` as a file in `syntax` (the stored object is not changed)."""
        with self.archive.open_instance(info) as stream:
            data = stream.read()
        out = transcode_file(data, info.transfer_syntax, [syntax], self.limit)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, out, enforce_file_format=True)
        return buffer.getvalue()

    def parts(self, plans: list[tuple[InstanceInfo, str]]) -> Iterator[Part]:
        """The parts of `plans`: stored objects streamed, transcoded ones built before their part starts.

        An object that fails to transcode once the answer has begun is left out (and logged):
        its part has not started, so the others still arrive whole.
        """
        for info, syntax in plans:
            kind = f"{DICOM}; transfer-syntax={syntax}"
            if syntax == info.transfer_syntax:  # read once the part is sent; its size is in the index
                yield Part(kind, self.archive.read_instance(info), location(info), size=info.size)
                continue
            try:
                data = self.transcoded(info, syntax)
            except (PacsError, pydicom.errors.InvalidDicomError) as exc:
                self.log.warning("WADO-RS left %s out: %s", info.sop_uid, exc)
                continue
            yield Part(kind, (data,), location(info))


def _retrieve(study: str, objects: list[InstanceInfo]) -> Response:
    """The multipart answer of `objects` of `study`, as the ``Accept`` header asks (audited)."""
    wanted = wanted_syntaxes(request.headers.get("Accept"))
    services = current_app.extensions["pacs"]
    plans, refused = [], []
    for info in objects:
        try:
            syntax = plan(info, wanted)
            if syntax != info.transfer_syntax:
                decodable(services.archive, info, services.decoding)
            plans.append((info, syntax))
        except (TranscodeError, FrameError) as exc:
            refused.append(str(exc))
    if not plans:
        not_acceptable(refused[0])
    audited_once(study)
    patient_id = objects[0].patient_id
    how, count = "over WADO-RS", len(plans)
    record(
        study_downloaded(
            me(), source=source(), patient_id=patient_id, study_uid=study, instances=count, how=how
        )
    )
    sender = _Sender(services.archive, services.decoding, current_app.logger)
    boundary = new_boundary()
    as_stored = all(syntax == info.transfer_syntax for info, syntax in plans)
    parts: Iterable[Part] = list(sender.parts(plans)) if as_stored else sender.parts(plans)
    body = related(parts, boundary)
    response = Response(body, status=206 if refused else 200, content_type=content_type(DICOM, boundary))
    if as_stored:
        response.content_length = related_length(parts, boundary)
    if refused:
        reason = refused[0].replace('"', "'")
        response.headers["Warning"] = f'299 - "{len(refused)} of {len(objects)} objects left out: {reason}"'
    response.vary.add("Accept")
    return response


def _study_objects(study: str) -> list[InstanceInfo]:
    try:
        return current_app.extensions["pacs"].archive.study_instances(check_uid(study))
    except NotFoundError:
        abort(404)


def _series_objects(study: str, series_uid: str) -> list[InstanceInfo]:
    check_uid(series_uid)
    found = [info for info in _study_objects(study) if info.series_uid == series_uid]
    if not found:
        abort(404)
    return found


@bp.get("/studies/<study>")
@physician_required
def retrieve_study(study: str) -> Response:
    """WADO-RS: every object of a study."""
    return _retrieve(study, _study_objects(study))


@bp.get("/studies/<study>/series/<series_uid>")
@physician_required
def retrieve_series(study: str, series_uid: str) -> Response:
    """WADO-RS: every object of a series."""
    return _retrieve(study, _series_objects(study, series_uid))


@bp.get("/studies/<study>/series/<series_uid>/instances/<sop>")
@physician_required
def retrieve_instance(study: str, series_uid: str, sop: str) -> Response:
    """WADO-RS: one object."""
    return _retrieve(study, [find_instance(study, series_uid, sop)])


@bp.get("/studies/<study>/series/<series_uid>/instances/<sop>/frames/<frame_list>")
@physician_required
def frames(study: str, series_uid: str, sop: str, frame_list: str) -> Response:
    """WADO-RS: frames of an instance (PS3.18 multipart, or the viewer's own form of one frame)."""
    info = find_instance(study, series_uid, sop)
    numbers = wado_frames.frame_numbers(frame_list)
    audited_once(study)
    return wado_frames.answer(info, numbers, location(info))


def _representative(study: str, series_uids: list[str]) -> InstanceInfo:
    """The middle image of the first of `series_uids` that has images (a thumbnail's source), or 404."""
    archive = current_app.extensions["pacs"].archive
    for series_uid in series_uids:
        images = [image for image in archive.series_images(study, series_uid) if image.rows]
        if images:
            return find_instance(study, series_uid, images[len(images) // 2].sop_uid)
    abort(404)


def _one_frame(frame_list: str) -> int:
    """The one frame number of a rendered frame's URL (400 for a malformed list, 406 for several)."""
    numbers = wado_frames.frame_numbers(frame_list)
    if len(numbers) != 1:
        not_acceptable("one frame is rendered at a time")
    return numbers[0]


def _images(objects: list[InstanceInfo]) -> list[tuple[InstanceInfo, str]]:
    return [(info, location(info)) for info in objects]


@bp.get("/studies/<study>/series/<series_uid>/instances/<sop>/<any(rendered, thumbnail):kind>")
@bp.get(
    "/studies/<study>/series/<series_uid>/instances/<sop>/frames/<frame_list>/<any(rendered, thumbnail):kind>"
)
@physician_required
def rendered_instance(study: str, series_uid: str, sop: str, kind: str, frame_list: str = "1") -> Response:
    """WADO-RS: a frame (the first, for an instance) rendered as JPEG or PNG, or as a thumbnail."""
    info = find_instance(study, series_uid, sop)
    audited_once(study)
    return rendered.rendered_frame(info, _one_frame(frame_list), thumbnail=kind == "thumbnail")


@bp.get("/studies/<study>/series/<series_uid>/rendered")
@physician_required
def rendered_series(study: str, series_uid: str) -> Response:
    """WADO-RS: each instance of a series rendered (its first frame), as multipart/related."""
    objects = _series_objects(study, series_uid)
    audited_once(study)
    return rendered.rendered_many(_images(objects))


@bp.get("/studies/<study>/rendered")
@physician_required
def rendered_study(study: str) -> Response:
    """WADO-RS: each instance of a study rendered (its first frame), as multipart/related."""
    objects = _study_objects(study)
    audited_once(study)
    return rendered.rendered_many(_images(objects))


@bp.get("/studies/<study>/series/<series_uid>/thumbnail")
@physician_required
def thumbnail_series(study: str, series_uid: str) -> Response:
    """WADO-RS: a small rendered image of the series' middle image."""
    info = _representative(check_uid(study), [check_uid(series_uid)])
    audited_once(study)
    return rendered.rendered_frame(info, 1, thumbnail=True)


@bp.get("/studies/<study>/thumbnail")
@physician_required
def thumbnail_study(study: str) -> Response:
    """WADO-RS: a small rendered image of the middle image of the study's first series with images."""
    series = list(dict.fromkeys(info.series_uid for info in _study_objects(study)))
    info = _representative(study, series)
    audited_once(study)
    return rendered.rendered_frame(info, 1, thumbnail=True)
