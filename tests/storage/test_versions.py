"""Corrected attributes written as new versions (storage.versions), on both index backends.

The received blob stays byte for byte as it was (its encrypted file hashed before and after);
the new version carries the values, an Original Attributes Sequence item with the old ones and
the very pixel data of the received object, for every transfer syntax we store (implicit, big
endian, deflated, encapsulated). A trashed study and UIDs are refused; a full disk halfway
leaves nothing behind; a 256 MiB object is rewritten holding a small part of it in memory.
"""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select, update

from pacs.core.context import Context
from storage.archive import Archive
from storage.blobs import BlobStore
from storage.errors import OutOfSpaceError
from storage.models import Instance, Study, StudyChange
from storage.search import StudyQuery
from storage.versions import ChangeRecord, CorrectionError, StudyRewrite, rewrite
from tests.storage.ingest_disks import tmpfs
from tests.storage.ingest_objects import new_pixel_pattern, write_object

RECORD = ChangeRecord("edit", "tester", "cli", "test")


def _blob_file_sha(pacs: Context, sop_uid: str, version: int) -> str:
    info = pacs.archive.instance(sop_uid, version)
    return hashlib.sha256(pacs.archive.blob_file(info.ref.blob_id).read_bytes()).hexdigest()


def _stored(archive: Archive, sop_uid: str, version: int | None = None) -> pydicom.Dataset:
    info = archive.instance(sop_uid, version)
    return pydicom.dcmread(io.BytesIO(b"".join(archive.read_instance(info))))


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm"]
)
def test_a_new_version_carries_the_values_and_the_received_blob_stays_as_it_was(
    pacs: Context, name: str
) -> None:
    from pydicom.data import get_testdata_file

    sent = Path(get_testdata_file(name))
    stored = pacs.archive.store(sent)
    before = _blob_file_sha(pacs, stored.sop_uid, 1)
    change = rewrite(
        pacs.archive,
        [StudyRewrite(stored.study_uid, {"PatientName": "CORRECTED^NAME", "AccessionNumber": "ACC-9"})],
        RECORD,
    )
    assert change.studies[0].instances == [(stored.sop_uid, 1, 2)]
    assert _blob_file_sha(pacs, stored.sop_uid, 1) == before
    assert b"".join(pacs.archive.read_instance(pacs.archive.instance(stored.sop_uid, 1))) == sent.read_bytes()
    new, original = _stored(pacs.archive, stored.sop_uid), pydicom.dcmread(sent)
    assert pacs.archive.instance(stored.sop_uid).version == 2
    assert (str(new.PatientName), new.AccessionNumber) == ("CORRECTED^NAME", "ACC-9")
    assert new.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert new.PixelData == original.PixelData
    (item,) = new.OriginalAttributesSequence
    assert item.ReasonForTheAttributeModification == "CORRECT"
    assert str(item.ModifiedAttributesSequence[0].PatientName) == str(original.PatientName)
    untouched = {"PatientName", "AccessionNumber", "OriginalAttributesSequence", "PixelData"}
    for element in original:
        if element.keyword not in untouched:
            assert new[element.tag].value == element.value, element.keyword


def test_the_index_answers_with_the_corrected_patient_and_study(pacs: Context, ct_dir: Path) -> None:
    for path in sorted(ct_dir.glob("*.dcm")):
        pacs.archive.store(path)
    study_uid = pydicom.dcmread(next(ct_dir.glob("*.dcm"))).StudyInstanceUID
    values = {"PatientName": "ALONSO^QUIJANO", "PatientID": "PID-NEW-1", "StudyDescription": "CT HEAD"}
    change = rewrite(pacs.archive, [StudyRewrite(study_uid, values)], RECORD)
    assert len(change.studies[0].instances) == 6
    (row,) = pacs.archive.search_studies(StudyQuery(name="quijano"))
    assert (row.study_uid, row.patient_id, row.description) == (study_uid, "PID-NEW-1", "CT HEAD")
    assert pacs.archive.search_studies(StudyQuery(name="dulcinea")) == []
    found = pacs.archive.find("PATIENT", _query(PatientID="PID-Q-7731"))
    assert found == []  # the old patient record had no other study: it is gone
    with pacs.database.read() as session:
        assert session.scalar(select(func.count(StudyChange.id))) == 1
    report = pacs.archive.verify()
    assert report.ok and report.checked == 12  # 6 received versions and 6 corrected ones


def test_an_object_sent_again_after_a_correction_is_a_duplicate_and_the_correction_stays(
    pacs: Context, ct_dir: Path
) -> None:
    from storage.index import StoreOutcome

    sent = sorted(ct_dir.glob("*.dcm"))
    for path in sent:
        pacs.archive.store(path)
    study_uid = pydicom.dcmread(sent[0]).StudyInstanceUID
    rewrite(pacs.archive, [StudyRewrite(study_uid, {"PatientName": "RIGHT^NAME"})], RECORD)
    again = pacs.archive.store(sent[0])
    assert (again.outcome, again.version) == (StoreOutcome.DUPLICATE, 1)
    assert pacs.archive.instance(again.sop_uid).version == 2
    assert str(_stored(pacs.archive, again.sop_uid).PatientName) == "RIGHT^NAME"
    (row,) = pacs.archive.search_studies(StudyQuery(name="right"))
    assert row.study_uid == study_uid


def _query(**values: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.PatientName = ""
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_a_study_in_the_trash_and_uids_are_not_corrected(pacs: Context, ct_dir: Path) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[0]
    stored = pacs.archive.store(path)
    with pytest.raises(CorrectionError, match="SOPInstanceUID cannot be corrected"):
        rewrite(pacs.archive, [StudyRewrite(stored.study_uid, {"SOPInstanceUID": "1.2.3"})], RECORD)
    with pacs.database.write() as session:
        session.execute(
            update(Study).where(Study.study_uid == stored.study_uid).values(deleted_at=datetime.now(UTC))
        )
    with pytest.raises(CorrectionError, match="in the trash"):
        rewrite(pacs.archive, [StudyRewrite(stored.study_uid, {"PatientName": "X"})], RECORD)
    with pacs.database.read() as session:
        assert list(session.scalars(select(Instance.version).where(Instance.sop_uid == stored.sop_uid))) == [
            1
        ]
        assert session.scalar(select(func.count(StudyChange.id))) == 0


def test_a_disk_full_halfway_leaves_every_object_and_blob_as_it_was(pacs: Context, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 14) as mounted:
        archive = Archive(pacs.database, BlobStore.create(mounted / "blobs", pacs.keyring))
        try:
            study_uid = "1.2.826.0.1.3680043.8.498.7001"
            sops = []
            for number in range(3):  # 3 objects of 3 MiB: the first new version fits, the second not
                sent = write_object(
                    tmp_path / f"o{number}.dcm", frames=6, pattern=new_pixel_pattern(), study_uid=study_uid
                )
                sops.append(archive.store(sent.path).sop_uid)
            blobs_before = sorted(p.name for p in (mounted / "blobs").glob("??/*.blob"))
            with pytest.raises(OutOfSpaceError, match=r"free|disk full"):
                rewrite(archive, [StudyRewrite(study_uid, {"PatientName": "FULL^DISK"})], RECORD)
            assert sorted(p.name for p in (mounted / "blobs").glob("??/*.blob")) == blobs_before
            assert [archive.instance(sop).version for sop in sops] == [1, 1, 1]
            assert {str(_stored(archive, sop).PatientName) for sop in sops} == {"ZEPHYRINE^QUOKKA"}
            with pacs.database.read() as session:
                assert session.scalar(select(func.count(StudyChange.id))) == 0
        finally:
            archive.close()


def test_a_large_object_is_rewritten_in_bounded_memory(pacs: Context, tmp_path: Path) -> None:
    sent = write_object(tmp_path / "big.dcm", frames=512, pattern=new_pixel_pattern())  # 256 MiB
    stored = pacs.archive.store(sent.path)
    tracemalloc.start()
    try:
        rewrite(pacs.archive, [StudyRewrite(stored.study_uid, {"PatientName": "BIG^OBJECT"})], RECORD)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.1f} MiB held while rewriting {sent.size / 2**20:.0f} MiB"
    new = pacs.archive.instance(stored.sop_uid)
    assert new.version == 2 and new.size > sent.size
    original_pixels = hashlib.sha256()
    with open(sent.path, "rb") as source:
        source.seek(sent.size - 512 * 512 * 2 * 512)
        while chunk := source.read(1 << 20):
            original_pixels.update(chunk)
    new_pixels = hashlib.sha256()
    tail = 512 * 512 * 2 * 512
    for chunk in pacs.archive._blobs.read_range(new.ref, new.size - tail, new.size):
        new_pixels.update(chunk)
    assert new_pixels.hexdigest() == original_pixels.hexdigest()


def test_asking_a_change_again_completes_it_without_rewriting_what_already_holds_the_values(
    pacs: Context, ct_dir: Path, tmp_path: Path
) -> None:
    paths = sorted(ct_dir.glob("*.dcm"))
    for path in paths:
        pacs.archive.store(path)
    study_uid = pydicom.dcmread(paths[0]).StudyInstanceUID
    done_already = pydicom.dcmread(paths[0])  # as if the sweep had indexed one version of a change cut short
    done_already.PatientName = "ALONSO^QUIJANO"
    done_already.save_as(tmp_path / "done.dcm")
    pacs.archive.store(tmp_path / "done.dcm")
    change = rewrite(pacs.archive, [StudyRewrite(study_uid, {"PatientName": "ALONSO^QUIJANO"})], RECORD)
    rewritten = {sop for sop, _, _ in change.studies[0].instances}
    assert len(rewritten) == 5 and str(done_already.SOPInstanceUID) not in rewritten
    assert {row.patient_name for row in pacs.archive.search_studies(StudyQuery(name="quijano"))} == {
        "ALONSO^QUIJANO"
    }
    with pytest.raises(CorrectionError, match="nothing to change"):
        rewrite(pacs.archive, [StudyRewrite(study_uid, {"PatientName": "ALONSO^QUIJANO"})], RECORD)
