"""QIDO-RS returns Bits Allocated and Timezone Offset From UTC (PS3.18 Table 6.7.1-2/2a), on both backends.

Bits Allocated is a required key of every instance result; Timezone Offset From UTC is
returned at every level when the study's objects carry it and is left out otherwise.
C-FIND's matching, which QIDO-RS shares, returns both when an identifier asks for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from storage import matching
from tests.data.make_series import make_ct_series, make_us_cine
from tests.web.dicomweb_helpers import Study, _json_value, rewritten, store_study
from tests.web.test_dicomweb_qido import search
from tests.web.web_helpers import Browser, Web

BITS_ALLOCATED, TIMEZONE = "00280100", "00080201"


@pytest.fixture(scope="module")
def offset_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two CT slices that carry Timezone Offset From UTC -0500."""
    root = tmp_path_factory.mktemp("offset")
    slices = make_ct_series(root / "ct", slices=2, rows=16, columns=16, patient_id="PID-TZ")
    return [rewritten(path, root / path.name, TimezoneOffsetFromUTC="-0500") for path in slices]


@pytest.fixture
def offset_study(web: Web, offset_files: list[Path]) -> Study:
    return store_study(web.pacs, offset_files)


def _by(items: list[dict[str, Any]], tag: str) -> dict[str, dict[str, Any]]:
    return {_json_value(item, tag): item for item in items}


def test_instances_return_the_bits_allocated_of_each_stored_object(
    doc: Browser, web: Web, ct: Study, tmp_path: Path
) -> None:
    (cine,) = make_us_cine(tmp_path, frames=2, rows=16, columns=16, patient_id="PID-US")
    store_study(web.pacs, [cine])
    stored = {path: pydicom.dcmread(path, stop_before_pixels=True) for path in [ct.path(), cine]}
    assert sorted(int(ds.BitsAllocated) for ds in stored.values()) == [8, 16]
    found = _by(search(doc, "/dicomweb/instances"), "00080018")
    for ds in stored.values():
        assert found[ds.SOPInstanceUID][BITS_ALLOCATED] == {"vr": "US", "Value": [int(ds.BitsAllocated)]}
    within = search(doc, f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances")
    assert {_json_value(item, BITS_ALLOCATED) for item in within} == {16}


def test_studies_return_the_timezone_offset_their_objects_carry_and_omit_it_otherwise(
    doc: Browser, ct: Study, offset_study: Study
) -> None:
    found = _by(search(doc, "/dicomweb/studies"), "0020000D")
    assert found[offset_study.uid][TIMEZONE] == {"vr": "SH", "Value": ["-0500"]}
    assert TIMEZONE not in found[ct.uid]


def test_series_and_instances_return_the_timezone_offset_of_their_study(
    doc: Browser, ct: Study, offset_study: Study
) -> None:
    for level in ("series", "instances"):
        assert {
            _json_value(item, TIMEZONE)
            for item in search(doc, f"/dicomweb/studies/{offset_study.uid}/{level}")
        } == {"-0500"}, level
        assert all(TIMEZONE not in item for item in search(doc, f"/dicomweb/studies/{ct.uid}/{level}")), level


def test_studies_match_on_the_timezone_offset(doc: Browser, ct: Study, offset_study: Study) -> None:
    assert [
        _json_value(item, "0020000D") for item in search(doc, "/dicomweb/studies?TimezoneOffsetFromUTC=-0500")
    ] == [offset_study.uid]


def test_c_find_returns_both_keys_when_asked(web: Web, ct: Study, offset_study: Study) -> None:
    identifier = Dataset()
    identifier.StudyInstanceUID = offset_study.uid
    identifier.SOPInstanceUID = identifier.TimezoneOffsetFromUTC = ""
    identifier.BitsAllocated = None
    with web.pacs.database.read() as session:
        found = list(matching.find(session, "IMAGE", identifier))
    assert sorted(ds.SOPInstanceUID for ds in found) == sorted(offset_study.sop(n) for n in range(2))
    assert {(ds.BitsAllocated, ds.TimezoneOffsetFromUTC) for ds in found} == {(16, "-0500")}
