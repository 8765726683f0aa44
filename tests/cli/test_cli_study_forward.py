"""``pacs study forward|queue|retry|cancel`` on both index backends: jobs queued, listed, retried, audited."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from pacs.core.audit_vocabulary import EventID
from pacs.core.context import open_pacs
from tests.cli.cli_helpers import _one_line_error, _run, _settings
from tests.ops.trash_helpers import TrashFiles, make_trash_files, store, uid_of


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TrashFiles:
    return make_trash_files(tmp_path_factory.mktemp("cli-forward"))


@pytest.fixture
def filled(data_dir: Path, files: TrashFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The archive with the three studies, a node TELERAD with a port and a node CT1 without one."""
    pacs = open_pacs(_settings(data_dir))
    try:
        store(pacs, files.all)
    finally:
        pacs.close()
    for ae_title, port in (("TELERAD", ["--port", "11112"]), ("CT1", [])):
        code, _, err = _run(
            capsys, "modality", "add", ae_title, "--host", "127.0.0.1", *port,
            "--issue-cert", str(tmp_path / ae_title), "--data", str(data_dir),
        )  # fmt: skip
        assert code == 0, err
    return data_dir


def _queue(capsys: pytest.CaptureFixture[str], data: Path, *options: str) -> list[dict[str, object]]:
    code, out, err = _run(capsys, "study", "queue", "--json", "--data", str(data), *options)
    assert code == 0, err
    return list(json.loads(out))


def _forward_records(data: Path) -> list[dict[str, object]]:
    pacs = open_pacs(_settings(data))
    try:
        return [
            {**json.loads(r.details), "user": r.user_id, "source": r.source, "study": r.study_uid}
            for r in pacs.audit.records()
            if r.event_id == EventID.INSTANCES_TRANSFERRED.value and "stage" in json.loads(r.details)
        ]
    finally:
        pacs.close()


def test_forward_queues_a_study_committed_listed_and_audited(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    study = uid_of(files.first[0])
    code, out, err = _run(capsys, "study", "forward", study, "--to", "TELERAD", "--data", str(filled))
    assert code == 0, err
    assert out.startswith("queued #1  pending  study ") and "-> TELERAD" in out and "not tried yet" in out

    (job,) = _queue(capsys, filled, "--state", "pending")
    assert (job["study_uid"], job["destination"], job["series_uid"], job["attempts"]) == (
        study,
        "TELERAD",
        "",
        0,
    )
    assert str(job["requested_by"]).endswith("@cli")
    assert _queue(capsys, filled, "--state", "failed") == []
    (record,) = _forward_records(filled)
    assert (record["stage"], record["destination"], record["study"], record["source"]) == (
        "queued", "TELERAD", study, "cli",
    )  # fmt: skip


def test_forward_of_a_series_and_of_a_patient_makes_one_job_per_study(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    first = pydicom.dcmread(files.first[0], stop_before_pixels=True)
    code, _, err = _run(
        capsys, "study", "forward", str(first.StudyInstanceUID), "--series", str(first.SeriesInstanceUID),
        "--to", "TELERAD", "--data", str(filled),
    )  # fmt: skip
    assert code == 0, err
    code, out, err = _run(
        capsys, "study", "forward", "--patient", "PID-T-1", "--to", "TELERAD", "--data", str(filled)
    )
    assert code == 0, err
    assert len(out.splitlines()) == 2
    jobs = _queue(capsys, filled)
    assert sorted((job["study_uid"], job["series_uid"]) for job in jobs) == sorted(
        [
            (str(first.StudyInstanceUID), str(first.SeriesInstanceUID)),
            (uid_of(files.first[0]), ""),
            (uid_of(files.second[0]), ""),
        ]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to", "NOBODY"], "no node with AE title 'NOBODY' is enrolled"),
        (["--to", "CT1"], "node CT1 has no port to send to"),
        (["--to", "TELERAD", "--patient", "PID-NONE"], "no study of patient 'PID-NONE'"),
    ],
)
def test_forward_to_a_node_that_cannot_receive_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles, argv: list[str], message: str
) -> None:
    study = [] if "--patient" in argv else [uid_of(files.first[0])]
    code, _, err = _run(capsys, "study", "forward", *study, *argv, "--data", str(filled))
    assert code != 0
    assert message in _one_line_error(err)
    assert _queue(capsys, filled) == []


def test_forward_of_an_unknown_study_or_without_any_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], filled: Path
) -> None:
    code, _, err = _run(capsys, "study", "forward", "1.2.3.4", "--to", "TELERAD", "--data", str(filled))
    assert code != 0 and "no study 1.2.3.4" in _one_line_error(err)
    code, _, err = _run(capsys, "study", "forward", "--to", "TELERAD", "--data", str(filled))
    assert code != 0 and "give a study UID or --patient ID" in _one_line_error(err)


def test_cancel_makes_a_pending_job_failed_and_retry_puts_it_back(
    capsys: pytest.CaptureFixture[str], filled: Path, files: TrashFiles
) -> None:
    _run(capsys, "study", "forward", uid_of(files.old[0]), "--to", "TELERAD", "--data", str(filled))
    code, out, err = _run(capsys, "study", "cancel", "1", "--data", str(filled))
    assert code == 0, err
    assert out.startswith("cancelled: #1  failed")
    (failed,) = _queue(capsys, filled, "--state", "failed")
    assert str(failed["last_error"]).startswith("cancelled by ") and failed["finished_at"] is not None

    code, out, err = _run(capsys, "study", "retry", "1", "--data", str(filled))
    assert code == 0, err
    (pending,) = _queue(capsys, filled, "--state", "pending")
    assert (pending["id"], pending["attempts"], pending["finished_at"]) == (1, 0, None)
    assert [r["stage"] for r in _forward_records(filled)] == ["queued", "cancelled", "retry"]

    code, _, err = _run(capsys, "study", "retry", "99", "--data", str(filled))
    assert code != 0 and "no forwarding job 99" in _one_line_error(err)
