"""The study care pages: list and trash, a study's page, delete, restore, purge and erasure on the web.

A study deleted here is then looked for everywhere a physician reaches it (the study list, QIDO-RS at
every level, WADO-RS, the metadata and the viewer) and found nowhere; restored, it is back. Both
index backends (the ``pacs`` fixture).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pacs.core.audit_vocabulary import EventID
from pacs.core.context import Context
from tests.conftest import blob_store
from tests.data.make_series import make_ct_series
from tests.web.dicomweb_helpers import Study, store_study
from tests.web.web_helpers import ADDRESS, Browser, Web, messages, study_rows

CARE = frozenset({"admin", "physician"})


@pytest.fixture
def carer(web: Web) -> Browser:
    """An admin who is also a physician, logged in."""
    return web.logged_in(web.user("carer", CARE))


@pytest.fixture
def two(web: Web, ct_dir: Path, tmp_path: Path) -> tuple[Study, Study]:
    """The CT of QUIXOTE^DULCINEA (PID-Q-7731) and a second study of PANZA^SANCHO."""
    other = make_ct_series(
        tmp_path / "panza", slices=2, rows=16, columns=16, patient_name="PANZA^SANCHO", patient_id="PID-P-2"
    )
    return store_study(web.pacs, sorted(ct_dir.glob("*.dcm"))), store_study(web.pacs, other)


def _care_rows(browser: Browser, query: str = "") -> list[str]:
    page = browser.get(f"/admin/studies{query}")
    assert page.status_code == 200
    return re.findall(r'<tr data-study="([^"]+)">', page.text)


def _visible_to_physician(doc: Browser, study: Study) -> dict[str, bool]:
    """Where a physician finds `study`: the study list, QIDO at each level, WADO, metadata, viewer."""
    uid, series, sop = study.uid, study.series_uid, study.sop()
    found = {
        "study list": uid in doc.get("/").text,
        "qido studies": uid in doc.get(f"/dicomweb/studies?StudyInstanceUID={uid}").text,
        "qido series": series in doc.get(f"/dicomweb/series?StudyInstanceUID={uid}").text,
        "qido instances": sop in doc.get(f"/dicomweb/instances?StudyInstanceUID={uid}").text,
        "qido study's series": series in doc.get(f"/dicomweb/studies/{uid}/series").text,
    }
    for name, path in (
        ("wado study", f"/dicomweb/studies/{uid}"),
        ("wado instance", f"/dicomweb/studies/{uid}/series/{series}/instances/{sop}"),
        ("metadata", f"/dicomweb/studies/{uid}/metadata"),
        ("frame", study.frame_url()),
        ("viewer", f"/studies/{uid}"),
    ):
        status = doc.get(path).status_code
        assert status in (200, 404), (name, status)
        found[name] = status == 200
    return found


def _deletions(pacs: Context) -> list[dict[str, object]]:
    return [
        {**json.loads(r.details), "user": r.user_id, "source": r.source, "study": r.study_uid}
        for r in pacs.audit.records()
        if r.event_id == EventID.STUDY_DELETED.value
    ]


def test_care_pages_need_both_the_admin_and_the_physician_role(
    web: Web, doc: Browser, carer: Browser, two: tuple[Study, Study]
) -> None:
    admin = web.logged_in(web.user("boss", frozenset({"admin"})))
    for path in ("/admin/studies", f"/admin/studies/{two[0].uid}", f"/admin/studies/{two[0].uid}/delete"):
        assert admin.get(path).status_code == 403
        assert doc.get(path).status_code == 403
        page = carer.get(path)
        assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert doc.post(f"/admin/studies/{two[0].uid}/delete", {"reason": "x"}, form_page="/").status_code == 403
    assert 'id="nav-care"' in carer.get("/").text and 'id="nav-care"' not in doc.get("/").text


def test_list_searches_by_patient_name_and_date_and_shows_counts(
    carer: Browser, two: tuple[Study, Study]
) -> None:
    quixote, panza = two
    assert set(_care_rows(carer)) == {quixote.uid, panza.uid}
    assert _care_rows(carer, "?patient_id=P-2") == [panza.uid]
    assert _care_rows(carer, "?name=dulcinea") == [quixote.uid]
    assert set(_care_rows(carer, "?from=2024-01-15&to=2024-01-15")) == {quixote.uid, panza.uid}
    assert _care_rows(carer, "?from=2025-01-01") == []
    rows = {row[1]: row for row in study_rows(carer.get("/admin/studies").text)}
    assert rows["PID-Q-7731"][5:] == ["1", "6", quixote.uid]
    assert rows["PID-Q-7731"][2:4] == ["2024-01-15", "CT"]


def test_show_page_has_attributes_series_history_state_and_the_other_care_pages(
    carer: Browser, two: tuple[Study, Study]
) -> None:
    quixote = two[0]
    page = carer.get(f"/admin/studies/{quixote.uid}").text
    assert "Active: found and shown everywhere." in page
    assert "QUIXOTE^DULCINEA" in page and "PID-Q-7731" in page and "ACC0001" in page
    assert f'data-series="{quixote.series_uid}"' in page
    assert "No changes: the study is as it was received." in page
    for href in ("edit", "move", "forward", "anonymize"):
        assert f'href="/admin/studies/{quixote.uid}/{href}"' in page
    assert 'href="/admin/patients/merge"' in page
    assert carer.get("/admin/studies/1.2.3.999").status_code == 404
    assert carer.get("/admin/studies/not-a-uid").status_code == 404


def test_deleted_study_is_found_nowhere_on_the_web_and_restore_brings_it_back(
    web: Web, doc: Browser, carer: Browser, two: tuple[Study, Study]
) -> None:
    quixote, panza = two
    before = _visible_to_physician(doc, quixote)
    assert all(before.values()), before
    response = carer.post(
        f"/admin/studies/{quixote.uid}/delete",
        {"reason": "wrong patient"},
        form_page=f"/admin/studies/{quixote.uid}/delete",
    )
    assert response.status_code == 302
    assert _visible_to_physician(doc, quixote) == dict.fromkeys(before, False)
    assert all(_visible_to_physician(doc, panza).values())
    assert _care_rows(carer) == [panza.uid]
    assert _care_rows(carer, "?trash=1") == [quixote.uid]
    page = carer.get(f"/admin/studies/{quixote.uid}").text
    assert "In the trash since" in page and "wrong patient" in page and 'id="restore"' in page
    response = carer.post(
        f"/admin/studies/{quixote.uid}/restore", {}, form_page=f"/admin/studies/{quixote.uid}"
    )
    assert response.status_code == 302
    assert _visible_to_physician(doc, quixote) == before
    trashed, restored = _deletions(web.pacs)
    assert (trashed["user"], trashed["source"], trashed["reason"], trashed["stage"]) == (
        "carer",
        ADDRESS,
        "wrong patient",
        "trash",
    )
    assert (restored["stage"], restored["study"]) == ("restore", quixote.uid)


def test_delete_without_a_reason_is_refused_and_changes_nothing(
    web: Web, carer: Browser, two: tuple[Study, Study]
) -> None:
    uid = two[0].uid
    response = carer.post(
        f"/admin/studies/{uid}/delete", {"reason": "  "}, form_page=f"/admin/studies/{uid}/delete"
    )
    assert response.status_code == 400
    assert messages(response.text) == ["a reason is required to delete a study"]
    assert uid in _care_rows(carer) and _deletions(web.pacs) == []


def test_purge_needs_its_confirmation_and_leaves_no_blob_of_the_study(
    web: Web, carer: Browser, two: tuple[Study, Study]
) -> None:
    quixote = two[0]
    blobs_before = set(blob_store(web.pacs).blob_ids())
    carer.post(
        f"/admin/studies/{quixote.uid}/delete",
        {"reason": "test"},
        form_page=f"/admin/studies/{quixote.uid}/delete",
    )
    purge = f"/admin/studies/{quixote.uid}/purge"
    assert carer.post(purge, {}, form_page=purge).status_code == 400
    assert set(blob_store(web.pacs).blob_ids()) == blobs_before
    response = carer.post(purge, {"confirm": "yes", "reason": "test data"}, form_page=purge)
    assert response.status_code == 302
    left = set(blob_store(web.pacs).blob_ids())
    assert len(blobs_before - left) == 6 and len(left) == 2
    assert carer.get(f"/admin/studies/{quixote.uid}").status_code == 404
    assert web.pacs.archive.verify().ok
    assert [(r["stage"], r["reason"]) for r in _deletions(web.pacs)] == [
        ("trash", "test"),
        ("purge", "test data"),
    ]


def test_erasure_moves_every_study_of_the_patient_to_the_trash(
    web: Web, carer: Browser, ct_dir: Path, two: tuple[Study, Study], tmp_path: Path
) -> None:
    again = store_study(
        web.pacs,
        make_ct_series(
            tmp_path / "q2",
            slices=1,
            rows=16,
            columns=16,
            patient_name="QUIXOTE^DULCINEA",
            patient_id="PID-Q-7731",
        ),
    )
    form = "/admin/patients/erase?patient=PID-Q-7731"
    page = carer.get(form).text
    assert two[0].uid in page and again.uid in page
    refused = carer.post(
        "/admin/patients/erase", {"patient": "PID-Q-7731", "reason": "erasure"}, form_page=form
    )
    assert refused.status_code == 400 and set(_care_rows(carer, "?trash=1")) == set()
    response = carer.post(
        "/admin/patients/erase",
        {"patient": "PID-Q-7731", "reason": "erasure request", "confirm": "yes"},
        form_page=form,
    )
    assert response.status_code == 302
    assert set(_care_rows(carer, "?trash=1")) == {two[0].uid, again.uid}
    assert _care_rows(carer) == [two[1].uid]
    assert {r["study"] for r in _deletions(web.pacs) if r.get("erasure")} == {two[0].uid, again.uid}
