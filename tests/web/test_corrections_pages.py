"""The correction pages: edit, move, merge, history and undo through the web (admin and physician roles).

Each action is checked where a person sees it (the study list, the history page) and in the audit
trail (who, why, from which address); refusals (no reason, a bad date, a physician without the
admin role) change nothing. Both index backends (the ``pacs`` fixture).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pacs.core.context import Context
from storage.search import StudyQuery
from tests.storage.study_files import Spec, write
from tests.web.web_helpers import ADDRESS, Browser, Web, messages, study_rows

CARE = frozenset({"admin", "physician"})
DOE = Spec("DOE^JANE", "PID-1001", "19700101", "F", "20240220", "143015", "ACC-2024-0042")
ROE = Spec("ROE^RICHARD", "PID-2002", "19650505", "M", "20230101", "080000", "ACC-2023-0001")


@pytest.fixture
def carer(web: Web) -> Browser:
    """An admin who is also a physician, logged in."""
    return web.logged_in(web.user("carer", CARE))


@pytest.fixture
def studies(pacs: Context, tmp_path: Path) -> dict[str, str]:
    """Two patients' studies, two objects each; their Study Instance UIDs by patient ID."""
    for spec in (DOE, ROE):
        for _ in range(2):
            pacs.archive.store(write(tmp_path / "in", spec))
    return {DOE.patient_id: DOE.study_uid, ROE.patient_id: ROE.study_uid}


def _corrections(pacs: Context) -> list[tuple[Any, dict[str, Any]]]:
    """The audit records of corrections with their details, oldest first."""
    found = []
    for record in pacs.audit.records():
        details = json.loads(record.details)
        if record.event_id == "110103" and details.get("what") in {"edit", "move", "merge", "undo"}:
            found.append((record, details))
    return found


def _patient_of(pacs: Context, study_uid: str) -> tuple[str, str]:
    rows = pacs.archive.search_studies(StudyQuery(limit=100))
    (row,) = [row for row in rows if row.study_uid == study_uid]
    return row.patient_id, row.patient_name


def _form_values(page: str) -> dict[str, str]:
    return {
        name: html.unescape(value) for name, value in re.findall(r'<input name="(\w+)" value="([^"]*)"', page)
    }


def test_edit_form_shows_the_current_values_and_the_limits_of_each_field(
    carer: Browser, studies: dict[str, str]
) -> None:
    page = carer.get(f"/admin/studies/{DOE.study_uid}/edit")
    assert page.status_code == 200
    values = _form_values(page.text)
    assert values["PatientName"] == DOE.name and values["AccessionNumber"] == DOE.accession
    assert values["StudyDate"] == DOE.study_date and values["PatientID"] == DOE.patient_id
    assert re.search(r'name="AccessionNumber" value="[^"]*" maxlength="16"', page.text)
    assert re.search(r'name="StudyDescription" value="[^"]*" maxlength="64"', page.text)
    assert re.search(r'name="StudyDate" value="[^"]*" maxlength="8" pattern="\[0-9\]\{8\}"', page.text)
    assert "at most 16 characters" in page.text and "a date, YYYYMMDD" in page.text
    assert "at most 64 characters per group" in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_an_edited_name_shows_in_the_study_list_and_history_and_is_audited(
    web: Web, carer: Browser, studies: dict[str, str]
) -> None:
    response = carer.post(
        f"/admin/studies/{DOE.study_uid}/edit",
        {"PatientName": "DOE^JOANNA", "StudyDescription": "CT THORAX", "reason": "misspelt at the desk"},
    )
    assert response.status_code == 302
    assert response.location.endswith(f"/admin/studies/{DOE.study_uid}/history")
    history = carer.get(f"/admin/studies/{DOE.study_uid}/history").text
    assert any("2 objects now carry the corrected values" in message for message in messages(history))
    assert "DOE^JOANNA" in history and "misspelt at the desk" in history and "carer" in history
    listed = carer.get("/?name=joanna").text
    assert [row for row in study_rows(listed) if DOE.accession in row]
    assert _patient_of(web.pacs, DOE.study_uid) == (DOE.patient_id, "DOE^JOANNA")
    ((record, details),) = _corrections(web.pacs)
    assert (record.user_id, record.source, record.study_uid) == ("carer", ADDRESS, DOE.study_uid)
    assert details["reason"] == "misspelt at the desk" and details["before"]["PatientName"] == DOE.name
    assert details["after"] == {"PatientName": "DOE^JOANNA", "StudyDescription": "CT THORAX"}
    assert details["versions"] == 2


def test_an_edit_without_a_reason_or_with_a_bad_date_changes_nothing(
    web: Web, carer: Browser, studies: dict[str, str]
) -> None:
    path = f"/admin/studies/{DOE.study_uid}/edit"
    no_reason = carer.post(path, {"PatientName": "X^Y", "reason": " "})
    assert no_reason.status_code == 400 and "a reason is required" in messages(no_reason.text)
    bad_date = carer.post(path, {"StudyDate": "20241341", "reason": "typo"})
    assert bad_date.status_code == 400
    assert messages(bad_date.text) == ["Study date (StudyDate) is not a date (YYYYMMDD)"]
    assert 'value="20241341"' in bad_date.text  # what was typed stays in the form
    assert [info.version for info in web.pacs.archive.study_instances(DOE.study_uid)] == [1, 1]
    assert _patient_of(web.pacs, DOE.study_uid) == (DOE.patient_id, DOE.name)


def test_the_pages_need_both_the_admin_and_the_physician_role(web: Web, studies: dict[str, str]) -> None:
    physician = web.logged_in(web.user("doc"))
    admin = web.logged_in(web.user("boss", frozenset({"admin"})))
    for browser in (physician, admin):
        for path in (f"/admin/studies/{DOE.study_uid}/edit", "/admin/patients/merge"):
            assert browser.get(path).status_code == 403
        refused = browser.client.post(f"/admin/studies/{DOE.study_uid}/edit", data={"reason": "x"})
        assert refused.status_code in {400, 403}
    assert [info.version for info in web.pacs.archive.study_instances(DOE.study_uid)] == [1, 1]


def test_a_study_moved_on_the_web_is_listed_under_the_other_patient(
    web: Web, carer: Browser, studies: dict[str, str]
) -> None:
    response = carer.post(
        f"/admin/studies/{DOE.study_uid}/move", {"patient_id": ROE.patient_id, "reason": "wrong patient"}
    )
    assert response.status_code == 302
    assert _patient_of(web.pacs, DOE.study_uid) == (ROE.patient_id, ROE.name)
    listed = study_rows(carer.get("/?patient_id=PID-2002").text)
    assert len([row for row in listed if DOE.accession in row or ROE.accession in row]) == 2
    unknown = carer.post(f"/admin/studies/{ROE.study_uid}/move", {"patient_id": "NOBODY", "reason": "x"})
    assert unknown.status_code == 400 and messages(unknown.text) == ["no patient with Patient ID 'NOBODY'"]


def test_a_merge_on_the_web_is_undone_from_the_history_page(
    web: Web, carer: Browser, studies: dict[str, str]
) -> None:
    merged = carer.post(
        "/admin/patients/merge",
        {"from_patient": DOE.patient_id, "into_patient": ROE.patient_id, "reason": "same person"},
        form_page="/admin/patients/merge",
    )
    assert merged.status_code == 302
    assert _patient_of(web.pacs, DOE.study_uid)[0] == ROE.patient_id
    history = carer.get(f"/admin/studies/{DOE.study_uid}/history").text
    change = re.search(r'data-change="(\d+)" data-kind="merge"', history)
    assert change is not None
    no_reason = carer.post(
        f"/admin/changes/{change.group(1)}/undo",
        {"study_uid": DOE.study_uid, "reason": ""},
        form_page=f"/admin/studies/{DOE.study_uid}/history",
    )
    assert "a reason is required" in messages(carer.get(no_reason.location).text)
    undone = carer.post(
        f"/admin/changes/{change.group(1)}/undo",
        {"study_uid": DOE.study_uid, "reason": "not the same person after all"},
        form_page=f"/admin/studies/{DOE.study_uid}/history",
    )
    assert undone.status_code == 302
    assert _patient_of(web.pacs, DOE.study_uid) == (DOE.patient_id, DOE.name)
    after = carer.get(f"/admin/studies/{DOE.study_uid}/history").text
    assert f"undone by change {int(change.group(1)) + 1}" in after
    kinds = [details["what"] for _, details in _corrections(web.pacs)]
    assert kinds == ["merge", "undo"]


def test_a_value_the_form_does_not_offer_is_kept_when_another_field_is_edited(
    web: Web, carer: Browser, tmp_path: Path
) -> None:
    odd = Spec("ODD^SEX", "PID-U", "19800101", "U", "20240101", "100000", "ACC-U")
    web.pacs.archive.store(write(tmp_path / "odd", odd))
    form = carer.get(f"/admin/studies/{odd.study_uid}/edit").text
    assert '<option value="U" selected>U (as received)</option>' in form
    response = carer.post(
        f"/admin/studies/{odd.study_uid}/edit",
        {**_form_values(form), "PatientSex": "U", "StudyID": "7", "reason": "r"},
    )
    assert response.status_code == 302
    (info,) = web.pacs.archive.study_instances(odd.study_uid)
    head = web.pacs.archive.dataset_without_pixels(info)
    assert (head.PatientSex, head.StudyID, info.version) == ("U", "7", 2)
    ((_, details),) = _corrections(web.pacs)
    assert details["after"] == {"StudyID": "7"}


def test_a_post_without_the_form_token_is_refused_and_values_are_escaped(
    web: Web, carer: Browser, studies: dict[str, str]
) -> None:
    path = f"/admin/studies/{DOE.study_uid}/edit"
    forged = carer.client.post(path, data={"PatientName": "X^Y", "reason": "forged"})
    assert forged.status_code == 400
    assert [info.version for info in web.pacs.archive.study_instances(DOE.study_uid)] == [1, 1]
    response = carer.post(path, {"StudyDescription": "<img src=x onerror=alert(1)>", "reason": "<b>why</b>"})
    assert response.status_code == 302
    history = carer.get(f"/admin/studies/{DOE.study_uid}/history").text
    assert "<img src=x" not in history and "&lt;img src=x onerror=alert(1)&gt;" in history
    assert "<b>why</b>" not in history and "&lt;b&gt;why&lt;/b&gt;" in history
