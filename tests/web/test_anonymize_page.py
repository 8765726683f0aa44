"""The anonymize page: the form (admin and physician roles), the ZIP it answers, refusals and audit."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from pacs.core.context import Context
from tests.ops.anonymize_helpers import MARKS, STUDY_UID, MarkedStudy, found_in, store_marked_study
from tests.web.web_helpers import ADDRESS, ADMIN, PHYSICIAN, Browser, Web, details, link, messages

CARE = frozenset({"admin", "physician"})
PAGE = f"/admin/studies/{STUDY_UID}/anonymize"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def carer(web: Web) -> Browser:
    """An admin who is also a physician, logged in."""
    return web.logged_in(web.user("carer", CARE))


@pytest.fixture
def study(pacs: Context, tmp_path: Path) -> MarkedStudy:
    return store_marked_study(pacs, tmp_path / "marked")


def _exports(web: Web) -> list[dict[str, object]]:
    return [
        details(record) for record in web.audit("110106") if details(record).get("what") == "anonymized copy"
    ]


def test_the_form_shows_the_study_its_options_and_how_many_objects_may_show_burned_in_text(
    carer: Browser, study: MarkedStudy
) -> None:
    page = carer.get(PAGE)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert MARKS["PatientName"] in page.text and "7 objects" in page.text
    for name in ("patient_name", "patient_id", "dates", "clean_descriptors", "allow_burned_in"):
        assert f'name="{name}"' in page.text
    assert re.search(r'name="patient_id" value="" maxlength="64"', page.text)
    burned_in = re.search(r'<p class="warning" id="burned-in">(.*?)</p>', page.text, re.S)
    assert burned_in and "<strong>3 of 7 objects</strong>" in burned_in.group(1)
    assert 'name="csrf_token"' in page.text


def test_the_form_escapes_the_values_it_shows(
    web: Web, carer: Browser, pacs: Context, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.StudyInstanceUID, ds.PatientName, ds.StudyDescription = STUDY_UID, SCRIPT, SCRIPT
    ds.save_as(tmp_path / "script.dcm", enforce_file_format=True)
    pacs.archive.store(tmp_path / "script.dcm")
    page = carer.get(PAGE)
    assert SCRIPT not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_posting_the_form_downloads_a_zip_without_identifying_values_audited_with_the_address(
    web: Web, carer: Browser, study: MarkedStudy
) -> None:
    answer = carer.post(PAGE, {"patient_name": "CASE^WEB", "clean_descriptors": "on"})
    assert answer.status_code == 200
    assert answer.mimetype == "application/zip"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="anonymized-study.zip"'
    assert answer.headers["Cache-Control"] == "no-store"
    values = study.identifying_values()
    assert found_in(answer.data, values) == set()
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("MANIFEST.json"))
        copies = [pydicom.dcmread(io.BytesIO(archive.read(name))) for name in names if name.endswith(".dcm")]
        assert all(found_in(archive.read(name), values) == set() for name in names)
    assert len(copies) == 4 and sum(not item["written"] for item in manifest["objects"]) == 3
    assert {(str(ds.PatientName), ds.StudyDescription) for ds in copies} == {("CASE^WEB", "Head for * ref *")}
    (audited,) = _exports(web)
    record = web.audit("110106")[-1]
    assert (record.user_id, record.source, record.study_uid) == ("carer", ADDRESS, STUDY_UID)
    assert audited["options"] == ["basic", "clean_descriptors"] and audited["written"] == 4
    assert audited["destination"] == f"web download to {ADDRESS}"


def test_allowing_burned_in_objects_copies_all_of_them(web: Web, carer: Browser, study: MarkedStudy) -> None:
    answer = carer.post(PAGE, {"allow_burned_in": "on", "dates": "keep"})
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        assert len([name for name in archive.namelist() if name.endswith(".dcm")]) == 7
    assert _exports(web)[-1]["options"] == ["basic", "full_dates"]
    assert carer.post(PAGE, {"dates": "shift"}).data.startswith(b"PK")
    assert _exports(web)[-1]["options"] == ["basic", "modified_dates"]


@pytest.mark.parametrize("roles", [PHYSICIAN, ADMIN], ids=["physician only", "admin only"])
def test_the_page_needs_both_the_admin_and_the_physician_role(
    web: Web, carer: Browser, study: MarkedStudy, roles: frozenset[str]
) -> None:
    browser = web.logged_in(web.user("partial", roles))
    assert browser.get(PAGE).status_code == 403
    assert browser.post(PAGE, {"allow_burned_in": "on"}).status_code == 403  # its own token: the role refuses
    assert _exports(web) == []


def test_a_post_without_the_csrf_token_is_refused_and_copies_nothing(
    web: Web, carer: Browser, study: MarkedStudy
) -> None:
    answer = carer.client.post(PAGE, data={"patient_name": "X"})
    assert answer.status_code == 400
    assert _exports(web) == []


def test_a_bad_replacement_id_shows_the_form_again_with_the_reason(
    web: Web, carer: Browser, study: MarkedStudy
) -> None:
    answer = carer.post(PAGE, {"patient_id": "A\\B"})
    assert answer.status_code == 400
    assert any("replacement patient ID" in message for message in messages(answer.text))
    assert 'name="patient_id" value="A\\B"' in answer.text
    assert _exports(web) == []


def test_an_unknown_study_is_not_found(carer: Browser) -> None:
    assert carer.get("/admin/studies/1.2.3.4/anonymize").status_code == 404
    assert carer.get("/admin/studies/not-a-uid/anonymize").status_code == 404


def test_a_download_broken_off_ends_the_copy_and_is_audited_as_failed(
    web: Web, carer: Browser, study: MarkedStudy
) -> None:
    answer = carer.client.post(PAGE, data={"csrf_token": carer.token(PAGE)}, buffered=False)
    first = next(iter(answer.response))
    assert first.startswith(b"PK")
    answer.close()
    (record,) = [r for r in web.audit("110106") if details(r).get("what") == "anonymized copy"]
    assert record.outcome == 8 and details(record)["written"] == 0


def test_the_study_page_links_to_the_anonymize_form(carer: Browser, study: MarkedStudy) -> None:
    study_page = carer.get(f"/admin/studies/{STUDY_UID}")
    assert study_page.status_code == 200
    assert link(study_page.text, "anonymize") == PAGE
    assert carer.get(PAGE).status_code == 200
