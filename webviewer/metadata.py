"""WADO-RS metadata and bulk data (PS3.18 10.4): instances as DICOM JSON, large values by URI.

``/studies/{s}/metadata``, ``/studies/{s}/series/{se}/metadata`` and
``/studies/{s}/series/{se}/instances/{i}/metadata`` answer a DICOM JSON array (PS3.18 F.2),
one object per current instance in display order: the texts written at ingest and kept in the
index (:class:`storage.json_texts.JsonTexts`, one query for a series), or built from the data set
before Pixel Data for an object that has none yet (:mod:`storage.instance_json`). Pixel Data and
every binary value longer than :data:`~storage.dicomjson.BULK_THRESHOLD` bytes (also within
sequences) are given as a ``BulkDataURI`` under the instance's ``bulkdata/``:
``bulkdata/7FE00010`` for Pixel Data, ``bulkdata/{tag}`` or ``bulkdata/{sequence}/{item}/{tag}``
(items from 1) for the others. Those answer ``multipart/related; type="application/octet-stream"``:
one part with the value; for Pixel Data in a compressed transfer syntax, one part per frame
(its fragments joined) typed ``application/octet-stream; transfer-syntax={UID}``.

Each instance's JSON text is also kept in a memory cache bounded by ``[web] metadata_cache_mb``,
keyed by SOP Instance UID, version and blob, with :data:`storage.instance_json.ROOT` in place of
the request's root (so one entry serves every host name). Access is audited as the study's
(:func:`webviewer.dicomweb.audited_once`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from pydicom.dataset import Dataset
from pydicom.uid import UID

from storage.archive import Archive, InstanceInfo, NotFoundError
from storage.dicomjson import BINARY_VRS
from storage.instance_json import ROOT, has_pixels
from webviewer.auth import physician_required
from webviewer.dicomweb import DICOM_JSON, audited_once, check_uid, find_instance
from webviewer.multipart import Part, content_type, new_boundary, not_acceptable, parse_accept, related
from webviewer.pixels import MemoryCache
from webviewer.urls import service_root

bp = Blueprint("metadata", __name__, url_prefix="/dicomweb")
PIXEL_DATA = "7FE00010"
OCTETS = "application/octet-stream"
_CACHE = "pacs.metadata"


def _archive() -> Archive:
    return current_app.extensions["pacs"].archive


def _cache() -> MemoryCache:
    """The app's cache of instance JSON texts (made on first use)."""
    cache = current_app.extensions.get(_CACHE)
    if cache is None:
        budget = current_app.extensions["pacs"].config.metadata_cache_bytes
        cache = current_app.extensions.setdefault(_CACHE, MemoryCache(budget))
    return cache


def _header(info: InstanceInfo) -> Dataset:
    """The data set of `info` before Pixel Data, or 404 when its blob is gone."""
    try:
        return _archive().dataset_without_pixels(info)
    except NotFoundError:
        abort(404)


def _cache_key(info: InstanceInfo) -> tuple[str, int, str]:
    return (info.sop_uid, info.version, info.ref.blob_id)


def instance_texts(objects: list[InstanceInfo]) -> list[str]:
    """The DICOM JSON texts of `objects`, in order: from the cache, the others from the archive
    (:class:`storage.json_texts.JsonTexts`) and cached; 404 when a blob is gone.
    """
    cache = _cache()
    texts = {_cache_key(info): cache.get(_cache_key(info)) for info in objects}
    missing = [info for info in objects if texts[_cache_key(info)] is None]
    try:
        for info, text in zip(missing, _archive().json_texts.texts(missing) if missing else [], strict=True):
            texts[_cache_key(info)] = text
            cache.put(_cache_key(info), text, size=2 * len(text) + 64)
    except NotFoundError:
        abort(404)
    return [str(texts[_cache_key(info)]) for info in objects]


def _metadata(objects: list[InstanceInfo]) -> Response:
    """The DICOM JSON array of `objects`, with this request's root in its URIs."""
    if not objects:
        abort(404)
    body = "[" + ",".join(instance_texts(objects)) + "]"
    return Response(body.replace(ROOT, service_root()), mimetype=DICOM_JSON)


def _study_objects(study: str) -> list[InstanceInfo]:
    try:
        return _archive().study_instances(check_uid(study))
    except NotFoundError:
        abort(404)


@bp.get("/studies/<study>/metadata")
@physician_required
def study_metadata(study: str) -> Response:
    """WADO-RS: the metadata of every current instance of a study."""
    objects = _study_objects(study)
    audited_once(study)
    return _metadata(objects)


@bp.get("/studies/<study>/series/<series_uid>/metadata")
@physician_required
def series_metadata(study: str, series_uid: str) -> Response:
    """WADO-RS: the metadata of every current instance of a series."""
    check_uid(series_uid)
    objects = [info for info in _study_objects(study) if info.series_uid == series_uid]
    if objects:
        audited_once(study)
    return _metadata(objects)


@bp.get("/studies/<study>/series/<series_uid>/instances/<sop>/metadata")
@physician_required
def instance_metadata(study: str, series_uid: str, sop: str) -> Response:
    """WADO-RS: the metadata of one instance (an array of one)."""
    info = find_instance(study, series_uid, sop)
    audited_once(study)
    return _metadata([info])


# -- bulk data -----------------------------------------------------------------------------------


def _check_accept() -> None:
    """406 unless the request accepts multipart/related of octet-stream (or anything)."""
    ranges = parse_accept(request.headers.get("Accept")) if request.headers.get("Accept") else []
    if not ranges:
        return
    for found in ranges:
        if found.media_type == "*/*":
            return
        if found.media_type == "multipart/related" and found.type_param in (None, OCTETS, "*/*"):
            return
    not_acceptable('bulk data is sent as multipart/related; type="application/octet-stream"')


def _element(ds: Dataset, path: str) -> Any:
    """The value at `path` (``tag`` or ``sequence/item/tag``...) of `ds`, if it is binary; else 404."""
    parts = path.split("/")
    if len(parts) % 2 == 0 or not all(len(part) == 8 for part in parts[::2]):
        abort(404)
    try:
        for sequence, number in zip(parts[:-1:2], parts[1::2], strict=True):
            ds = ds[int(sequence, 16)].value[int(number) - 1]
        elem = ds[int(parts[-1], 16)]
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        abort(404)
    if elem.VR not in BINARY_VRS or elem.value is None:
        abort(404)
    return elem.value


def _pixel_parts(archive: Archive, info: InstanceInfo, ds: Dataset) -> Iterator[Part]:
    """The parts of Pixel Data: native as one part of every frame's bytes, compressed one per frame.

    A generator run as the answer streams, so it is given the archive (no app context then).
    """
    frames = int(ds.get("NumberOfFrames") or 1)
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if UID(syntax).is_compressed:
        for number in range(1, frames + 1):
            data = archive.frame_bytes(info, number)
            yield Part(f"{OCTETS}; transfer-syntax={syntax}", [data])
        return
    yield Part(OCTETS, (archive.frame_bytes(info, number) for number in range(1, frames + 1)))


def _byte_aligned(ds: Dataset) -> bool:
    """Whether each native frame starts on a byte (so the frames joined are the value)."""
    samples = int(ds.get("SamplesPerPixel") or 1)
    return int(ds.Rows) * int(ds.Columns) * samples * int(ds.BitsAllocated) % 8 == 0


@bp.get("/studies/<study>/series/<series_uid>/instances/<sop>/bulkdata/<path:path>")
@physician_required
def bulkdata(study: str, series_uid: str, sop: str, path: str) -> Response:
    """WADO-RS: one bulk data value of an instance (a BulkDataURI of its metadata)."""
    info = find_instance(study, series_uid, sop)
    _check_accept()
    ds = _header(info)
    audited_once(study)
    if path.upper() == PIXEL_DATA:
        if not has_pixels(ds):
            abort(404)
        if not UID(str(ds.file_meta.get("TransferSyntaxUID", ""))).is_compressed and not _byte_aligned(ds):
            not_acceptable("the frames of this object are bit-packed: fetch them from /frames")
        parts: Iterator[Part] = _pixel_parts(_archive(), info, ds)
    else:
        parts = iter([Part(OCTETS, [bytes(_element(ds, path.upper()))])])
    boundary = new_boundary()
    return Response(related(parts, boundary), content_type=content_type(OCTETS, boundary))
