"""QIDO-RS: searches for studies, series and instances in the DICOM JSON model (PS3.18 10.6).

Every level at every scope: ``/studies``, ``/series``, ``/instances``, ``/studies/{s}/series``,
``/studies/{s}/instances`` and ``/studies/{s}/series/{se}/instances``. The query parameters
(:mod:`webviewer.qido_query`) are matched by C-FIND's matching (:mod:`storage.matching`) over
the index alone: counts and modalities are columns there, so a page is one SELECT. Each
result holds the required attributes of its level (PS3.18 Table 6.7.1-2 / 6.7.1-2a; a
search of all series or instances adds those of the levels above; Timezone Offset From UTC,
kept per study, only where the study's objects carry it), those asked for with
``includefield`` that the index holds, an absolute RetrieveURL and InstanceAvailability
``ONLINE``. No match is ``200`` with ``[]``. Results beyond :data:`MAX_RESULTS` of a level
are cut with the Warning of PS3.18 8.3.4.4; ``fuzzymatching=true`` is answered with the
standard's Warning that only literal matching was done (names match case-insensitively).

Every search is audited as a query (its level, keys and the number of matches); a search
within a study is also that study's access (:func:`webviewer.dicomweb.audited_once`). The
viewer embeds :func:`series_list` and :func:`instance_list`, the same answers unaudited.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Blueprint, Response, current_app
from pydicom.datadict import dictionary_VR, tag_for_keyword

from pacs.core.access_events import query_run
from storage import matching
from storage.archive import Archive
from webviewer.auth import me, physician_required, record, source
from webviewer.dicomweb import DICOM_JSON, audited_once, check_uid
from webviewer.qido_query import Search, bad_request, read_search
from webviewer.urls import service_root

bp = Blueprint("qido", __name__, url_prefix="/dicomweb")

# The most results of one search at each level; more are cut with a Warning.
MAX_RESULTS = {"STUDY": 1000, "SERIES": 1000, "IMAGE": 10000}
CUT = (
    '299 {service}: "The number of results exceeded the maximum supported by the server. '
    'Additional results can be requested."'
)
NOT_FUZZY = (
    '299 {service}: "The fuzzymatching parameter is not supported. Only literal matching has been performed."'
)
UNSUPPORTED = '299 {service}: "The following attributes are not supported and are not returned: {names}"'

STUDY_KEYS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "TimezoneOffsetFromUTC",
)
SERIES_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
    "TimezoneOffsetFromUTC",
)
INSTANCE_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
    "TimezoneOffsetFromUTC",
)
# Keys left out of a result, rather than sent empty, where the index holds no value.
IF_PRESENT = frozenset({"TimezoneOffsetFromUTC"})
_LEVEL_KEYS = {"STUDY": STUDY_KEYS, "SERIES": SERIES_KEYS, "IMAGE": INSTANCE_KEYS}
_ABOVE = {"STUDY": (), "SERIES": ("STUDY",), "IMAGE": ("STUDY", "SERIES")}
_RETRIEVE_URL, _AVAILABILITY = "00081190", "00080056"


def _archive() -> Archive:
    return current_app.extensions["pacs"].archive


def _service() -> str:
    """The DICOMweb root of this request, absolute (for RetrieveURLs and Warnings)."""
    return service_root()


def returned_keys(level: str, scoped: int) -> list[str]:
    """The keys every result of a `level` search returns; `scoped`: how many levels above the
    URL names (0: a search of the whole archive adds the required keys of every level above)."""
    levels = [*_ABOVE[level][scoped:], level]
    return list(dict.fromkeys(key for each in levels for key in _LEVEL_KEYS[each]))


def _all_keys(level: str) -> list[str]:
    """Every key the index holds at `level` and above (``includefield=all``)."""
    depth = matching.LEVELS.index(level)
    return [kw for kw, key in matching.KEYS.items() if matching.LEVELS.index(key.level) <= depth]


# -- DICOM JSON ----------------------------------------------------------------------------------


def _person_names(value: str) -> list[dict[str, str]]:
    groups = ("Alphabetic", "Ideographic", "Phonetic")
    names = []
    for name in value.split("\\"):
        parts = zip(groups, name.split("="), strict=False)
        names.append({group: part for group, part in parts if part})
    return names


def _texts(value: Any) -> list[Any]:
    return str(value).split("\\")


def _numbers(value: Any) -> list[Any]:
    return [int(value)]


_FORMATS: dict[str, Callable[[Any], list[Any]]] = {"PN": _person_names, "IS": _numbers, "US": _numbers}


def _slots(keys: Iterable[str]) -> list[tuple[str, str, str, Callable[[Any], list[Any]]]]:
    """(keyword, tag as 8 hex digits, VR, how a value becomes a JSON Value) of `keys`, by tag."""
    tags = sorted((tag_for_keyword(keyword), keyword) for keyword in keys)
    found = []
    for tag, keyword in tags:
        vr = dictionary_VR(tag)
        found.append((keyword, f"{tag:08X}", vr, _FORMATS.get(vr, _texts)))
    return found


def _retrieve_url(service: str, level: str, row: Mapping[str, Any]) -> str:
    url = f"{service}/studies/{row['StudyInstanceUID']}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{row['SeriesInstanceUID']}"
    if level == "IMAGE":
        url += f"/instances/{row['SOPInstanceUID']}"
    return url


def _json_model(level: str, keys: Iterable[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` (index values by keyword) as DICOM JSON objects with `keys`, a RetrieveURL and availability."""
    slots, service = _slots(keys), _service()
    body = []
    for row in rows:
        item: dict[str, Any] = {}
        for keyword, tag, vr, values in slots:
            value = row.get(keyword)
            if keyword in IF_PRESENT and value in (None, ""):
                continue
            item[tag] = {"vr": vr, "Value": values(value)} if value not in (None, "") else {"vr": vr}
        item[_AVAILABILITY] = {"vr": "CS", "Value": ["ONLINE"]}
        item[_RETRIEVE_URL] = {"vr": "UR", "Value": [_retrieve_url(service, level, row)]}
        body.append(item)
    return body


# -- searching -----------------------------------------------------------------------------------


def _run(
    level: str, keys: dict[str, Any], scope: dict[str, str], *, limit: int | None, offset: int
) -> list[dict[str, Any]]:
    """The index values of the entities within `scope` (UIDs of the URL) that `keys` match, one page."""
    for keyword, uid in scope.items():
        if keyword in keys and keys[keyword] and uid not in str(keys[keyword]).split("\\"):
            return []  # a filter naming another study or series than the URL
    with _archive().database.read() as session:
        rows = matching.find_values(session, level, {**keys, **scope}, limit=limit, offset=offset)
        return list(rows)


def _answer(level: str, scope: dict[str, str], scoped: int) -> Response:
    """Run this request's search at `level` within `scope` (UIDs of the URL) and answer it, audited."""
    wanted = read_search()
    keys = _keys_of(level, wanted, scoped)
    try:
        matching.validate(level, keys)
    except matching.QueryError as exc:
        bad_request(str(exc))
    most = MAX_RESULTS[level]
    take = min(wanted.limit, most) if wanted.limit is not None else most
    rows = _run(level, keys, scope, limit=take + 1, offset=wanted.offset)
    cut = len(rows) > take and (wanted.limit is None or wanted.limit > most)
    rows = rows[:take]
    _audit(level, wanted, scope, len(rows))
    body = json.dumps(_json_model(level, keys, rows), separators=(",", ":"))
    response = Response(body, mimetype=DICOM_JSON)
    warnings = [CUT] if cut else []
    if wanted.fuzzy:
        warnings.append(NOT_FUZZY)
    unsupported = [kw for kw in wanted.included if kw not in matching.KEYS]
    if unsupported:
        warnings.append(UNSUPPORTED.replace("{names}", ", ".join(unsupported)))
    for warning in warnings:
        response.headers.add("Warning", warning.replace("{service}", _service()))
    return response


def _keys_of(level: str, wanted: Search, scoped: int) -> dict[str, Any]:
    """The keys of the search: the filters, and the keys returned (None) that the index holds."""
    returned = returned_keys(level, scoped) + (_all_keys(level) if wanted.all else list(wanted.included))
    keys: dict[str, Any] = dict.fromkeys(kw for kw in returned if kw in matching.KEYS)
    keys.update(wanted.filters)
    return keys


def _audit(level: str, wanted: Search, scope: dict[str, str], matches: int) -> None:
    page = {name: value for name, value in (("limit", wanted.limit), ("offset", wanted.offset)) if value}
    record(
        query_run(
            by=me(),
            source=source(),
            patient_id=str(wanted.filters.get("PatientID", ""))[:64],
            study_uid=scope.get("StudyInstanceUID", ""),
            what="QIDO-RS",
            level=level,
            keys=dict(wanted.filters),
            matches=matches,
            **page,
        )
    )


@bp.get("/studies")
@physician_required
def studies() -> Response:
    """QIDO-RS: search for studies."""
    return _answer("STUDY", {}, 0)


@bp.get("/series")
@physician_required
def all_series() -> Response:
    """QIDO-RS: search for series in every study."""
    return _answer("SERIES", {}, 0)


@bp.get("/instances")
@physician_required
def all_instances() -> Response:
    """QIDO-RS: search for instances in every study."""
    return _answer("IMAGE", {}, 0)


@bp.get("/studies/<study>/series")
@physician_required
def series(study: str) -> Response:
    """QIDO-RS: search for the series of a study (by series number)."""
    audited_once(check_uid(study))
    return _answer("SERIES", {"StudyInstanceUID": study}, 1)


@bp.get("/studies/<study>/instances")
@physician_required
def study_instances(study: str) -> Response:
    """QIDO-RS: search for the instances of a study (by series, then instance number)."""
    audited_once(check_uid(study))
    return _answer("IMAGE", {"StudyInstanceUID": study}, 1)


@bp.get("/studies/<study>/series/<series_uid>/instances")
@physician_required
def instances(study: str, series_uid: str) -> Response:
    """QIDO-RS: search for the instances of a series (by instance number)."""
    audited_once(check_uid(study))
    scope = {"StudyInstanceUID": study, "SeriesInstanceUID": check_uid(series_uid)}
    return _answer("IMAGE", scope, 2)


# -- the viewer's lists --------------------------------------------------------------------------


def _listed(level: str, scope: dict[str, str]) -> list[dict[str, Any]]:
    """Every entity at `level` within `scope`, with the keys a search within that scope returns."""
    keys = dict.fromkeys(returned_keys(level, len(scope)))
    return _json_model(level, keys, _run(level, keys, scope, limit=None, offset=0))


def series_list(study: str) -> list[dict[str, Any]]:
    """The series of `study` in the DICOM JSON model, by series number."""
    return _listed("SERIES", {"StudyInstanceUID": study})


def instance_list(study: str, series_uid: str) -> list[dict[str, Any]]:
    """The current instances of a series in the DICOM JSON model, in display order."""
    return _listed("IMAGE", {"StudyInstanceUID": study, "SeriesInstanceUID": series_uid})
