"""``pacs study list|show|delete|restore|purge|retention`` on both index backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.audit_vocabulary import EventID
from pacs.core.context import open_pacs
from tests.cli.cli_helpers import _one_line_error, _run, _settings
from tests.ops.trash_helpers import TrashFiles, make_trash_files, store, uid_of


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TrashFiles:
    return make_trash_files(tmp_path_factory.mktemp("cli-trash"))


@pytest.fixture
def filled(data_dir: Path, files: TrashFiles) -> Path:
    pacs = open_pacs(_settings(data_dir))
    try:
        store(pacs, files.all)
    finally:
        pacs.close()
    return data_dir


def _listed(capsys: pytest.CaptureFixture[str], data: Path, *options: str) -> list[str]:
    code, out, err = _run(capsys, "study", "list", "--data", str(data), *options)
    assert code == 0, err
    return [line.split()[0] for line in out.splitlines()]


def _deletions(data: Path) -> list[dict[str, object]]:
    pacs = open_pacs(_settings(data))
    try:
        return [
            {**json.loads(r.details), "user": r.user_id, "source": r.source, "study": r.study_uid}
            for r in pacs.audit.records()
            if r.event_id == EventID.STUDY_DELETED.value
        ]
    finally:
        pacs.close()


def test_list_shows_uid_patient_name_date_modality_description_and_counts(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    code, out, _ = _run(capsys, "study", "list", "--data", str(filled), "--patient", "PID-T-2")
    assert code == 0
    [line] = out.splitlines()
    assert line.startswith(uid_of(files.old[0]) + "  PID-T-2  KEEP^BOB  20090101  CT  ")
    assert line.endswith("1 series, 2 instances")
    assert set(_listed(capsys, filled, "--name", "alice")) == {
        uid_of(files.first[0]),
        uid_of(files.second[0]),
    }
    assert _listed(capsys, filled, "--date", "20240201-20241231") == [uid_of(files.second[0])]
    assert _listed(capsys, filled, "--date", "-20100101") == [uid_of(files.old[0])]
    code, out, _ = _run(capsys, "study", "list", "--data", str(filled), "--json", "--patient", "PID-T-2")
    [row] = json.loads(out)
    assert (row["patient_name"], row["instances"], row["modalities"], row["deleted_at"]) == (
        "KEEP^BOB",
        2,
        ["CT"],
        None,
    )


def test_delete_hides_the_study_from_the_list_and_restore_brings_it_back(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    study = uid_of(files.first[0])
    code, out, err = _run(capsys, "study", "delete", study, "--reason", "test study", "--data", str(filled))
    assert code == 0, err
    assert f"moved to the trash: {study}" in out and "purged after 30 days" in out
    assert study not in _listed(capsys, filled)
    assert _listed(capsys, filled, "--deleted") == [study]
    code, out, _ = _run(capsys, "study", "show", study, "--data", str(filled))
    assert code == 0 and "(in the trash since" in out
    assert "delete by " in out and "from cli: test study" in out
    code, out, err = _run(capsys, "study", "restore", study, "--data", str(filled))
    assert code == 0, err
    assert study in _listed(capsys, filled)
    assert _listed(capsys, filled, "--deleted") == []
    [trashed, restored] = _deletions(filled)
    assert (trashed["stage"], trashed["reason"], trashed["source"]) == ("trash", "test study", "cli")
    assert str(trashed["user"]).endswith("@cli") and restored["stage"] == "restore"


def test_show_lists_attributes_series_state_and_history(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    study = uid_of(files.old[0])
    code, out, _ = _run(capsys, "study", "show", study, "--data", str(filled))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"study {study}  (active)"
    assert "patient KEEP^BOB  ID PID-T-2" in lines[1]
    assert "date 20090101" in lines[2]
    assert f"series {uid_of(files.old[0], 'SeriesInstanceUID')}" in out and "2 instances" in out


def test_delete_needs_a_reason_and_unknown_uids_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    study = uid_of(files.first[0])
    code, _, err = _run(capsys, "study", "delete", study, "--reason", " ", "--data", str(filled))
    assert code == 2 and "a reason is required" in _one_line_error(err)
    with pytest.raises(SystemExit):
        main(["study", "delete", study, "--data", str(filled)], environ={})
    capsys.readouterr()
    for action in (["show"], ["restore"], ["delete", "--reason", "x"], ["purge", "--yes"]):
        code, _, err = _run(capsys, "study", *action, "1.2.3.999", "--data", str(filled))
        assert code == 2 and _one_line_error(err) == "pacs: error: no study 1.2.3.999", action
    assert study in _listed(capsys, filled)


def test_erasure_deletes_every_study_of_the_patient(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    code, out, err = _run(
        capsys,
        "study",
        "delete",
        "--patient",
        "PID-T-1",
        "--reason",
        "erasure request",
        "--data",
        str(filled),
    )
    assert code == 0, err
    assert out.count("moved to the trash:") == 2
    assert _listed(capsys, filled) == [uid_of(files.old[0])]
    assert {r["study"] for r in _deletions(filled)} == {uid_of(files.first[0]), uid_of(files.second[0])}


def test_purge_needs_yes_leaves_no_blob_of_the_study_and_verify_passes(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    study = uid_of(files.second[0])
    blobs_before = set((filled / "blobs").rglob("*.blob"))
    _run(capsys, "study", "delete", study, "--reason", "duplicate", "--data", str(filled))
    code, _, err = _run(capsys, "study", "purge", study, "--data", str(filled))
    assert code == 2 and "--yes" in _one_line_error(err)
    assert set((filled / "blobs").rglob("*.blob")) == blobs_before
    code, out, err = _run(capsys, "study", "purge", study, "--yes", "--data", str(filled))
    assert code == 0, err
    assert out.splitlines() == [f"purged {study}", "1 studies purged"]
    left = set((filled / "blobs").rglob("*.blob"))
    assert len(blobs_before - left) == 2 and left < blobs_before
    code, out, err = _run(capsys, "verify", "--data", str(filled))
    assert code == 0, out + err
    code, _, err = _run(capsys, "study", "show", study, "--data", str(filled))
    assert code == 2 and _one_line_error(err) == f"pacs: error: no study {study}"


def test_purge_expired_purges_what_spent_trash_days_in_the_trash(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    study = uid_of(files.second[0])
    _run(capsys, "study", "delete", study, "--reason", "duplicate", "--data", str(filled))
    code, out, _ = _run(capsys, "study", "purge", "--expired", "--yes", "--data", str(filled))
    assert code == 0 and out.splitlines() == ["0 studies purged"]
    code = main(
        ["study", "purge", "--expired", "--yes", "--data", str(filled)],
        environ={"PACS_STORAGE_TRASH_DAYS": "0"},
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [f"purged {study}", "1 studies purged"]


def test_retention_dry_run_lists_exactly_the_old_studies_and_removal_is_audited(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    old = uid_of(files.old[0])
    environ = {"PACS_STORAGE_RETENTION_YEARS": "10"}
    assert main(["study", "retention", "--dry-run", "--data", str(filled)], environ=environ) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[5] for line in out[:-1]] == [old] and out[-1] == "1 studies older than 10 years"
    assert old in _listed(capsys, filled)
    assert main(["study", "retention", "--data", str(filled)], environ=environ) == 2
    assert "--yes" in _one_line_error(capsys.readouterr().err)
    assert main(["study", "retention", "--yes", "--data", str(filled)], environ=environ) == 0
    assert capsys.readouterr().out.startswith(f"moved to the trash: {old}")
    assert _listed(capsys, filled, "--deleted") == [old]
    runs = [r for r in _deletions(filled) if r.get("what") == "retention"]
    assert [(r["dry_run"], r["studies"], r["source"]) for r in runs] == [(True, 1, "cli"), (False, 1, "cli")]
    code, _, err = _run(capsys, "study", "retention", "--dry-run", "--data", str(filled))
    assert code == 2 and "retention_years is 0" in _one_line_error(err)


def test_a_trashed_study_cannot_be_exported_until_restored(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles, tmp_path: Path
) -> None:
    study = uid_of(files.first[0])
    _run(capsys, "study", "delete", study, "--reason", "test", "--data", str(filled))
    code, _, err = _run(capsys, "export", study, str(tmp_path / "out"), "--data", str(filled))
    assert code == 2 and _one_line_error(err) == f"pacs: error: no study {study}"
    assert list((tmp_path / "out").glob("**/*.dcm")) == []
    _run(capsys, "study", "restore", study, "--data", str(filled))
    code, _, err = _run(capsys, "export", study, str(tmp_path / "out"), "--data", str(filled))
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("**/*.dcm"))) == 3
