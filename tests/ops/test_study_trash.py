"""The trash on both index backends: delete hides everywhere, restore, purge, erasure, expiry, retention."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from pacs.core.audit_vocabulary import EventID
from pacs.core.context import Context, open_pacs
from pacs.ops import study_trash
from pacs.ops.trash_keeper import TrashKeeper, keep_once
from storage import study_details
from storage.errors import NotFoundError
from storage.models import Instance, Patient, Series, Study, StudyChange
from storage.reindex import sweep
from storage.trash import TrashStateError
from tests.conftest import blob_store
from tests.ops.trash_helpers import (
    ADMIN,
    TrashFiles,
    found_anywhere,
    make_trash_files,
    patient_found,
    store,
    uid_of,
)

EVERY_PATH = {
    "find STUDY",
    "find SERIES",
    "find IMAGE",
    "study list",
    "series images",
    "current instances",
    "study instances",
    "instance",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TrashFiles:
    return make_trash_files(tmp_path_factory.mktemp("trash"))


@pytest.fixture
def stored(pacs: Context, files: TrashFiles) -> TrashFiles:
    store(pacs, files.all)
    return files


def _blob_ids(pacs: Context, study_uid: str) -> set[str]:
    with pacs.database.read() as session:
        query = (
            select(Instance.blob_id)
            .join(Series, Instance.series_fk == Series.id)
            .join(Study, Series.study_fk == Study.id)
            .where(Study.study_uid == study_uid)
        )
        return set(session.scalars(query))


def _history(pacs: Context, study_uid: str) -> list[str]:
    with pacs.database.read() as session:
        return [row.kind for row in study_details.history(session, study_uid)]


def _deletions(pacs: Context) -> list[dict[str, object]]:
    return [
        {
            **json.loads(r.details),
            "user": r.user_id,
            "source": r.source,
            "study": r.study_uid,
            "pid": r.patient_id,
        }
        for r in pacs.audit.records()
        if r.event_id == EventID.STUDY_DELETED.value
    ]


def test_deleted_study_is_found_by_no_query_path_and_restore_brings_it_back(
    pacs: Context, stored: TrashFiles
) -> None:
    assert found_anywhere(pacs, stored.first) == EVERY_PATH
    study_trash.delete_study(pacs.archive, pacs.audit, uid_of(stored.first[0]), ADMIN, "test study")
    assert found_anywhere(pacs, stored.first) == set()
    assert found_anywhere(pacs, stored.second) == EVERY_PATH
    study_trash.restore_study(pacs.archive, pacs.audit, uid_of(stored.first[0]), ADMIN)
    assert found_anywhere(pacs, stored.first) == EVERY_PATH
    assert _history(pacs, uid_of(stored.first[0])) == ["delete", "restore"]


def test_patient_is_hidden_only_when_every_study_is_in_the_trash(pacs: Context, stored: TrashFiles) -> None:
    study_trash.delete_study(pacs.archive, pacs.audit, uid_of(stored.first[0]), ADMIN, "duplicate")
    [patient] = patient_found(pacs, "PID-T-1")
    assert patient.NumberOfPatientRelatedStudies == 1
    study_trash.delete_study(pacs.archive, pacs.audit, uid_of(stored.second[0]), ADMIN, "duplicate")
    assert patient_found(pacs, "PID-T-1") == []
    assert len(patient_found(pacs, "PID-T-2")) == 1


def test_delete_requires_a_reason_and_audits_who_why_what_and_from_where(
    pacs: Context, stored: TrashFiles
) -> None:
    study = uid_of(stored.first[0])
    with pytest.raises(study_trash.ReasonRequiredError):
        study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "   ")
    assert found_anywhere(pacs, stored.first) == EVERY_PATH
    assert _deletions(pacs) == []
    study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "sent to the wrong archive")
    [record] = _deletions(pacs)
    assert record["user"] == "alice" and record["source"] == "192.0.2.7"
    assert record["study"] == study and record["pid"] == "PID-T-1"
    assert record["reason"] == "sent to the wrong archive" and record["stage"] == "trash"
    with pacs.database.read() as session:
        [change] = session.scalars(select(StudyChange).where(StudyChange.study_uid == study))
    assert (change.kind, change.user_id, change.source, change.reason) == (
        "delete",
        "alice",
        "192.0.2.7",
        "sent to the wrong archive",
    )


def test_deleting_twice_restoring_a_live_study_and_unknown_uids_are_one_line_errors(
    pacs: Context, stored: TrashFiles
) -> None:
    study = uid_of(stored.first[0])
    with pytest.raises(TrashStateError, match="not in the trash"):
        study_trash.restore_study(pacs.archive, pacs.audit, study, ADMIN)
    with pytest.raises(TrashStateError, match="delete it first"):
        study_trash.purge_study(pacs.archive, pacs.audit, study, ADMIN)
    study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "x")
    with pytest.raises(TrashStateError, match="already in the trash"):
        study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "x")
    with pytest.raises(NotFoundError, match=r"no study 1\.2\.3\.4"):
        study_trash.delete_study(pacs.archive, pacs.audit, "1.2.3.4", ADMIN, "x")


def test_purge_leaves_no_blob_of_the_study_and_verify_passes(pacs: Context, stored: TrashFiles) -> None:
    study = uid_of(stored.first[0])
    blobs = _blob_ids(pacs, study)
    assert len(blobs) == 3
    study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "test")
    assert set(blob_store(pacs).blob_ids()) >= blobs
    assert study_trash.purge_study(pacs.archive, pacs.audit, study, ADMIN) == 3
    on_disk = set(blob_store(pacs).blob_ids())
    assert on_disk.isdisjoint(blobs)
    assert [p for blob in blobs for p in pacs.settings.blob_dir.rglob(f"*{blob}*")] == []
    assert len(on_disk) == 4  # the other two studies
    with pytest.raises(NotFoundError):
        study_trash.find(pacs.archive, study)
    assert len(patient_found(pacs, "PID-T-1")) == 1  # the patient keeps the second study
    assert _history(pacs, study) == ["delete", "purge"]
    assert [r["stage"] for r in _deletions(pacs)] == ["trash", "purge"]
    assert pacs.archive.verify().ok
    assert sweep(pacs.archive, remove=True, alone=True).reindexed == []
    assert found_anywhere(pacs, stored.first) == set()


def test_purging_a_patients_last_study_removes_the_patient_row(pacs: Context, stored: TrashFiles) -> None:
    study = uid_of(stored.old[0])
    study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "test")
    study_trash.purge_study(pacs.archive, pacs.audit, study, ADMIN)
    with pacs.database.read() as session:
        assert session.scalars(select(Patient.patient_id)).all() == ["PID-T-1"]


def test_sweep_keeps_the_blobs_of_a_trashed_study(pacs: Context, stored: TrashFiles) -> None:
    study = uid_of(stored.first[0])
    blobs = _blob_ids(pacs, study)
    study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "test")
    report = sweep(pacs.archive, remove=True, alone=True)
    assert (report.reindexed, report.removed, report.duplicates) == ([], [], [])
    assert set(blob_store(pacs).blob_ids()) >= blobs
    study_trash.restore_study(pacs.archive, pacs.audit, study, ADMIN)
    assert pacs.archive.verify().ok


def test_an_object_sent_again_joins_its_study_in_the_trash(pacs: Context, files: TrashFiles) -> None:
    store(pacs, files.first[:2])
    study = uid_of(files.first[0])
    study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "test")
    store(pacs, files.first)  # the modality sends the whole study again
    assert found_anywhere(pacs, files.first) == set()
    with pacs.database.read() as session:
        shown = study_details.details(session, study)
    assert shown.state == "in the trash"
    assert shown.received_in_trash == 1
    assert shown.ref.instances == 3
    study_trash.restore_study(pacs.archive, pacs.audit, study, ADMIN)
    assert len(pacs.archive.study_instances(study)) == 3


def test_erasure_moves_every_study_of_the_patient_to_the_trash_in_one_action(
    pacs: Context, stored: TrashFiles
) -> None:
    moved = study_trash.erase_patient(pacs.archive, pacs.audit, "PID-T-1", ADMIN, "erasure request 2024-17")
    assert {ref.study_uid for ref in moved} == {uid_of(stored.first[0]), uid_of(stored.second[0])}
    assert found_anywhere(pacs, stored.first) == found_anywhere(pacs, stored.second) == set()
    assert patient_found(pacs, "PID-T-1") == []
    assert found_anywhere(pacs, stored.old) == EVERY_PATH
    records = _deletions(pacs)
    assert len(records) == 2 and all(r["erasure"] is True and r["user"] == "alice" for r in records)
    with pytest.raises(TrashStateError):
        study_trash.erase_patient(pacs.archive, pacs.audit, "PID-T-1", ADMIN, "again")


def test_studies_past_trash_days_are_purged_and_younger_ones_kept(pacs: Context, stored: TrashFiles) -> None:
    first, second = uid_of(stored.first[0]), uid_of(stored.second[0])
    study_trash.delete_study(pacs.archive, pacs.audit, first, ADMIN, "test")
    study_trash.delete_study(pacs.archive, pacs.audit, second, ADMIN, "test")
    with pacs.database.write() as session:
        long_ago = datetime.now(UTC) - timedelta(days=31)
        session.execute(update(Study).where(Study.study_uid == first).values(deleted_at=long_ago))
    purged = study_trash.purge_expired(pacs.archive, pacs.audit, 30, ADMIN)
    assert [ref.study_uid for ref in purged] == [first]
    assert [ref.study_uid for ref in study_trash.trashed(pacs.archive)] == [second]
    assert _blob_ids(pacs, first) == set() and len(_blob_ids(pacs, second)) == 2
    assert [r["reason"] for r in _deletions(pacs) if r["stage"] == "purge"] == [
        "in the trash for more than 30 days"
    ]


def test_retention_dry_run_lists_exactly_the_old_studies_and_removal_is_audited(
    pacs: Context, stored: TrashFiles
) -> None:
    today = date(2026, 12, 3)
    due = study_trash.apply_retention(pacs.archive, pacs.audit, 10, ADMIN, dry_run=True, today=today)
    assert [ref.study_uid for ref in due] == [uid_of(stored.old[0])]
    assert found_anywhere(pacs, stored.old) == EVERY_PATH
    assert study_trash.retention_due(pacs.archive, 0, today) == []
    study_trash.apply_retention(pacs.archive, pacs.audit, 10, ADMIN, dry_run=False, today=today)
    assert found_anywhere(pacs, stored.old) == set()
    assert found_anywhere(pacs, stored.first) == EVERY_PATH
    runs = [r for r in _deletions(pacs) if r.get("what") == "retention"]
    assert [(r["dry_run"], r["studies"], r["user"]) for r in runs] == [
        (True, 1, "alice"),
        (False, 1, "alice"),
    ]
    [trashed] = [r for r in _deletions(pacs) if r.get("stage") == "trash"]
    assert trashed["reason"] == "retention: older than 10 years"


def test_retention_of_a_study_without_date_counts_from_its_receipt(pacs: Context, stored: TrashFiles) -> None:
    study = uid_of(stored.second[0])
    with pacs.database.write() as session:
        session.execute(update(Study).where(Study.study_uid == study).values(study_date=""))
    dated = {uid_of(stored.first[0]), uid_of(stored.old[0])}  # 2024 and 2009
    assert {r.study_uid for r in study_trash.retention_due(pacs.archive, 1, date.today())} == dated
    later = date.today() + timedelta(days=2 * 366)
    due = {r.study_uid for r in study_trash.retention_due(pacs.archive, 1, later)}
    assert due == {study, *dated}


def test_the_service_keeper_purges_the_expired_trash_and_applies_retention(
    pacs: Context, stored: TrashFiles
) -> None:
    first = uid_of(stored.first[0])
    study_trash.delete_study(pacs.archive, pacs.audit, first, ADMIN, "test")
    storage = replace(pacs.settings.storage, trash_days=0, retention_years=10)
    assert keep_once(pacs.archive, pacs.audit, storage) == (1, 1)
    assert _blob_ids(pacs, first) == set()
    assert [ref.study_uid for ref in study_trash.trashed(pacs.archive)] == [uid_of(stored.old[0])]
    assert {r["user"] for r in _deletions(pacs) if r.get("stage") == "purge"} == {"pacs"}


def test_another_process_storing_after_a_purge_files_objects_under_the_right_study(
    pacs: Context, files: TrashFiles
) -> None:
    other = open_pacs(pacs.settings)
    try:
        store(other, files.first)  # the other process caches the study's and series' row ids
        study = uid_of(files.first[0])
        study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "test")
        study_trash.purge_study(pacs.archive, pacs.audit, study, ADMIN)
        store(pacs, files.second)  # new rows, whose ids SQLite may take from the purged ones
        store(other, files.first[:1])  # sent again: a new study of its own
    finally:
        other.close()
    assert len(pacs.archive.study_instances(study)) == 1
    assert len(pacs.archive.study_instances(uid_of(files.second[0]))) == 2
    assert pacs.archive.verify().ok


def test_blob_directory_paths_of_purged_blobs_are_gone(pacs: Context, stored: TrashFiles) -> None:
    study = uid_of(stored.second[0])
    paths = [pacs.archive.blob_file(blob) for blob in _blob_ids(pacs, study)]
    assert all(path.exists() for path in paths)
    study_trash.delete_study(pacs.archive, pacs.audit, study, ADMIN, "test")
    assert all(path.exists() for path in paths)
    study_trash.purge_study(pacs.archive, pacs.audit, study, ADMIN)
    assert [path for path in paths if path.exists()] == []


def test_the_keeper_thread_of_pacs_serve_purges_in_the_background(pacs: Context, stored: TrashFiles) -> None:
    first = uid_of(stored.first[0])
    study_trash.delete_study(pacs.archive, pacs.audit, first, ADMIN, "test")
    storage = replace(pacs.settings.storage, trash_days=0)
    keeper = TrashKeeper(pacs.archive, pacs.audit, storage, interval=3600, first=0.01)
    keeper.start()
    try:
        deadline = time.monotonic() + 30
        while _blob_ids(pacs, first) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        keeper.stop()
    assert _blob_ids(pacs, first) == set()
    assert study_trash.trashed(pacs.archive) == []
