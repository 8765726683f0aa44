"""The ``pacs`` command line: import, export, verify and migrate, with bad input; the console script;
PHI grants of ``pacs modality``.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from alembic.script import ScriptDirectory
from pydicom.fileset import FileSet

from pacs.core.context import open_pacs
from storage.archive import Archive
from storage.db import MIGRATIONS
from tests.cli.cli_helpers import (
    _one_line_error,
    _run,
    _settings,
)
from tests.conftest import RunningDicom, blob_store
from tests.data.make_series import make_ct_series
from tests.data.set_back_schema import set_back_schema


def test_import_stores_a_folder_and_audits_it(
    data_dir: Path, ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "import", str(ct_dir), "--data", str(data_dir), "--quiet")
    assert code == 0
    assert "6 stored" in out
    pacs = open_pacs(_settings(data_dir))
    try:
        assert pacs.archive.verify().checked == 6
        imports = [r for r in pacs.audit.records() if r.event_id == "110107"]
    finally:
        pacs.close()
    assert len(imports) == 1
    assert imports[0].patient_id == "PID-Q-7731"


def test_import_reports_each_bad_file_by_name_and_carries_on(
    data_dir: Path, ct_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(ct_dir, folder)
    (folder / "readme.txt").write_text("not dicom")
    good = sorted(folder.glob("*.dcm"))
    good[0].write_bytes(good[0].read_bytes()[:-500])
    ds = pydicom.dcmread(good[1])
    del ds.SOPInstanceUID
    ds.save_as(good[1])
    code, out, err = _run(
        capsys, "import", str(folder), str(tmp_path / "absent.dcm"), "--data", str(data_dir), "--quiet"
    )
    assert code == 1
    assert "4 stored" in out and "4 failed" in out
    assert f"failed {folder / 'readme.txt'}: not a DICOM Part 10 file" in err
    assert f"{good[0]}: truncated" in err
    assert f"{good[1]}: missing SOP Instance UID" in err
    assert f"{tmp_path / 'absent.dcm'}: no such file or directory" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        ("SOPInstanceUID", "../../etc/passwd", "invalid SOP Instance UID"),
        ("StudyInstanceUID", "1.2.3/4", "invalid Study Instance UID"),
        ("SeriesInstanceUID", None, "missing Series Instance UID"),
        ("StudyInstanceUID", None, "missing Study Instance UID"),
    ],
)
def test_import_refuses_a_missing_or_path_like_uid_naming_the_file(
    data_dir: Path,
    ct_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keyword: str,
    value: str | None,
    reason: str,
) -> None:
    bad = tmp_path / "bad.dcm"
    ds = pydicom.dcmread(next(ct_dir.glob("*.dcm")))
    if value is None:
        delattr(ds, keyword)
    else:
        setattr(ds, keyword, value)
    ds.save_as(bad)
    code, out, err = _run(capsys, "import", str(bad), "--data", str(data_dir), "--quiet")
    assert code == 1
    assert "0 stored" in out and "1 failed" in out
    assert err.startswith(f"failed {bad}: {reason}"), err
    assert "Traceback" not in err
    assert not list((data_dir / "blobs").glob("??/*.blob"))


def test_import_reads_a_patient_cd_through_its_dicomdir(
    data_dir: Path, ct_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fileset = FileSet()
    for path in sorted(ct_dir.glob("*.dcm")):
        fileset.add(pydicom.dcmread(path))
    cd = tmp_path / "cdrom"
    fileset.write(cd)
    (cd / "AUTORUN.INF").write_text("[autorun]\nopen=viewer.exe\n")
    (cd / "VIEWER.EXE").write_bytes(b"MZ" + b"\0" * 100)
    code, out, err = _run(capsys, "import", str(cd), "--data", str(data_dir), "--quiet")
    assert (code, err) == (0, "")
    assert "6 stored" in out and "0 failed" in out
    code, out, _ = _run(capsys, "import", str(cd / "DICOMDIR"), "--data", str(data_dir), "--quiet")
    assert code == 0 and "6 already present" in out


def test_export_writes_decrypted_copies_and_audits_the_export(
    data_dir: Path, ct_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "import", str(ct_dir), "--data", str(data_dir), "--quiet")[0] == 0
    study_uid = pydicom.dcmread(next(ct_dir.glob("*.dcm"))).StudyInstanceUID
    out_dir = tmp_path / "export"
    code, out, _ = _run(capsys, "export", study_uid, str(out_dir), "--data", str(data_dir))
    assert code == 0 and "exported 6 objects" in out
    exported = sorted(p.read_bytes() for p in out_dir.rglob("*.dcm"))
    assert exported == sorted(p.read_bytes() for p in ct_dir.glob("*.dcm"))
    assert all(study_uid not in str(p) and "QUIXOTE" not in str(p) for p in out_dir.rglob("*"))
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in out_dir.rglob("*.dcm"))
    pacs = open_pacs(_settings(data_dir))
    try:
        last = list(pacs.audit.records())[-1]
    finally:
        pacs.close()
    assert (last.event_id, last.study_uid, last.patient_id) == ("110106", study_uid, "PID-Q-7731")


def test_an_export_that_fails_half_way_leaves_only_whole_files_and_is_audited_as_a_failure(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 2 MiB slices: each blob has several authenticated chunks, so damage at the end of
    # one is found only after its first chunk was decrypted and written.
    slices = make_ct_series(tmp_path / "ct", slices=3, rows=1024, columns=1024)
    assert _run(capsys, "import", str(tmp_path / "ct"), "--data", str(data_dir), "--quiet")[0] == 0
    study_uid = pydicom.dcmread(slices[0]).StudyInstanceUID
    pacs = open_pacs(_settings(data_dir))
    try:
        second = pacs.archive.study_instances(study_uid)[1]
        blob = blob_store(pacs).path_of(second.ref.blob_id)
    finally:
        pacs.close()
    blob.write_bytes(blob.read_bytes()[:-100])
    out = tmp_path / "export"
    code, _, err = _run(capsys, "export", study_uid, str(out), "--data", str(data_dir))
    assert code == 2
    assert "pacs: error:" in _one_line_error(err)
    assert [p.relative_to(out).as_posix() for p in sorted(out.rglob("*")) if p.is_file()] == [
        "S0001/I000001.dcm"
    ]
    assert (out / "S0001" / "I000001.dcm").read_bytes() in {p.read_bytes() for p in slices}
    pacs = open_pacs(_settings(data_dir))
    try:
        last = list(pacs.audit.records())[-1]
    finally:
        pacs.close()
    assert (last.event_id, last.study_uid, last.outcome) == ("110106", study_uid, 8)
    assert json.loads(last.details)["written"] == 1


def test_an_interrupted_import_audits_what_it_stored(
    data_dir: Path, ct_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Archive.store
    calls = []

    def store_then_interrupt(self: Archive, path: Path) -> object:
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return store(self, path)

    monkeypatch.setattr(Archive, "store", store_then_interrupt)
    code, _, err = _run(capsys, "import", str(ct_dir), "--data", str(data_dir), "--quiet")
    assert code == 130 and "interrupted" in err
    monkeypatch.undo()
    pacs = open_pacs(_settings(data_dir))
    try:
        imports = [r for r in pacs.audit.records() if r.event_id == "110107"]
        stored = pacs.archive.verify().checked
    finally:
        pacs.close()
    assert stored == 3
    assert len(imports) == 1 and json.loads(imports[0].details)["stored"] == 3


def test_export_of_an_unknown_study_is_an_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "export", "1.2.3.4", str(tmp_path / "out"), "--data", str(data_dir))
    assert code == 2
    assert "no study 1.2.3.4" in _one_line_error(err)


def _flip_last_byte(blobs: list[Path]) -> None:
    content = bytearray(blobs[0].read_bytes())
    content[-1] ^= 0xFF
    blobs[0].write_bytes(bytes(content))


def _truncate(blobs: list[Path]) -> None:
    blobs[0].write_bytes(blobs[0].read_bytes()[:-100])


def _swap(blobs: list[Path]) -> None:
    first, second = blobs[0].read_bytes(), blobs[1].read_bytes()
    blobs[0].write_bytes(second)
    blobs[1].write_bytes(first)


@pytest.mark.parametrize(
    "damage", [_flip_last_byte, _truncate, _swap], ids=["flipped", "truncated", "swapped"]
)
def test_verify_exits_non_zero_when_an_object_is_damaged(
    data_dir: Path, ct_dir: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[list[Path]], None]
) -> None:
    assert _run(capsys, "import", str(ct_dir), "--data", str(data_dir), "--quiet")[0] == 0
    code, out, _ = _run(capsys, "verify", "--data", str(data_dir))
    assert code == 0 and "6 objects checked: all intact" in out
    damage(sorted((data_dir / "blobs").glob("??/*.blob")))
    code, out, _ = _run(capsys, "verify", "--data", str(data_dir))
    assert code == 1
    damaged = [line for line in out.splitlines() if line.startswith("DAMAGED ")]
    assert len(damaged) == (2 if damage is _swap else 1), out
    assert "DAMAGE FOUND" in out


def _spooled_object(data_dir: Path, ct_dir: Path) -> Path:
    """A received object as a killed receiver leaves it: in clear under incoming/."""
    spooled = data_dir / "incoming" / "worker-1" / "tmpk3h2x1"
    spooled.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(next(ct_dir.glob("*.dcm")), spooled)
    return spooled


def test_verify_removes_objects_a_killed_server_left_in_clear(
    data_dir: Path, ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spooled = _spooled_object(data_dir, ct_dir)
    code, out, _ = _run(capsys, "verify", "--data", str(data_dir))
    assert code == 0
    assert "1 objects left unencrypted in incoming/ by a stopped server: removed" in out
    assert not spooled.exists()
    leftovers = [p for p in data_dir.rglob("*") if p.is_file() and b"QUIXOTE" in p.read_bytes()]
    assert leftovers == []


def test_verify_leaves_the_spool_of_a_running_server_alone(
    dicom: RunningDicom, ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = dicom.pacs.settings.data_dir
    spooled = _spooled_object(data_dir, ct_dir)
    code, out, _ = _run(capsys, "verify", "--data", str(data_dir))
    assert code == 0
    assert "left in place while pacs serve runs" in out
    assert spooled.exists()


def test_migrate_brings_an_older_index_schema_up_to_date_and_audits_it(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(data_dir)
    older = set_back_schema(data_dir)
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()

    code, out, _ = _run(capsys, "migrate", "--data", str(data_dir))
    assert (code, out) == (0, f"index schema migrated from revision {older} to {head}\n")
    code, out, _ = _run(capsys, "migrate", "--data", str(data_dir))
    assert (code, out) == (0, f"index schema is current (revision {head})\n")
    pacs = open_pacs(settings)
    try:
        migrations = [
            (r.user_id, json.loads(r.details)) for r in pacs.audit.records() if "migrated" in r.details
        ]
    finally:
        pacs.close()
    by = f"{getpass.getuser()}@cli"
    assert migrations == [(by, {"what": "index schema migrated", "from": older, "to": head})]


def test_the_installed_console_script_runs(tmp_path: Path) -> None:
    pacs = Path(sys.executable).with_name("pacs")
    result = subprocess.run(
        [str(pacs), "init", "--data", str(tmp_path / "d")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [str(pacs), "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PACS_DATA": str(tmp_path / "d")},
    )
    assert result.returncode == 0, result.stderr
    assert "0 objects checked: all intact" in result.stdout


# -- modality: PHI grants from the command line ------------------------------------------------------


def _enrolments(data: Path) -> list[dict[str, object]]:
    pacs = open_pacs(_settings(data))
    try:
        return [json.loads(r.details) for r in pacs.audit.records() if r.event_type == "110128"]
    finally:
        pacs.close()


def test_the_operator_may_grant_find_move_and_get_on_the_command_line_and_it_is_audited_as_a_phi_grant(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["modality", "add", "WS1", "--host", "10.0.0.8", "--allow", "store,find,get"]
    code, out, _ = _run(capsys, *argv, "--issue-cert", str(tmp_path / "ws1"), "--data", str(data_dir))
    assert code == 0
    assert "PHI grant: find,get lets WS1 read every patient's data" in out
    (record,) = _enrolments(data_dir)
    assert record["phi_grant"] == ["find", "get"]
    assert record["authority"] == "operator on the appliance (command line)"
    assert record["permissions"] == ["find", "get", "store"]


def test_a_store_only_enrolment_on_the_command_line_is_no_phi_grant(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["modality", "add", "CT1", "--host", "10.0.0.5", "--issue-cert", str(tmp_path / "ct1")]
    code, out, _ = _run(capsys, *argv, "--data", str(data_dir))
    assert code == 0 and "PHI grant" not in out
    (record,) = _enrolments(data_dir)
    assert "phi_grant" not in record and "authority" not in record
