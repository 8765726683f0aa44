"""The web viewer's study list: escaping, search, order, pages, counts, the physician role, auditing.

Searches run on both backends. The studies are small synthetic series
(:mod:`tests.data.make_series`). What the list shows (names, dates, sex, age), its
sorting and the search's word matching are in ``tests/web/test_study_list.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from pacs.core.audit import EventID, EventType
from pacs.core.context import Context
from tests.data.make_series import make_ct_series, make_mr_series
from tests.web.web_helpers import (
    ADDRESS,
    ADMIN,
    Browser,
    Web,
    details,
    link,
    listed_patient_ids,
    make_web,
    store,
    study_rows,
)

SCRIPT = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Spec:
    """The attributes of one synthetic study."""

    name: str
    patient_id: str
    birth_date: str
    study_date: str
    modality: str
    accession: str


# Newest first: C, B, A. A and C share the first letters of the name ("AL").
A = Spec("ALONSO^QUIJANO", "PID-A1", "19470312", "20230105", "CT", "ACC-A1")
B = Spec("SANCHO^PANZA", "PID-B2", "19700101", "20240220", "MR", "ACC-B2")
C = Spec("ALDONZA^LORENZO", "PID-C3", "19850707", "20240610", "CT", "ACC-C3")
# For the wildcard tests: one ID is a prefix of the other, the names share a prefix.
SHORT = Spec("QUIXOTE^ALONSO", "PID-7", "19500101", "20240301", "CT", "ACC-7")
LONG = Spec("QUIJANO^ALONSO", "PID-70", "19500101", "20240302", "CT", "ACC-70")
ESCAPE = Spec(SCRIPT, "PID-X", "19600101", "20240101", "CT", "ACC-X")


def _write(outdir: Path, spec: Spec, *, slices: int = 2, study_uid: str | None = None) -> list[Path]:
    make = make_mr_series if spec.modality == "MR" else make_ct_series
    files = make(
        outdir,
        slices=slices,
        rows=32,
        columns=32,
        patient_name=spec.name,
        patient_id=spec.patient_id,
        study_uid=study_uid,
        study_date=spec.study_date,
        accession=spec.accession,
    )
    for path in files:  # make_series has one fixed birth date
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate = spec.birth_date
        ds.save_as(path)
    return files


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Files of each synthetic study; "TWO-SERIES" is one study of 2 + 3 images."""
    root = tmp_path_factory.mktemp("studies")
    made = {spec.patient_id: _write(root / spec.patient_id, spec) for spec in (A, B, C, SHORT, LONG, ESCAPE)}
    two = Spec("DULCINEA^TOBOSO", "PID-D4", "19900101", "20240115", "CT", "ACC-D4")
    study_uid = generate_uid()
    made["TWO-SERIES"] = _write(root / "d1", two, slices=2, study_uid=study_uid) + _write(
        root / "d2", two, slices=3, study_uid=study_uid
    )
    return made


@pytest.fixture
def web(pacs: Context) -> Web:
    return make_web(pacs)


@pytest.fixture
def doc(web: Web) -> Browser:
    """A physician, logged in."""
    return web.logged_in(web.user("doc"))


@pytest.fixture
def stored(web: Web, series: dict[str, list[Path]]) -> Callable[..., None]:
    """Store the studies with the given patient IDs (or "TWO-SERIES")."""

    def put(*keys: str) -> None:
        for key in keys:
            store(web.pacs, series[key])

    return put


def _search(browser: Browser, query: str) -> list[str]:
    response = browser.get(f"/?{query}")
    assert response.status_code == 200
    return listed_patient_ids(response.text)


def test_patient_name_is_escaped_in_the_study_list(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-X")
    page = doc.get("/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script type="module" src="/static/studies.js">']


def test_search_by_the_start_of_a_name_word_ignores_case(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-B2", "PID-C3")
    assert _search(doc, "name=alon") == ["PID-A1"]
    assert _search(doc, "name=ALON") == ["PID-A1"]
    assert _search(doc, "name=quij") == ["PID-A1"]


def test_search_by_patient_id(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-B2", "PID-C3")
    assert _search(doc, "patient_id=PID-B2") == ["PID-B2"]


def test_search_by_birth_date(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-B2", "PID-C3")
    assert _search(doc, "birth_date=1947-03-12") == ["PID-A1"]


def test_search_by_study_date_range(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-B2", "PID-C3")
    assert _search(doc, "from=2024-01-01&to=2024-03-31") == ["PID-B2"]


def test_search_by_open_ended_study_date_range(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-B2", "PID-C3")
    assert _search(doc, "from=2024-03-01") == ["PID-C3"]
    assert _search(doc, "to=2023-12-31") == ["PID-A1"]


def test_search_by_modality(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-B2", "PID-C3")
    assert _search(doc, "modality=MR") == ["PID-B2"]


def test_search_by_accession_number(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-B2", "PID-C3")
    assert _search(doc, "accession=ACC-C3") == ["PID-C3"]


def test_studies_are_listed_newest_first(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-A1", "PID-C3", "PID-B2")
    assert _search(doc, "") == ["PID-C3", "PID-B2", "PID-A1"]


def test_study_list_is_paginated(pacs: Context, series: dict[str, list[Path]]) -> None:
    web = make_web(pacs, page_size=2)
    for key in ("PID-A1", "PID-C3", "PID-B2"):
        store(pacs, series[key])
    browser = web.logged_in(web.user("doc"))
    first = browser.get("/").text
    assert listed_patient_ids(first) == ["PID-C3", "PID-B2"]
    assert link(first, "previous") is None
    older = link(first, "next")
    assert older is not None
    second = browser.get(older).text
    assert listed_patient_ids(second) == ["PID-A1"]
    assert link(second, "next") is None
    newer = link(second, "previous")
    assert newer is not None
    assert listed_patient_ids(browser.get(newer).text) == ["PID-C3", "PID-B2"]


def test_pages_keep_the_search(pacs: Context, series: dict[str, list[Path]]) -> None:
    web = make_web(pacs, page_size=1)
    for key in ("PID-A1", "PID-B2", "PID-C3"):
        store(pacs, series[key])
    browser = web.logged_in(web.user("doc"))
    first = browser.get("/?modality=CT").text
    assert listed_patient_ids(first) == ["PID-C3"]
    older = link(first, "next")
    assert older is not None
    second = browser.get(older).text
    assert listed_patient_ids(second) == ["PID-A1"]
    assert link(second, "next") is None


def test_study_list_shows_series_and_image_counts(doc: Browser, stored: Callable[..., None]) -> None:
    stored("TWO-SERIES", "PID-A1")
    counts = {row[1]: (row[9], row[10]) for row in study_rows(doc.get("/").text)}
    assert counts == {"PID-D4": ("2", "5"), "PID-A1": ("1", "2")}


# As DICOM matching keys (or SQL LIKE patterns) these would find more: PID-7* and ACC-7* both
# studies, PID-7? and PID-_0 the other one, QUI*ALONSO both and QUI?OTE one; a backslash would
# separate a list of values. Typed, every character is itself, and none is in an ID or a name.
@pytest.mark.parametrize(
    "query",
    [
        "patient_id=PID-7*",
        "patient_id=PID-7%3F",
        "patient_id=PID-7%5CPID-70",
        "patient_id=PID-_0",
        "patient_id=PID-%25",
        "name=QUI*ALONSO",
        "name=QUI%3FOTE",
        "name=QUI%25",
        "accession=ACC-7*",
        "accession=ACC-_0",
    ],
)
def test_wildcards_typed_into_the_search_match_only_themselves(
    doc: Browser, stored: Callable[..., None], query: str
) -> None:
    stored("PID-7", "PID-70")
    assert _search(doc, query) == []


def test_the_same_search_without_the_wildcards_finds_both(doc: Browser, stored: Callable[..., None]) -> None:
    stored("PID-7", "PID-70")
    assert _search(doc, "patient_id=PID-7") == ["PID-70", "PID-7"]
    assert _search(doc, "accession=ACC-7") == ["PID-70", "PID-7"]
    assert _search(doc, "name=QUI") == ["PID-70", "PID-7"]


def test_admin_without_the_physician_role_is_refused_the_study_list(
    web: Web, stored: Callable[..., None]
) -> None:
    stored("PID-A1")
    response = web.logged_in(web.user("boss", ADMIN)).get("/")
    # Sent on to the admin area (issue #15), not shown the list.
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/users")
    assert "ALONSO" not in response.text and "PID-A1" not in response.text


def test_refused_study_list_is_audited(web: Web) -> None:
    web.logged_in(web.user("boss", ADMIN)).get("/")
    refusals = web.audit(str(EventID.SECURITY_ALERT), str(EventType.USE_OF_RESTRICTED_FUNCTION), "boss")
    assert len(refusals) == 1
    assert refusals[0].outcome != 0 and refusals[0].source == ADDRESS
    assert details(refusals[0])["path"] == "/"


def test_search_is_audited_with_its_keys_and_user(web: Web, doc: Browser) -> None:
    doc.get("/?name=alon&modality=ct&from=2024-01-01")
    queries = web.audit(str(EventID.QUERY), user="doc")
    assert len(queries) == 1
    assert queries[0].source == ADDRESS
    assert details(queries[0])["keys"] == {"name": "alon", "modality": "CT", "date_from": "20240101"}


def test_every_page_of_a_search_is_audited(web: Web, doc: Browser) -> None:
    doc.get("/?patient_id=PID-A1")
    doc.get("/?patient_id=PID-A1&page=2")
    queries = web.audit(str(EventID.QUERY), user="doc")
    assert [(details(q)["keys"], details(q)["page"]) for q in queries] == [
        ({"patient_id": "PID-A1"}, 1),
        ({"patient_id": "PID-A1"}, 2),
    ]
