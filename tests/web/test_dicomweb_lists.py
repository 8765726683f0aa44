"""QIDO-RS lists of series and instances, and the UIDs and frames that are not found."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, generate_uid

from tests.data.make_series import make_us_cine
from tests.web.dicomweb_helpers import DICOM_JSON, Study, _json_value, frame_url, store_one
from tests.web.web_helpers import Browser

# QIDO-RS lists.


def test_series_list_is_dicom_json_with_the_series_attributes(doc: Browser, mixed: Study) -> None:
    response = doc.get(f"/dicomweb/studies/{mixed.uid}/series")
    assert response.status_code == 200
    assert response.mimetype == DICOM_JSON
    first = response.json[0]
    assert {"0020000D", "0020000E", "00080060", "00200011", "00201209"} <= set(first)
    assert _json_value(first, "0020000D") == mixed.uid
    assert _json_value(first, "00080060") == "CT"
    assert _json_value(first, "00201209") == 2


def test_series_are_listed_by_series_number(doc: Browser, mixed: Study) -> None:
    listed = doc.get(f"/dicomweb/studies/{mixed.uid}/series").json
    assert [_json_value(s, "00200011") for s in listed] == [2, 3, 10]
    assert [_json_value(s, "0020000E") for s in listed] == list(mixed.series)


def test_instance_list_is_dicom_json_with_the_instance_attributes(doc: Browser, mixed: Study) -> None:
    series_uid = list(mixed.series)[2]
    response = doc.get(f"/dicomweb/studies/{mixed.uid}/series/{series_uid}/instances")
    assert response.status_code == 200
    assert response.mimetype == DICOM_JSON
    first = response.json[0]
    assert {"00080018", "0020000D", "0020000E", "00200013", "00280010", "00280011"} <= set(first)
    assert _json_value(first, "0020000E") == series_uid
    assert (_json_value(first, "00280010"), _json_value(first, "00280011")) == (16, 16)


def test_instance_list_names_each_instances_sop_class(doc: Browser, mixed: Study) -> None:
    """SOP Class UID is a required return key of QIDO-RS instances (PS3.18 Table 6.7.1-2a)."""
    series_uid = list(mixed.series)[2]
    listed = doc.get(f"/dicomweb/studies/{mixed.uid}/series/{series_uid}/instances").json
    assert {_json_value(i, "00080016") for i in listed} == {CTImageStorage}


def test_instances_are_listed_by_instance_number(doc: Browser, mixed: Study) -> None:
    series_uid = list(mixed.series)[2]  # the 12 slices, stored shuffled
    listed = doc.get(f"/dicomweb/studies/{mixed.uid}/series/{series_uid}/instances").json
    assert [_json_value(i, "00200013") for i in listed] == list(range(1, 13))
    assert [_json_value(i, "00080018") for i in listed] == [sop for sop, _ in mixed.series[series_uid]]


# Not found.


def test_frame_beyond_the_object_is_not_found(doc: Browser, ct: Study, tmp_path: Path) -> None:
    assert doc.get(ct.frame_url(1)).status_code == 200
    assert doc.get(ct.frame_url(2)).status_code == 404
    assert doc.get(ct.frame_url(0)).status_code == 404
    cine = store_one(doc.web.pacs, make_us_cine(tmp_path, frames=3, rows=8, columns=8)[0])
    assert doc.get(cine.frame_url(3)).status_code == 200
    assert doc.get(cine.frame_url(4)).status_code == 404


def test_uids_of_another_study_or_series_are_not_found(doc: Browser, ct: Study, mixed: Study) -> None:
    other_series = mixed.series_uid
    urls = [
        frame_url(mixed.uid, ct.series_uid, ct.sop(), 1),  # another study
        frame_url(ct.uid, other_series, ct.sop(), 1),  # another series
        frame_url(ct.uid, ct.series_uid, mixed.sop(), 1),  # an object of another study
        f"/dicomweb/studies/{generate_uid()}/series",  # no such study
        f"/studies/{mixed.uid}/instances/{ct.sop()}/tags",
    ]
    for url in urls:
        response = doc.get(url)
        assert response.status_code == 404, url
        assert b"QUIXOTE" not in response.data
    # A list is a search: the series of another study matches nothing here.
    response = doc.get(f"/dicomweb/studies/{ct.uid}/series/{other_series}/instances")
    assert response.status_code in (200, 204) and not response.get_json(silent=True)


@pytest.mark.parametrize("bad", ["not-a-uid", "1..2", "1.2.3a", ".1.2", "1.2 ", "9" * 65])
def test_malformed_uids_are_not_found(doc: Browser, ct: Study, bad: str) -> None:
    urls = [
        f"/dicomweb/studies/{bad}/series",
        f"/dicomweb/studies/{bad}/series/{ct.series_uid}/instances",
        f"/dicomweb/studies/{ct.uid}/series/{bad}/instances",
        frame_url(bad, ct.series_uid, ct.sop(), 1),
        frame_url(ct.uid, bad, ct.sop(), 1),
        frame_url(ct.uid, ct.series_uid, bad, 1),
        f"/studies/{ct.uid}/instances/{bad}/tags",
        f"/studies/{bad}",
        f"/studies/{bad}/download",
    ]
    for url in urls:
        assert doc.get(url).status_code == 404, url
