"""The viewer's list of the patient's other studies (priors): who counts as the same patient, and its audit.

``GET /studies/<study>/related`` and the viewer page's preload list the studies with the
same Patient ID (and issuer) but not the study itself; the listing is audited as a query,
and opening a prior's images is audited as viewing that study. Run on both index backends.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest

from pacs.core.audit import EventID
from tests.data.make_series import make_ct_series
from tests.web.dicomweb_helpers import ACCESSED, Study, store_study
from tests.web.web_helpers import Browser, Web, details

QUERY = str(EventID.QUERY)


def _study(root: Path, name: str, patient_id: str, date: str, **changes: str) -> list[Path]:
    files = make_ct_series(root, slices=2, rows=16, columns=16, patient_id=patient_id, study_date=date)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientName = name
        ds.PatientSex = "F"
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return files


@pytest.fixture
def patient(web: Web, tmp_path: Path) -> dict[str, Study]:
    """DOE^JANE's current study and two priors, a namesake with another ID, and one with a wildcard ID."""
    made = {
        "current": _study(tmp_path / "a", "DOE^JANE", "PID-J1", "20240301"),
        "prior": _study(tmp_path / "b", "DOE^JANE", "PID-J1", "20230110", StudyDescription="CT OLD"),
        "older": _study(tmp_path / "c", "DOE^JANE", "PID-J1", "20200505"),
        "namesake": _study(tmp_path / "d", "DOE^JANE", "PID-J2", "20220202"),
        "other issuer": _study(tmp_path / "e", "DOE^JANE", "PID-J1", "20210101", IssuerOfPatientID="OTHER"),
        "wildcard": _study(tmp_path / "f", "ROE^WILD", "PID-J*", "20240302"),
    }
    return {key: store_study(web.pacs, files) for key, files in made.items()}


def test_the_related_studies_are_the_same_patient_id_and_issuer_newest_first(
    doc: Browser, patient: dict[str, Study]
) -> None:
    response = doc.get(f"/studies/{patient['current'].uid}/related")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    rows = response.get_json()
    assert [row["study"] for row in rows] == [patient["prior"].uid, patient["older"].uid]
    assert rows[0]["date"] == "20230110" and rows[0]["description"] == "CT OLD"
    assert rows[0]["modalities"] == "CT" and rows[0]["series"] == 1 and rows[0]["instances"] == 2


def test_a_wildcard_in_the_patient_id_matches_only_itself(doc: Browser, patient: dict[str, Study]) -> None:
    assert doc.get(f"/studies/{patient['wildcard'].uid}/related").get_json() == []


def test_listing_the_priors_is_audited_as_a_query_of_that_patient(
    web: Web, doc: Browser, patient: dict[str, Study]
) -> None:
    doc.get(f"/studies/{patient['current'].uid}/related")
    (query,) = [r for r in web.audit(QUERY, user="doc") if details(r).get("what") == "related studies"]
    assert (query.patient_id, query.study_uid) == ("PID-J1", patient["current"].uid)
    assert details(query)["matches"] == 2


def test_the_viewer_page_preloads_the_priors_sex_and_age(
    web: Web, doc: Browser, patient: dict[str, Study]
) -> None:
    page = doc.get(f"/studies/{patient['current'].uid}").get_data(as_text=True)
    island = re.search(r'<script type="application/json" id="viewer-preload">(.*?)</script>', page, re.S)
    assert island is not None
    preload = json.loads(island.group(1))
    assert [row["study"] for row in preload["related"]] == [patient["prior"].uid, patient["older"].uid]
    assert preload["study"]["name"] == "DOE, Jane"
    assert preload["study"]["sex"] == "F"
    assert preload["study"]["age"] == "54 y"  # born 1970-01-01 (the generator's), seen 2024-03-01
    assert [details(r)["what"] for r in web.audit(QUERY, user="doc")] == ["related studies"]


def test_opening_a_priors_images_is_audited_as_viewing_that_study(
    web: Web, doc: Browser, patient: dict[str, Study]
) -> None:
    current, prior = patient["current"], patient["prior"]
    doc.get(f"/studies/{current.uid}")
    doc.get(f"/dicomweb/studies/{prior.uid}/series")
    doc.get(f"/dicomweb/studies/{prior.uid}/series/{prior.series_uid}/instances")
    assert doc.get(prior.frame_url()).status_code == 200
    records = web.audit(ACCESSED, user="doc")
    assert [(r.study_uid, r.patient_id, details(r)["how"]) for r in records] == [
        (current.uid, "PID-J1", "viewer"),
        (prior.uid, "PID-J1", "dicomweb"),
    ]


def test_an_unknown_study_has_no_related_list(doc: Browser) -> None:
    assert doc.get("/studies/1.2.3.999/related").status_code == 404
    assert doc.get("/studies/not-a-uid/related").status_code == 404
