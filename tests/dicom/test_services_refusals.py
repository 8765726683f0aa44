"""What the DICOM service refuses: bad data sets, a full disk and oversized objects, each with a status."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid
from pynetdicom import _config
from pynetdicom.status import code_to_category

from storage.archive import NotFoundError
from tests.conftest import RunningDicom, blob_store
from tests.dicom.helpers import OUT_OF_RESOURCES, SUCCESS, _association, _sop_uid, _storage

# -- refusals ---------------------------------------------------------------------------------------


def _ct_dataset(path: Path) -> Dataset:
    """A copy of a CT slice under a new SOP Instance UID."""
    dataset = pydicom.dcmread(path)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return dataset


def _traversal_study_uid(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    dataset.StudyInstanceUID = "../../etc"
    return dataset


def _missing_study_uid(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    del dataset.StudyInstanceUID
    return dataset


def _truncated_pixel_data(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    whole = tmp / "whole.dcm"
    dataset.save_as(whole, enforce_file_format=True)
    cut = tmp / "truncated.dcm"
    cut.write_bytes(whole.read_bytes()[:-1000])
    return cut


def _garbage_after_file_meta(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    meta_only = tmp / "meta.dcm"
    empty = Dataset()
    empty.file_meta = FileMetaDataset(dataset.file_meta)
    empty.save_as(meta_only, enforce_file_format=True)
    garbage = tmp / "garbage.dcm"
    garbage.write_bytes(meta_only.read_bytes() + random.Random(7).randbytes(3002))
    return garbage


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.filterwarnings("ignore:Expected explicit VR")
@pytest.mark.parametrize(
    "make_bad",
    [_traversal_study_uid, _missing_study_uid, _truncated_pixel_data, _garbage_after_file_meta],
    ids=["study-uid-is-a-path", "study-uid-missing", "truncated-pixel-data", "garbage-after-file-meta"],
)
def test_a_bad_dataset_gets_a_failure_with_a_reason_and_the_association_goes_on(
    dicom: RunningDicom,
    ct_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_bad: Callable[[Path, Path], Dataset | Path],
) -> None:
    # Files are sent as they are on disk (not decoded and re-encoded by pynetdicom), so the
    # truncated and garbage bodies really go over the wire.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    slices = sorted(ct_dir.glob("*.dcm"))
    bad = make_bad(slices[0], tmp_path)
    bad_uid = str(bad.SOPInstanceUID) if isinstance(bad, Dataset) else _meta_sop_uid(bad)
    node = dicom.enrol("MODALITY")

    with _association(dicom, node, _storage()) as assoc:
        refused = assoc.send_c_store(bad)
        still_established = assoc.is_established
        accepted = assoc.send_c_store(slices[1])

    assert code_to_category(refused.Status) == "Failure", hex(refused.Status)
    assert str(refused.get("ErrorComment", "")).strip(), "a refusal must say why"
    assert still_established
    assert accepted.Status == SUCCESS
    with pytest.raises(NotFoundError):
        dicom.pacs.archive.instance(bad_uid)
    assert dicom.pacs.archive.instance(_sop_uid(slices[1])).sop_uid == _sop_uid(slices[1])
    report = dicom.pacs.archive.verify()
    assert report.ok and report.checked == 1
    assert report.orphans == [] and report.temp_files == []


def _meta_sop_uid(path: Path) -> str:
    return str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)


def test_free_disk_below_the_watermark_answers_out_of_resources_and_stores_nothing(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    archive = dicom.pacs.archive
    archive.min_free_bytes = shutil.disk_usage(dicom.pacs.settings.blob_dir).free + 2**40
    node = dicom.enrol("MODALITY")
    path = sorted(ct_dir.glob("*.dcm"))[0]

    with _association(dicom, node, _storage()) as assoc:
        status = assoc.send_c_store(pydicom.dcmread(path))

    assert status.Status == OUT_OF_RESOURCES
    assert str(status.get("ErrorComment", "")).strip()
    with pytest.raises(NotFoundError):
        archive.instance(_sop_uid(path))
    report = archive.verify()
    assert report.checked == 0 and report.orphans == [] and report.temp_files == []
    assert list(blob_store(dicom.pacs).blob_ids()) == []
    assert not (dicom.pacs.settings.data_dir / "incoming").exists()


def test_an_object_larger_than_the_maximum_is_refused(dicom: RunningDicom, ct_dir: Path) -> None:
    archive = dicom.pacs.archive
    archive.max_object_bytes = 1000
    node = dicom.enrol("MODALITY")
    path = sorted(ct_dir.glob("*.dcm"))[0]
    assert path.stat().st_size > 1000

    with _association(dicom, node, _storage()) as assoc:
        status = assoc.send_c_store(pydicom.dcmread(path))

    assert status.Status == OUT_OF_RESOURCES
    assert "limit" in str(status.get("ErrorComment", ""))
    with pytest.raises(NotFoundError):
        archive.instance(_sop_uid(path))
    assert archive.verify().checked == 0
    assert list(blob_store(dicom.pacs).blob_ids()) == []
    assert not (dicom.pacs.settings.data_dir / "incoming").exists()
