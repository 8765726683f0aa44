"""Auditing of the viewer's data: what is recorded when a session reads a study's images."""

from __future__ import annotations

from tests.web.dicomweb_helpers import ACCESSED, CT_PATIENT, Study
from tests.web.web_helpers import Browser, Web, details

# Auditing.


def test_first_api_access_of_a_session_to_a_study_is_audited_once(web: Web, doc: Browser, ct: Study) -> None:
    doc.get(f"/dicomweb/studies/{ct.uid}/series")
    doc.get(f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances")
    for index in range(3):
        assert doc.get(ct.frame_url(index=index)).status_code == 200
    records = web.audit(ACCESSED, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["how"]) for r in records] == [
        (ct.uid, CT_PATIENT[1], "dicomweb")
    ]


def test_a_frame_request_alone_is_audited(web: Web, doc: Browser, ct: Study) -> None:
    assert doc.get(ct.frame_url()).status_code == 200
    assert [r.study_uid for r in web.audit(ACCESSED, user="doc")] == [ct.uid]


def test_each_new_session_is_audited_again(web: Web, ct: Study) -> None:
    user = web.user("doc")
    for _ in range(2):
        browser = web.logged_in(user)
        browser.get(ct.frame_url())
        browser.get(ct.frame_url(index=1))
    assert [r.study_uid for r in web.audit(ACCESSED, user="doc")] == [ct.uid, ct.uid]


def test_opening_the_viewer_page_is_audited_every_time(web: Web, doc: Browser, ct: Study) -> None:
    for _ in range(2):
        assert doc.get(f"/studies/{ct.uid}").status_code == 200
    records = web.audit(ACCESSED, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["how"]) for r in records] == [
        (ct.uid, CT_PATIENT[1], "viewer")
    ] * 2


def test_opening_the_viewer_and_reading_its_images_is_one_audit_record(
    web: Web, doc: Browser, ct: Study
) -> None:
    assert doc.get(f"/studies/{ct.uid}").status_code == 200
    doc.get(f"/dicomweb/studies/{ct.uid}/series")
    doc.get(f"/dicomweb/studies/{ct.uid}/series/{ct.series_uid}/instances")
    assert doc.get(ct.frame_url()).status_code == 200
    assert [details(r)["how"] for r in web.audit(ACCESSED, user="doc")] == ["viewer"]
