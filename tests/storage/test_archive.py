"""The archive facade on both index backends: durability, integrity, versions and bad input."""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update

from pacs.core.context import Context, open_pacs
from storage import reindex
from storage.archive import (
    Archive,
    IndexUnavailableError,
    NotFoundError,
    ObjectTooLargeError,
    OutOfSpaceError,
)
from storage.crypto import IntegrityError
from storage.header import HeaderError, is_valid_uid
from storage.index import StoreOutcome
from storage.models import Instance, Series, Study
from tests.conftest import blob_store


def _store_all(archive: Archive, directory: Path) -> list:
    return [archive.store(path) for path in sorted(directory.glob("*.dcm"))]


def _read(archive: Archive, sop_uid: str, version: int | None = None) -> bytes:
    with archive.open(sop_uid, version) as stream:
        return stream.read()


def _blob_paths(pacs: Context) -> list[Path]:
    return sorted(pacs.settings.blob_dir.glob("??/*.blob"))


def _rewrite(source: Path, target: Path, **changes: object) -> Path:
    ds = pydicom.dcmread(source)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(target, enforce_file_format=True)
    return target


def test_every_object_round_trips_byte_identical(
    pacs: Context, sample_files: list[Path], ct_dir: Path
) -> None:
    files = [*sample_files, *sorted(ct_dir.glob("*.dcm"))]
    for path in files:
        result = pacs.archive.store(path)
        assert _read(pacs.archive, result.sop_uid, result.version) == path.read_bytes(), path.name


def test_transfer_syntax_is_recorded_as_received(pacs: Context, sample_files: list[Path]) -> None:
    for path in sample_files:
        result = pacs.archive.store(path)
        info = pacs.archive.instance(result.sop_uid, result.version)
        assert (
            info.transfer_syntax == pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        )


def test_no_patient_name_or_uid_appears_in_any_file_of_the_data_directory(
    pacs: Context, ct_dir: Path
) -> None:
    results = _store_all(pacs.archive, ct_dir)
    pacs.audit.verify()
    needles = [
        b"QUIXOTE",
        b"DULCINEA",
        b"PID-Q-7731",
        results[0].study_uid.encode(),
        results[0].sop_uid.encode(),
    ]
    needles += [r.sop_uid.encode() for r in results]
    scanned = 0
    for path in pacs.settings.data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle not in content, f"{needle!r} found in {path}"
    assert scanned > len(results)


def test_blob_file_names_are_random_and_not_uids(pacs: Context, ct_dir: Path) -> None:
    results = _store_all(pacs.archive, ct_dir)
    names = {p.name for p in _blob_paths(pacs)}
    assert len(names) == len(results)
    assert not any(r.sop_uid in name for r in results for name in names)


def test_flipped_byte_is_detected_by_open_and_by_verify(pacs: Context, ct_dir: Path) -> None:
    result = _store_all(pacs.archive, ct_dir)[0]
    blob = pacs.settings.blob_dir / _blob_path_of(pacs, result.sop_uid)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x40
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        _read(pacs.archive, result.sop_uid)
    report = pacs.archive.verify()
    assert not report.ok
    assert [uid for uid, _ in report.damaged] == [result.sop_uid]


def _blob_path_of(pacs: Context, sop_uid: str) -> Path:
    blob_id = pacs.archive.instance(sop_uid).ref.blob_id
    return blob_store(pacs).path_of(blob_id).relative_to(pacs.settings.blob_dir)


def test_truncated_blob_is_detected(pacs: Context, ct_dir: Path) -> None:
    result = _store_all(pacs.archive, ct_dir)[0]
    blob = pacs.settings.blob_dir / _blob_path_of(pacs, result.sop_uid)
    blob.write_bytes(blob.read_bytes()[:-100])
    with pytest.raises(IntegrityError):
        _read(pacs.archive, result.sop_uid)
    assert [uid for uid, _ in pacs.archive.verify().damaged] == [result.sop_uid]


def test_swapped_blobs_are_detected(pacs: Context, ct_dir: Path) -> None:
    first, second = _store_all(pacs.archive, ct_dir)[:2]
    a = pacs.settings.blob_dir / _blob_path_of(pacs, first.sop_uid)
    b = pacs.settings.blob_dir / _blob_path_of(pacs, second.sop_uid)
    content_a, content_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(content_b)
    b.write_bytes(content_a)
    for uid in (first.sop_uid, second.sop_uid):
        with pytest.raises(IntegrityError):
            _read(pacs.archive, uid)
    assert {uid for uid, _ in pacs.archive.verify().damaged} == {first.sop_uid, second.sop_uid}


def test_index_rows_swapped_between_two_objects_are_detected_by_verify(pacs: Context, ct_dir: Path) -> None:
    first, second = _store_all(pacs.archive, ct_dir)[:2]
    columns = ("blob_id", "key_version", "wrapped_key", "size", "sha256")
    with pacs.database.write() as session:
        rows = {
            uid: session.execute(
                select(*(getattr(Instance, c) for c in columns)).where(Instance.sop_uid == uid)
            ).one()
            for uid in (first.sop_uid, second.sop_uid)
        }
        session.execute(update(Instance).where(Instance.sop_uid == first.sop_uid).values(blob_id="0" * 32))
        for uid, other in ((second.sop_uid, first.sop_uid), (first.sop_uid, second.sop_uid)):
            values = dict(zip(columns, rows[other], strict=True))
            session.execute(update(Instance).where(Instance.sop_uid == uid).values(**values))
    damaged = dict(pacs.archive.verify().damaged)
    assert damaged == {
        first.sop_uid: f"the blob holds SOP instance {second.sop_uid}, not this row's (index rows swapped?)",
        second.sop_uid: f"the blob holds SOP instance {first.sop_uid}, not this row's (index rows swapped?)",
    }


def test_a_deflated_object_larger_than_the_parsed_prefix_verifies_clean(
    pacs: Context, ct_dir: Path, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0])
    ds.Rows = ds.Columns = 1800
    ds.PixelData = os.urandom(1800 * 1800 * 2)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    big = tmp_path / "deflated.dcm"
    ds.save_as(big, enforce_file_format=True)
    assert big.stat().st_size > 5 * 2**20
    pacs.archive.store(big)
    report = pacs.archive.verify()
    assert report.ok, report.damaged
    assert report.checked == 1


def test_missing_blob_is_reported_by_verify(pacs: Context, ct_dir: Path) -> None:
    result = _store_all(pacs.archive, ct_dir)[0]
    (pacs.settings.blob_dir / _blob_path_of(pacs, result.sop_uid)).unlink()
    assert pacs.archive.verify().damaged == [(result.sop_uid, "blob is missing")]


def test_intact_archive_verifies_clean(pacs: Context, ct_dir: Path, sample_files: list[Path]) -> None:
    stored = len(_store_all(pacs.archive, ct_dir)) + len([pacs.archive.store(p) for p in sample_files])
    report = pacs.archive.verify()
    assert report.ok
    assert report.checked == stored
    assert report.orphans == [] and report.temp_files == []


def test_frame_counts_that_differ_from_the_instances_are_reported_by_verify(
    pacs: Context, ct_dir: Path
) -> None:
    result = _store_all(pacs.archive, ct_dir)[0]
    with pacs.database.write() as session:
        series_fk = session.scalar(select(Instance.series_fk).where(Instance.sop_uid == result.sop_uid))
        series = session.get(Series, series_fk)
        series.num_frames += 7
        session.get(Study, series.study_fk).num_frames += 7
        uid = series.series_uid
    slices = len(list(ct_dir.glob("*.dcm")))
    report = pacs.archive.verify()
    assert not report.ok
    # The study's count agrees with its series' counts: only the series is off.
    assert report.inconsistent == [f"series {uid}: index says {slices + 7} frames, found {slices}"]


def test_storing_identical_bytes_again_is_idempotent(pacs: Context, ct_dir: Path) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]
    first = pacs.archive.store(path)
    again = pacs.archive.store(path)
    assert (first.outcome, again.outcome) == (StoreOutcome.STORED, StoreOutcome.DUPLICATE)
    assert again.version == first.version == 1
    assert len(_blob_paths(pacs)) == 1
    study = pacs.archive.find(
        "STUDY", _keys(StudyInstanceUID=first.study_uid, NumberOfStudyRelatedInstances="")
    )
    assert study[0].NumberOfStudyRelatedInstances == 1


def _keys(**keys: object) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_different_object_with_same_uid_is_kept_as_new_version(
    pacs: Context, ct_dir: Path, tmp_path: Path
) -> None:
    original = sorted(ct_dir.glob("*.dcm"))[0]
    changed = _rewrite(original, tmp_path / "changed.dcm", ImageComments="corrected")
    first = pacs.archive.store(original)
    second = pacs.archive.store(changed)
    assert second.outcome is StoreOutcome.NEW_VERSION
    assert second.version == 2 and second.sop_uid == first.sop_uid
    assert _read(pacs.archive, first.sop_uid) == changed.read_bytes()
    assert _read(pacs.archive, first.sop_uid, version=1) == original.read_bytes()
    assert len(_blob_paths(pacs)) == 2
    images = pacs.archive.find("IMAGE", _keys(SOPInstanceUID=first.sop_uid))
    assert len(images) == 1
    study = pacs.archive.find(
        "STUDY", _keys(StudyInstanceUID=first.study_uid, NumberOfStudyRelatedInstances="")
    )
    assert study[0].NumberOfStudyRelatedInstances == 1
    assert pacs.archive.verify().ok


def test_delete_study_removes_index_rows_and_blobs(
    pacs: Context, ct_dir: Path, sample_files: list[Path]
) -> None:
    ct = _store_all(pacs.archive, ct_dir)
    other = pacs.archive.store(sample_files[0])
    deleted = pacs.archive.delete_study(ct[0].study_uid)
    assert deleted.instances == len(ct)
    assert deleted.patient_id == "PID-Q-7731"
    assert len(_blob_paths(pacs)) == 1
    assert pacs.archive.find("STUDY", _keys(StudyInstanceUID=ct[0].study_uid)) == []
    assert pacs.archive.find("PATIENT", _keys(PatientID="PID-Q-7731")) == []
    with pytest.raises(NotFoundError):
        pacs.archive.open(ct[0].sop_uid)
    assert _read(pacs.archive, other.sop_uid, other.version) == sample_files[0].read_bytes()
    with pytest.raises(NotFoundError):
        pacs.archive.delete_study(ct[0].study_uid)
    assert pacs.archive.verify().ok


def _assert_nothing_kept(pacs: Context) -> None:
    assert _blob_paths(pacs) == []
    assert blob_store(pacs).temp_files() == []
    assert pacs.archive.find("IMAGE", _keys(SOPInstanceUID="")) == []


def test_non_dicom_file_is_refused(pacs: Context, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(HeaderError, match="not a DICOM Part 10 file"):
        pacs.archive.store(path)
    _assert_nothing_kept(pacs)


def test_truncated_file_is_refused(pacs: Context, ct_dir: Path, tmp_path: Path) -> None:
    source = sorted(ct_dir.glob("*.dcm"))[0].read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(source[: len(source) - 1000])
    with pytest.raises(HeaderError, match="truncated"):
        pacs.archive.store(path)
    pydicom_truncated = Path(get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(HeaderError, match="truncated"):
        pacs.archive.store(pydicom_truncated)
    _assert_nothing_kept(pacs)


def test_file_without_sop_instance_uid_is_refused(pacs: Context, ct_dir: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0])
    del ds.SOPInstanceUID
    path = tmp_path / "no-uid.dcm"
    ds.save_as(path)
    with pytest.raises(HeaderError, match="missing SOP Instance UID"):
        pacs.archive.store(path)
    _assert_nothing_kept(pacs)


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2.3/4", "1.2.abc", "1.2." + "3" * 70])
def test_uid_with_path_or_illegal_characters_is_refused(
    pacs: Context, ct_dir: Path, tmp_path: Path, uid: str
) -> None:
    path = _rewrite(sorted(ct_dir.glob("*.dcm"))[0], tmp_path / "bad.dcm", StudyInstanceUID=uid)
    with pytest.raises(HeaderError, match="invalid Study Instance UID"):
        pacs.archive.store(path)
    _assert_nothing_kept(pacs)


def test_object_over_the_size_limit_is_refused(pacs: Context, ct_dir: Path) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]
    pacs.archive.max_object_bytes = path.stat().st_size - 1
    with pytest.raises(ObjectTooLargeError):
        pacs.archive.store(path)
    _assert_nothing_kept(pacs)


def test_store_below_the_free_space_watermark_is_out_of_resources(pacs: Context, ct_dir: Path) -> None:
    pacs.archive.min_free_bytes = shutil.disk_usage(pacs.settings.blob_dir).free + 2**30
    with pytest.raises(OutOfSpaceError):
        pacs.archive.store(sorted(ct_dir.glob("*.dcm"))[0])
    _assert_nothing_kept(pacs)


def test_an_index_commit_that_lands_but_raises_is_a_success(
    pacs: Context, ct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]
    commit = pacs.archive.index_blob

    def commit_then_fail(*args: object, **kwargs: object) -> object:
        commit(*args, **kwargs)  # type: ignore[arg-type]
        raise sa_exc.OperationalError("COMMIT", {}, ConnectionError("connection lost after COMMIT"))

    monkeypatch.setattr(pacs.archive, "index_blob", commit_then_fail)
    assert pacs.archive.store(path).outcome is StoreOutcome.STORED
    monkeypatch.undo()
    assert pacs.archive.store(path).outcome is StoreOutcome.DUPLICATE
    assert _read(pacs.archive, pacs.archive.store(path).sop_uid) == path.read_bytes()
    report = pacs.archive.verify()
    assert report.ok and report.damaged == [] and report.orphans == []


def test_an_index_commit_that_fails_leaves_no_blob(
    pacs: Context, ct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> object:
        raise sa_exc.OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(pacs.archive, "index_blob", fail)
    with pytest.raises(OutOfSpaceError):
        pacs.archive.store(sorted(ct_dir.glob("*.dcm"))[0])
    _assert_nothing_kept(pacs)


def test_a_blob_is_kept_for_the_sweep_when_the_index_cannot_even_be_asked(
    pacs: Context, ct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]

    def fail(*args: object, **kwargs: object) -> object:
        raise sa_exc.OperationalError("INSERT", {}, ConnectionError("connection refused"))

    monkeypatch.setattr(pacs.archive, "index_blob", fail)
    monkeypatch.setattr(pacs.archive, "blob_referenced", lambda blob_id: None)
    with pytest.raises(IndexUnavailableError):
        pacs.archive.store(path)
    monkeypatch.undo()
    assert len(list(blob_store(pacs).blob_ids())) == 1
    report = pacs.archive.verify()
    assert report.ok and report.orphans == []
    assert [r.sop_uid for r in report.sweep.reindexed] == [pydicom.dcmread(path).SOPInstanceUID]
    assert _read(pacs.archive, report.sweep.reindexed[0].sop_uid) == path.read_bytes()


def test_a_sweep_that_loses_a_race_keeps_the_blob_the_winner_indexed(
    pacs: Context, ct_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]
    monkeypatch.setattr(pacs.archive, "index_blob", _failing_index)
    monkeypatch.setattr(pacs.archive, "blob_referenced", lambda blob_id: None)
    with pytest.raises(IndexUnavailableError):
        pacs.archive.store(path)
    monkeypatch.undo()
    (blob_id,) = blob_store(pacs).blob_ids()
    assert [r.sop_uid for r in reindex.sweep(pacs.archive, remove=True, alone=True).reindexed]
    # A second sweep that listed the blob before the first indexed it:
    monkeypatch.setattr(pacs.archive, "indexed_blob_ids", lambda among=None: set())
    report = reindex.sweep(pacs.archive, remove=True, alone=True)
    assert report.reindexed == [] and report.duplicates == []
    assert blob_store(pacs).path_of(blob_id).exists()
    assert _read(pacs.archive, pydicom.dcmread(path).SOPInstanceUID) == path.read_bytes()


def _failing_index(*args: object, **kwargs: object) -> object:
    raise sa_exc.OperationalError("INSERT", {}, ConnectionError("connection refused"))


def test_verify_keeps_complete_orphans_and_removes_incomplete_blobs(pacs: Context, ct_dir: Path) -> None:
    result = _store_all(pacs.archive, ct_dir)[0]
    orphan_writer = blob_store(pacs).writer()
    orphan_writer.write(b"x" * 100)
    orphan = orphan_writer.commit()
    partial = blob_store(pacs).writer()
    partial.write(b"half")
    partial._file.flush()  # type: ignore[union-attr]
    report = pacs.archive.verify(cleanup=True)
    assert report.ok
    assert report.orphans == [orphan.blob_id], "a complete blob is never deleted for being unreferenced"
    assert report.sweep.removed == [partial.blob_id]
    assert report.cleaned
    assert blob_store(pacs).path_of(orphan.blob_id).exists()
    assert not partial.path.exists()
    assert _read(pacs.archive, result.sop_uid) == sorted(ct_dir.glob("*.dcm"))[0].read_bytes()
    partial.abort()


def test_verify_leaves_a_young_incomplete_blob_alone_while_another_writer_runs(
    pacs: Context, ct_dir: Path
) -> None:
    writer = open_pacs(pacs.settings)
    try:
        writer.archive.store(sorted(ct_dir.glob("*.dcm"))[0])
        in_flight = blob_store(pacs).writer()
        in_flight.write(b"in flight")
        report = pacs.archive.verify(cleanup=True)
        assert report.orphans == [in_flight.blob_id]
        assert not report.cleaned
        assert in_flight.path.exists()
        in_flight.abort()
    finally:
        writer.close()


def test_index_file_holds_no_readable_text(pacs: Context, ct_dir: Path, db_url: str) -> None:
    _store_all(pacs.archive, ct_dir)
    if db_url:
        assert not pacs.settings.index_path.exists()
        return
    content = pacs.settings.index_path.read_bytes()
    assert b"SQLite format 3" not in content
    assert b"CREATE TABLE" not in content


def test_data_files_are_private(pacs: Context, ct_dir: Path) -> None:
    _store_all(pacs.archive, ct_dir)
    for path in [pacs.settings.data_dir, *pacs.settings.data_dir.rglob("*")]:
        mode = os.stat(path).st_mode & 0o777
        if path.suffix == ".crt":
            continue
        assert mode & 0o077 == 0, f"{path} is mode {oct(mode)}"


def test_truncated_object_without_pixel_data_is_refused(pacs: Context, tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    ds.EncapsulatedDocument = b"%PDF-1.4 " + b"x" * 20000
    whole = tmp_path / "report.dcm"
    ds.save_as(whole, enforce_file_format=True)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole.read_bytes()[:-10000])
    with pytest.raises(HeaderError, match="truncated"):
        pacs.archive.store(cut)
    _assert_nothing_kept(pacs)


def test_uid_check_rejects_anything_but_digits_and_dots() -> None:
    assert is_valid_uid("1.2.840.10008.1.2")
    for bad in ("1.2.3\n", "1.2.3 ", "", "1..2", ".1.2", "1.2.", "1.2/3", "1" * 65):
        assert not is_valid_uid(bad), repr(bad)


def test_many_threads_using_the_index_at_once_do_not_disturb_each_other(pacs: Context, ct_dir: Path) -> None:
    stored = _store_all(pacs.archive, ct_dir)
    barrier = threading.Barrier(16)

    def read_everything(_: int) -> int:
        barrier.wait()
        return sum(len(_read(pacs.archive, result.sop_uid)) for result in stored[:5])

    with ThreadPoolExecutor(max_workers=16) as pool:
        sizes = list(pool.map(read_everything, range(16)))
        report = pacs.archive.verify()

    assert len(set(sizes)) == 1
    assert report.ok
