"""pacs.ops.corrections on both index backends: what an edit reaches, what is refused, what is audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sqlalchemy import update

from pacs.core.context import Context
from pacs.ops import corrections
from storage import changes
from storage.errors import PacsError
from storage.models import Study
from storage.search import StudyQuery
from tests.data.make_series import make_ct_series

ACTOR = corrections.Actor("ops-test", "192.0.2.7", "registration error")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """DOE with two studies (2 and 1 slices) in UTF-8, ROE with one in the default character set."""
    root = tmp_path_factory.mktemp("ops-corrections")
    common = {"rows": 8, "columns": 8}
    roe = make_ct_series(root / "r", slices=1, patient_name="ROE^RICHARD", patient_id="PID-R", **common)
    for path in roe:
        ds = pydicom.dcmread(path)
        del ds.SpecificCharacterSet
        ds.save_as(path)
    return {
        "doe1": make_ct_series(root / "d1", slices=2, patient_name="DOE^JANE", patient_id="PID-D", **common),
        "doe2": make_ct_series(root / "d2", slices=1, patient_name="DOE^JANE", patient_id="PID-D", **common),
        "roe": roe,
    }


@pytest.fixture
def uids(pacs: Context, files: dict[str, list[Path]]) -> dict[str, str]:
    for paths in files.values():
        for path in paths:
            pacs.archive.store(path)
    return {name: str(pydicom.dcmread(paths[0]).StudyInstanceUID) for name, paths in files.items()}


def _audited(pacs: Context) -> list[tuple[Any, dict[str, Any]]]:
    records = [(record, json.loads(record.details)) for record in pacs.audit.records()]
    return [(record, details) for record, details in records if details.get("what") in corrections_kinds()]


def corrections_kinds() -> set[str]:
    return {"edit", "move", "merge", "undo"}


def _names(pacs: Context) -> dict[str, tuple[str, str]]:
    return {
        row.study_uid: (row.patient_id, row.patient_name)
        for row in pacs.archive.search_studies(StudyQuery(limit=50))
    }


def test_a_patient_attribute_is_corrected_in_every_study_of_the_patient(
    pacs: Context, uids: dict[str, str]
) -> None:
    change = corrections.edit(pacs, uids["doe1"], {"PatientName": "DOE^JOAN", "StudyID": "S-9"}, ACTOR)
    assert {study.study_uid: len(study.instances) for study in change.studies} == {
        uids["doe1"]: 2,
        uids["doe2"]: 1,
    }
    assert change.studies[1].after == {"PatientName": "DOE^JOAN"}  # the study attribute stays the study's
    names = _names(pacs)
    assert names[uids["doe1"]] == names[uids["doe2"]] == ("PID-D", "DOE^JOAN")
    assert names[uids["roe"]] == ("PID-R", "ROE^RICHARD")
    audited = _audited(pacs)
    assert [(r.study_uid, r.user_id, r.source, r.patient_id) for r, _ in audited] == [
        (uids["doe1"], "ops-test", "192.0.2.7", "PID-D"),
        (uids["doe2"], "ops-test", "192.0.2.7", "PID-D"),
    ]
    assert {details["change"] for _, details in audited} == {change.id}
    assert audited[0][1]["before"] == {
        "PatientName": "DOE^JANE",
        "StudyID": audited[0][1]["before"]["StudyID"],
    }


def test_a_patient_id_of_another_record_a_foreign_character_and_the_trash_are_refused(
    pacs: Context, uids: dict[str, str]
) -> None:
    with pytest.raises(PacsError, match="another patient's record: move the study or merge them"):
        corrections.edit(pacs, uids["doe1"], {"PatientID": "PID-R"}, ACTOR)
    with pytest.raises(
        PacsError, match=r"PatientName: the objects' character set \(iso8859\) cannot hold it"
    ):
        corrections.edit(pacs, uids["roe"], {"PatientName": "ŁUKASZ^ŻÓŁW"}, ACTOR)
    with pacs.database.write() as session:
        session.execute(
            update(Study).where(Study.study_uid == uids["roe"]).values(deleted_at=datetime.now(UTC))
        )
    with pytest.raises(PacsError, match="is in the trash"):
        corrections.edit(pacs, uids["roe"], {"StudyDescription": "X"}, ACTOR)
    with pytest.raises(PacsError, match="a reason is required"):
        corrections.edit(pacs, uids["doe1"], {"StudyDescription": "X"}, corrections.Actor("a", "cli", ""))
    failed = [(r.outcome, d["error"]) for r, d in _audited(pacs)]
    assert len(failed) == 2 and all(outcome == 8 for outcome, _ in failed)
    assert "cannot hold it" in failed[0][1] and "in the trash" in failed[1][1]
    assert all(info.version == 1 for info in pacs.archive.study_instances(uids["doe1"]))


def test_a_merge_is_one_change_over_every_study_and_its_undo_restores_the_record(
    pacs: Context, uids: dict[str, str]
) -> None:
    before = _names(pacs)
    doe, roe = (changes.one_patient(pacs.archive.database, pid) for pid in ("PID-D", "PID-R"))
    merged = corrections.merge(pacs, doe, roe, ACTOR)
    assert sorted(study.study_uid for study in merged.studies) == sorted([uids["doe1"], uids["doe2"]])
    assert changes.patients_with_id(pacs.archive.database, "PID-D") == []  # the record merged away is gone
    assert {pid for pid, _ in _names(pacs).values()} == {"PID-R"}
    history = corrections.patient_history(pacs, "PID-R")
    assert [(entry.id, entry.kind) for entry in history] == [(merged.id, "merge")]
    undone = corrections.undo(pacs, merged.id, corrections.Actor("ops-test", "cli", "two people"))
    assert _names(pacs) == before
    assert changes.change(pacs.archive.database, merged.id).undone_by == undone.id
    kinds = [(details["what"], record.study_uid) for record, details in _audited(pacs)]
    assert sorted(kinds) == sorted(
        [("merge", uids["doe1"]), ("merge", uids["doe2"]), ("undo", uids["doe1"]), ("undo", uids["doe2"])]
    )
