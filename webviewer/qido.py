"""QIDO-RS: the series and instance lists of a study, in the DICOM JSON model (PS3.18 10.6).

The viewer reads the same lists. Every access is audited through
:func:`webviewer.dicomweb.audited_once`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from pydicom.dataset import Dataset

from storage.archive import Archive
from webviewer.auth import physician_required
from webviewer.dicomweb import DICOM_JSON, audited_once, check_uid

bp = Blueprint("qido", __name__, url_prefix="/dicomweb")
_SERIES_KEYS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)


def _archive() -> Archive:
    return current_app.extensions["pacs"].archive


def _json_model(datasets: list[Dataset]) -> list[dict[str, Any]]:
    body = []
    for ds in datasets:
        for keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            if keyword in ds:
                delattr(ds, keyword)
        body.append(ds.to_json_dict())
    return body


def _query(**keys: str | None) -> Dataset:
    """An identifier with these keys (None: return it, match anything)."""
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def series_list(study: str) -> list[dict[str, Any]]:
    """The series of `study` in the DICOM JSON model, by series number."""
    query = _query(StudyInstanceUID=study, **dict.fromkeys(_SERIES_KEYS))
    return _json_model(_archive().find("SERIES", query))


def instance_list(study: str, series_uid: str) -> list[dict[str, Any]]:
    """The current instances of a series in the DICOM JSON model, in display order."""
    return [
        {
            "0020000D": {"vr": "UI", "Value": [study]},
            "0020000E": {"vr": "UI", "Value": [series_uid]},
            "00080016": {"vr": "UI", "Value": [image.sop_class_uid]},
            "00080018": {"vr": "UI", "Value": [image.sop_uid]},
            **_integer("00200013", "IS", image.instance_number),
            **_integer("00280008", "IS", image.frames or 1),
            **_integer("00280010", "US", image.rows),
            **_integer("00280011", "US", image.columns),
        }
        for image in _archive().series_images(study, series_uid)
    ]


def _dicom_json(body: list[dict[str, Any]]) -> Response:
    response = jsonify(body)
    response.mimetype = DICOM_JSON
    return response


@bp.get("/studies/<study>/series")
@physician_required
def series(study: str) -> Response:
    """QIDO-RS: the series of a study, by series number."""
    audited_once(check_uid(study))
    return _dicom_json(series_list(study))


@bp.get("/studies/<study>/series/<series_uid>/instances")
@physician_required
def instances(study: str, series_uid: str) -> Response:
    """QIDO-RS: the current instances of a series, by instance number."""
    audited_once(check_uid(study))
    return _dicom_json(instance_list(study, check_uid(series_uid)))


def _integer(tag: str, vr: str, value: int | None) -> dict[str, dict[str, Any]]:
    return {tag: {"vr": vr, "Value": [value]} if value is not None else {"vr": vr}}
