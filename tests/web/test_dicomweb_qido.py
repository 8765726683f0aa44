"""QIDO-RS searches at every level (PS3.18 10.6): matching, return keys, paging, errors, audit, roles."""

from __future__ import annotations

from typing import Any

import pydicom
import pytest

from pacs.core.audit import EventID
from tests.web.dicomweb_helpers import CT_PATIENT, DICOM_JSON, Study, _json_value
from tests.web.web_helpers import ADMIN, Browser, Web, details
from webviewer import qido

QUERY = str(EventID.QUERY)
ROOT = "https://localhost/dicomweb"
STUDY_REQUIRED = {
    "00080020",  # StudyDate
    "00080030",  # StudyTime
    "00080050",  # AccessionNumber
    "00080061",  # ModalitiesInStudy
    "00080090",  # ReferringPhysicianName
    "00100010",  # PatientName
    "00100020",  # PatientID
    "00100030",  # PatientBirthDate
    "00100040",  # PatientSex
    "0020000D",  # StudyInstanceUID
    "00200010",  # StudyID
    "00201206",  # NumberOfStudyRelatedSeries
    "00201208",  # NumberOfStudyRelatedInstances
    "00081190",  # RetrieveURL
    "00080056",  # InstanceAvailability
}
SERIES_REQUIRED = {"00080060", "0008103E", "0020000E", "00200011", "00201209", "00081190"}
INSTANCE_REQUIRED = {"00080016", "00080018", "00200013", "00280010", "00280011", "00280008", "00081190"}


def values(items: list[dict[str, Any]], tag: str) -> list[Any]:
    """The first value of `tag` in each item (None where it is empty)."""
    return [item[tag]["Value"][0] if "Value" in item.get(tag, {}) else None for item in items]


def search(browser: Browser, url: str) -> list[dict[str, Any]]:
    response = browser.get(url)
    assert response.status_code == 200, (url, response.status_code, response.data[:300])
    assert response.mimetype == DICOM_JSON
    return list(response.json)


@pytest.fixture
def both(ct: Study, mixed: Study) -> tuple[Study, Study]:
    return ct, mixed


# Study searches.


def test_all_studies_are_found_with_the_required_attributes(doc: Browser, both: tuple[Study, Study]) -> None:
    ct, mixed = both
    found = {_json_value(item, "0020000D"): item for item in search(doc, "/dicomweb/studies")}
    assert set(found) == {ct.uid, mixed.uid}
    item = found[mixed.uid]
    assert set(item) >= STUDY_REQUIRED
    stored = pydicom.dcmread(mixed.path(), stop_before_pixels=True)
    assert item["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "PANZA^TERESA"}]}
    assert _json_value(item, "00100020") == "PID-MIX"
    assert _json_value(item, "00080020") == stored.StudyDate
    assert sorted(item["00080061"]["Value"]) == ["CT", "MR"]
    assert (_json_value(item, "00201206"), _json_value(item, "00201208")) == (3, 16)
    assert _json_value(item, "00081190") == f"{ROOT}/studies/{mixed.uid}"
    assert _json_value(item, "00080056") == "ONLINE"


def test_study_attributes_filter_the_studies(doc: Browser, both: tuple[Study, Study]) -> None:
    queries = ["PatientName=panza*", "PatientID=PID-MIX", "00100020=PID-MIX", "ModalitiesInStudy=MR"]
    for query in [*queries, "PatientName=P?NZA*", "AccessionNumber=ACC0001&PatientSex=&PatientID=PID-MIX"]:
        assert values(search(doc, f"/dicomweb/studies?{query}"), "0020000D") == [both[1].uid], query


def test_study_uid_lists_and_date_ranges_match(doc: Browser, both: tuple[Study, Study]) -> None:
    ct, mixed = both
    date = pydicom.dcmread(ct.path(), stop_before_pixels=True).StudyDate
    listed = search(doc, f"/dicomweb/studies?StudyInstanceUID={ct.uid},{mixed.uid}")
    assert set(values(listed, "0020000D")) == {ct.uid, mixed.uid}
    assert set(values(search(doc, f"/dicomweb/studies?StudyDate={date}-"), "0020000D")) >= {ct.uid}
    assert search(doc, "/dicomweb/studies?StudyDate=-19000101") == []


def test_no_match_is_an_empty_array(doc: Browser, ct: Study) -> None:
    response = doc.get("/dicomweb/studies?PatientID=NOBODY")
    assert (response.status_code, response.mimetype, response.json) == (200, DICOM_JSON, [])


def test_includefield_adds_attributes_by_keyword_or_tag(doc: Browser, both: tuple[Study, Study]) -> None:
    plain = search(doc, "/dicomweb/studies?PatientID=PID-MIX")[0]
    assert "00081030" not in plain and "00101010" not in plain
    for query in ("includefield=StudyDescription", "includefield=00081030,PatientSex", "includefield=all"):
        item = search(doc, f"/dicomweb/studies?PatientID=PID-MIX&{query}")[0]
        assert "00081030" in item, query
    repeated = search(doc, "/dicomweb/studies?PatientID=PID-MIX&includefield=00081030&includefield=00101010")
    assert {"00081030", "00101010"} <= set(repeated[0])


def test_limit_and_offset_page_the_studies(doc: Browser, both: tuple[Study, Study]) -> None:
    everything = values(search(doc, "/dicomweb/studies"), "0020000D")
    first = doc.get("/dicomweb/studies?limit=1")
    assert values(first.json, "0020000D") == everything[:1] and "Warning" not in first.headers
    assert values(search(doc, "/dicomweb/studies?limit=1&offset=1"), "0020000D") == everything[1:]
    assert search(doc, "/dicomweb/studies?offset=2") == []


def test_results_cut_at_the_maximum_say_so_in_a_warning(
    doc: Browser, both: tuple[Study, Study], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(qido.MAX_RESULTS, "STUDY", 1)
    response = doc.get("/dicomweb/studies?limit=5")
    assert response.status_code == 200 and len(response.json) == 1
    assert response.headers["Warning"].startswith("299 ")
    assert "Additional results can be requested" in response.headers["Warning"]
    assert len(doc.get("/dicomweb/studies?offset=1").json) == 1


def test_fuzzy_matching_is_answered_with_the_standards_warning(doc: Browser, ct: Study) -> None:
    response = doc.get("/dicomweb/studies?PatientName=quixote*&fuzzymatching=true")
    assert values(response.json, "0020000D") == [ct.uid]
    assert "fuzzymatching parameter is not supported" in response.headers["Warning"]
    assert "Warning" not in doc.get("/dicomweb/studies?fuzzymatching=false").headers


BAD_QUERIES = {
    "NoSuchKeyword=1": "NoSuchKeyword",
    "limit=ten": "limit",
    "offset=-1": "offset",
    "limit=0": "limit",
    "StudyDate=2024-13": "StudyDate",
    "StudyTime=25h": "StudyTime",
    "StudyInstanceUID=1.2.x": "StudyInstanceUID",
    "NumberOfStudyRelatedSeries=3": "NumberOfStudyRelatedSeries",
    "Modality=MR": "Modality",
    "includefield=NoSuchKeyword": "NoSuchKeyword",
    "fuzzymatching=maybe": "fuzzymatching",
    "00400275.00321060=X": "sequences",
    "PatientID=A&00100020=B": "more than once",
}


def test_a_bad_query_is_answered_400_with_the_reason(doc: Browser, ct: Study) -> None:
    urls = [(f"/dicomweb/studies?{query}", says) for query, says in BAD_QUERIES.items()]
    for url, says in [*urls, ("/dicomweb/series?SeriesNumber=two", "SeriesNumber")]:
        response = doc.get(url)
        assert response.status_code == 400, url
        assert says in response.text and "Traceback" not in response.text, (url, response.text)


# Series searches.


def test_series_of_a_study_match_modality_and_series_number(doc: Browser, mixed: Study) -> None:
    base = f"/dicomweb/studies/{mixed.uid}/series"
    mr = search(doc, f"{base}?Modality=MR")
    assert values(mr, "0020000E") == [list(mixed.series)[1]]
    assert set(mr[0]) >= SERIES_REQUIRED
    assert _json_value(mr[0], "00081190") == f"{ROOT}/studies/{mixed.uid}/series/{list(mixed.series)[1]}"
    assert values(search(doc, f"{base}?SeriesNumber=2"), "00200011") == [2]
    assert values(search(doc, f"{base}?limit=2&offset=1"), "00200011") == [3, 10]


def test_all_series_carry_their_studys_attributes(doc: Browser, both: tuple[Study, Study]) -> None:
    ct, mixed = both
    found = search(doc, "/dicomweb/series?Modality=CT&PatientID=PID-MIX")
    assert sorted(values(found, "00200011")) == [2, 10]
    assert set(values(found, "0020000D")) == {mixed.uid}
    assert values(found, "00100020") == ["PID-MIX", "PID-MIX"]
    assert values(search(doc, f"/dicomweb/series?StudyInstanceUID={ct.uid}"), "0020000E") == [ct.series_uid]


# Instance searches.


def test_instances_of_a_series_match_instance_number(doc: Browser, mixed: Study) -> None:
    series_uid = list(mixed.series)[2]
    base = f"/dicomweb/studies/{mixed.uid}/series/{series_uid}/instances"
    found = search(doc, f"{base}?InstanceNumber=3")
    assert values(found, "00080018") == [mixed.series[series_uid][2][0]]
    assert set(found[0]) >= INSTANCE_REQUIRED
    sop = mixed.series[series_uid][2][0]
    assert (
        _json_value(found[0], "00081190") == f"{ROOT}/studies/{mixed.uid}/series/{series_uid}/instances/{sop}"
    )
    assert values(search(doc, f"{base}?limit=3&offset=4"), "00200013") == [5, 6, 7]


def test_instances_of_a_study_and_of_the_archive_match_series_keys(
    doc: Browser, both: tuple[Study, Study]
) -> None:
    ct, mixed = both
    mr_sops = [sop for sop, _ in mixed.series[list(mixed.series)[1]]]
    assert values(search(doc, f"/dicomweb/studies/{mixed.uid}/instances?Modality=MR"), "00080018") == mr_sops
    assert len(search(doc, f"/dicomweb/studies/{mixed.uid}/instances")) == 16
    everywhere = search(doc, f"/dicomweb/instances?PatientID={CT_PATIENT[1]}")
    assert sorted(values(everywhere, "00080018")) == sorted(sop for sop, _ in ct.series[ct.series_uid])
    assert values(everywhere, "00100010") == [{"Alphabetic": CT_PATIENT[0]}] * len(everywhere)


# Audit and roles.


def test_every_search_is_audited_with_its_keys_and_matches(
    web: Web, doc: Browser, both: tuple[Study, Study]
) -> None:
    mixed = both[1]
    search(doc, "/dicomweb/studies?PatientID=PID-MIX&limit=5")
    search(doc, f"/dicomweb/studies/{mixed.uid}/series?Modality=MR")
    records = web.audit(QUERY, user="doc")
    assert len(records) == 2
    first, second = (details(record) for record in records)
    assert first["level"] == "STUDY" and first["keys"] == {"PatientID": "PID-MIX"} and first["matches"] == 1
    assert second["level"] == "SERIES" and second["keys"]["Modality"] == "MR" and second["matches"] == 1
    assert records[1].study_uid == mixed.uid
    accessed = web.audit(str(EventID.INSTANCES_ACCESSED), user="doc")
    assert [record.study_uid for record in accessed] == [mixed.uid]


def test_admin_without_the_physician_role_cannot_search(web: Web, ct: Study) -> None:
    boss = web.logged_in(web.user("boss", ADMIN))
    for url in (
        "/dicomweb/studies",
        "/dicomweb/series",
        "/dicomweb/instances",
        f"/dicomweb/studies/{ct.uid}/instances",
    ):
        response = boss.get(url)
        assert response.status_code == 403, url
        assert b"QUIXOTE" not in response.data
    assert web.audit(QUERY, user="boss") == []
