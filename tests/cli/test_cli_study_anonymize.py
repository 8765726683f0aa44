"""``pacs study anonymize``: a de-identified copy written by the command line, its warnings and its errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pydicom
import pytest

from pacs.core.context import open_pacs
from tests.cli.cli_helpers import _one_line_error, _run, _settings
from tests.ops.anonymize_helpers import STUDY_DATE, STUDY_UID, MarkedStudy, found_in, store_marked_study


@pytest.fixture
def study(data_dir: Path, tmp_path: Path) -> MarkedStudy:
    pacs = open_pacs(_settings(data_dir))
    try:
        return store_marked_study(pacs, tmp_path / "marked")
    finally:
        pacs.close()


def test_anonymize_writes_a_zip_without_identifying_values_and_warns_of_burned_in_objects(
    data_dir: Path, study: MarkedStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "teaching.zip"
    code, stdout, stderr = _run(
        capsys,
        "study",
        "anonymize",
        STUDY_UID,
        str(out),
        "--patient-name",
        "CASE^ONE",
        "--data",
        str(data_dir),
    )
    assert code == 0
    assert stdout.splitlines() == [
        f"anonymized 4 of 7 objects to {out} (patient CASE^ONE, ID {stdout.split('ID ')[1].split(';')[0]}; "
        "basic profile)"
    ]
    warnings = stderr.splitlines()
    assert len(warnings) == 3 and all(
        line.startswith("warning: S000") and "left out" in line for line in warnings
    )
    values = study.identifying_values()
    assert found_in(out.read_bytes(), values) == set()
    with zipfile.ZipFile(out) as archive:
        assert len(archive.namelist()) == 5
        assert all(found_in(archive.read(name), values) == set() for name in archive.namelist())


def test_anonymize_with_every_option_keeps_dates_cleans_descriptors_and_copies_flagged_objects(
    data_dir: Path, study: MarkedStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "research"
    argv = ["study", "anonymize", STUDY_UID, str(out), "--retain-dates", "--clean-descriptors"]
    code, stdout, stderr = _run(
        capsys, *argv, "--allow-burned-in", "--patient-id", "R-01", "--json", "--data", str(data_dir)
    )
    assert code == 0
    manifest = json.loads(stdout)
    assert manifest["deidentification"] == ["basic", "full_dates", "clean_descriptors"]
    assert manifest["patient_id"] == "R-01" and all(item["written"] for item in manifest["objects"])
    assert all("copied: check its pixels" in line for line in stderr.splitlines())
    copies = [pydicom.dcmread(path) for path in sorted(out.rglob("*.dcm"))]
    assert len(copies) == 7
    assert {(ds.StudyDate, ds.StudyDescription, ds.PatientID) for ds in copies} == {
        (STUDY_DATE, "Head for * ref *", "R-01")
    }


def test_anonymize_refuses_an_existing_target_and_an_unknown_study_in_one_line(
    data_dir: Path, study: MarkedStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"mine")
    code, _, err = _run(capsys, "study", "anonymize", STUDY_UID, str(taken), "--data", str(data_dir))
    assert code == 2 and "exists already" in _one_line_error(err)
    assert taken.read_bytes() == b"mine"
    code, _, err = _run(
        capsys, "study", "anonymize", "1.2.3.4", str(tmp_path / "new"), "--data", str(data_dir)
    )
    assert code == 2 and "no study 1.2.3.4" in _one_line_error(err)
    assert not (tmp_path / "new").exists()
    code, _, err = _run(
        capsys,
        "study",
        "anonymize",
        STUDY_UID,
        str(tmp_path / "n2"),
        "--patient-id",
        "x" * 65,
        "--data",
        str(data_dir),
    )
    assert code == 2 and "replacement patient ID" in _one_line_error(err)
    argv = ["study", "anonymize", STUDY_UID, str(tmp_path / "n3"), "--retain-dates", "--shift-dates"]
    code, _, err = _run(capsys, *argv, "--data", str(data_dir))
    assert code == 2 and "either kept or shifted" in _one_line_error(err)
    assert not (tmp_path / "n2").exists() and not (tmp_path / "n3").exists()


def test_anonymize_is_audited_as_done_by_the_admin_on_the_box(
    data_dir: Path, study: MarkedStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "study", "anonymize", STUDY_UID, str(tmp_path / "c"), "--data", str(data_dir))[0] == 0
    pacs = open_pacs(_settings(data_dir))
    try:
        last = list(pacs.audit.records())[-1]
    finally:
        pacs.close()
    assert (last.event_id, last.source, last.study_uid) == ("110106", "cli", STUDY_UID)
    assert last.user_id.endswith("@cli")
    assert json.loads(last.details)["what"] == "anonymized copy"


def test_anonymize_with_shift_dates_says_so(
    data_dir: Path, study: MarkedStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["study", "anonymize", STUDY_UID, str(tmp_path / "c"), "--shift-dates", "--data", str(data_dir)]
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0 and stdout.rstrip().endswith("; basic profile, dates shifted)")
    assert {pydicom.dcmread(p).StudyDate for p in (tmp_path / "c").rglob("*.dcm")} - {STUDY_DATE, ""} != set()
