"""``pacs study edit|move|merge|history|undo`` and ``pacs export --original`` on both index backends."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from pacs.core.audit_vocabulary import EventID
from pacs.core.context import open_pacs
from storage.models import AuditRecord
from storage.search import StudyQuery
from tests.cli.cli_helpers import _one_line_error, _run, _settings
from tests.data.make_series import make_ct_series


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Two patients' studies as files: DOE (3 slices) and ROE (2 slices)."""
    root = tmp_path_factory.mktemp("cli-versions")
    return {
        "PID-DOE": make_ct_series(
            root / "doe", slices=3, rows=16, columns=16, patient_name="DOE^JANE", patient_id="PID-DOE"
        ),
        "PID-ROE": make_ct_series(
            root / "roe", slices=2, rows=16, columns=16, patient_name="ROE^RICHARD", patient_id="PID-ROE"
        ),
    }


@pytest.fixture
def filled(data_dir: Path, sent: dict[str, list[Path]]) -> Path:
    pacs = open_pacs(_settings(data_dir))
    try:
        for files in sent.values():
            for path in files:
                pacs.archive.store(path)
    finally:
        pacs.close()
    return data_dir


def _study(sent: dict[str, list[Path]], patient: str) -> str:
    return str(pydicom.dcmread(sent[patient][0], stop_before_pixels=True).StudyInstanceUID)


def _export_records(data: Path) -> list[tuple[str, bool]]:
    """(study UID, as received) of every export the audit trail holds, oldest first."""
    pacs = open_pacs(_settings(data))
    try:
        with pacs.database.read() as session:
            rows = session.scalars(select(AuditRecord).where(AuditRecord.event_id == EventID.EXPORT))
            return [(row.study_uid, json.loads(row.details)["original"]) for row in rows]
    finally:
        pacs.close()


def _listed(data: Path) -> dict[str, tuple[str, str, str]]:
    """Study UID -> (Patient ID, name, date) as the study list has them."""
    pacs = open_pacs(_settings(data))
    try:
        rows = pacs.archive.search_studies(StudyQuery(limit=100))
    finally:
        pacs.close()
    return {row.study_uid: (row.patient_id, row.patient_name, row.study_date) for row in rows}


def _corrections(data: Path) -> list[dict[str, object]]:
    pacs = open_pacs(_settings(data))
    try:
        return [
            {**json.loads(r.details), "user": r.user_id, "source": r.source, "outcome": r.outcome}
            for r in pacs.audit.records()
            if json.loads(r.details).get("what") in {"edit", "move", "merge", "undo"}
        ]
    finally:
        pacs.close()


def test_edit_writes_the_values_and_is_audited_as_the_admin_on_the_box(
    capsys: pytest.CaptureFixture[str], filled: Path, sent: dict[str, list[Path]]
) -> None:
    doe = _study(sent, "PID-DOE")
    code, out, err = _run(
        capsys,
        "study",
        "edit",
        doe,
        "--set",
        "PatientName=DOE^JOANNA",
        "--set",
        "StudyDate=20240102",
        "--reason",
        "typo at registration",
        "--data",
        str(filled),
    )
    assert code == 0, err
    assert out.splitlines() == [f"edited {doe}: 3 new versions", "change 1"]
    assert _listed(filled)[doe] == ("PID-DOE", "DOE^JOANNA", "20240102")
    (record,) = _corrections(filled)
    assert record["what"] == "edit" and record["reason"] == "typo at registration"
    assert str(record["user"]).endswith("@cli") and record["source"] == "cli" and record["outcome"] == 0


def test_edit_refuses_a_bad_value_or_no_reason_in_one_line_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], filled: Path, sent: dict[str, list[Path]]
) -> None:
    doe = _study(sent, "PID-DOE")
    base = ["study", "edit", doe, "--data", str(filled)]
    code, _, err = _run(capsys, *base, "--set", "StudyDate=2024-01-02", "--reason", "x")
    assert code == 2
    assert _one_line_error(err) == "pacs: error: Study date (StudyDate) is not a date (YYYYMMDD)"
    code, _, err = _run(capsys, *base, "--set", "AccessionNumber=" + "A" * 17, "--reason", "x")
    assert "Accession number (AccessionNumber) is longer than 16 characters" in _one_line_error(err)
    code, _, err = _run(capsys, *base, "--set", "StudyInstanceUID=1.2.3", "--reason", "x")
    assert "StudyInstanceUID cannot be changed" in _one_line_error(err)
    code, _, err = _run(capsys, *base, "--set", "PatientName=X", "--reason", "  ")
    assert _one_line_error(err) == "pacs: error: a reason is required"
    with pytest.raises(SystemExit):
        _run(capsys, *base, "--set", "PatientName=X")  # --reason is required by the parser
    assert _listed(filled)[doe][1] == "DOE^JANE"


def test_move_files_the_study_under_the_other_patient_and_export_original_gives_the_files_sent(
    capsys: pytest.CaptureFixture[str], filled: Path, sent: dict[str, list[Path]], tmp_path: Path
) -> None:
    doe = _study(sent, "PID-DOE")
    code, out, err = _run(
        capsys,
        "study",
        "move",
        doe,
        "--to-patient",
        "PID-ROE",
        "--reason",
        "wrong patient",
        "--data",
        str(filled),
    )
    assert code == 0, err
    assert out.splitlines()[0] == f"moved {doe}: 3 new versions"
    assert _listed(filled)[doe][:2] == ("PID-ROE", "ROE^RICHARD")
    code, out, err = _run(capsys, "export", doe, str(tmp_path / "orig"), "--original", "--data", str(filled))
    assert code == 0, err
    assert out.strip() == f"exported 3 objects as received in 1 series to {tmp_path / 'orig'}"

    def digests(paths: list[Path]) -> list[str]:
        return sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in paths)

    assert digests(list((tmp_path / "orig").rglob("*.dcm"))) == digests(sent["PID-DOE"])
    assert _export_records(filled) == [(doe, True)]
    code, _, err = _run(capsys, "export", doe, str(tmp_path / "now"), "--data", str(filled))
    assert code == 0, err
    assert {str(pydicom.dcmread(p).PatientID) for p in (tmp_path / "now").rglob("*.dcm")} == {"PID-ROE"}
    code, _, err = _run(
        capsys, "study", "move", doe, "--to-patient", "NOBODY", "--reason", "x", "--data", str(filled)
    )
    assert _one_line_error(err) == "pacs: error: no patient with Patient ID 'NOBODY'"


def test_merge_is_undone_and_the_history_tells_both(
    capsys: pytest.CaptureFixture[str], filled: Path, sent: dict[str, list[Path]]
) -> None:
    doe, roe = _study(sent, "PID-DOE"), _study(sent, "PID-ROE")
    before = _listed(filled)
    merge = [
        "study",
        "merge",
        "--from-patient",
        "PID-DOE",
        "--into-patient",
        "PID-ROE",
        "--data",
        str(filled),
    ]
    code, out, err = _run(capsys, *merge, "--reason", "same person")
    assert code == 0, err
    assert out.splitlines()[-1] == "change 1"
    assert {_listed(filled)[uid][0] for uid in (doe, roe)} == {"PID-ROE"}
    code, out, err = _run(
        capsys, "study", "undo", "1", "--reason", "not the same person", "--data", str(filled)
    )
    assert code == 0, err
    assert out.splitlines() == [f"restored {doe}: 3 new versions", "change 2"]
    assert _listed(filled) == before
    code, out, err = _run(capsys, "study", "history", doe, "--json", "--data", str(filled))
    assert code == 0, err
    history = json.loads(out)
    assert [(h["id"], h["kind"], h["undone_by"], h["reason"]) for h in history] == [
        (1, "merge", 2, "same person"),
        (2, "undo", None, "not the same person"),
    ]
    assert history[0]["details"]["studies"][0]["before"]["PatientID"] == "PID-DOE"
    code, out, err = _run(capsys, "study", "history", "--patient", "PID-DOE", "--data", str(filled))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "merge" in lines[0] and "undone by change 2" in lines[0]
    code, _, err = _run(capsys, "study", "undo", "1", "--reason", "again", "--data", str(filled))
    assert _one_line_error(err) == "pacs: error: change 1 was already undone by change 2"
    assert [record["what"] for record in _corrections(filled)] == ["merge", "undo"]


def test_undo_of_a_change_followed_by_another_is_refused_until_that_one_is_undone(
    capsys: pytest.CaptureFixture[str], filled: Path, sent: dict[str, list[Path]]
) -> None:
    doe = _study(sent, "PID-DOE")
    data = ["--data", str(filled)]
    for value in ("First desc", "Second desc"):
        code, _, err = _run(
            capsys, "study", "edit", doe, "--set", f"StudyDescription={value}", "--reason", "r", *data
        )
        assert code == 0, err
    code, _, err = _run(capsys, "study", "undo", "1", "--reason", "r", *data)
    assert (
        _one_line_error(err)
        == "pacs: error: change 1 was followed by change 2 on the same study: undo that one first"
    )
    for change in ("2", "1"):
        code, _, err = _run(capsys, "study", "undo", change, "--reason", "r", *data)
        assert code == 0, err
    pacs = open_pacs(_settings(filled))
    try:
        first = pacs.archive.study_instances(doe)[0]
        assert first.version == 5
        original = pydicom.dcmread(sent["PID-DOE"][0], stop_before_pixels=True)
        assert pacs.archive.dataset_without_pixels(first).get("StudyDescription", "") == original.get(
            "StudyDescription", ""
        )
    finally:
        pacs.close()
