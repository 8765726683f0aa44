"""What a C-STORE data set that is not a sound object gets: a status with a reason, never silence."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA
from sqlalchemy import select

from storage.archive import NotFoundError
from storage.models import Instance
from tests.conftest import RunningDicom, blob_store
from tests.dicom.helpers import _association, _storage

CANNOT_UNDERSTAND, DATA_SET_DOES_NOT_MATCH, SUCCESS = 0xC000, 0xB007, 0x0000


def _slice(ct_dir: Path) -> Dataset:
    return pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0])


def _send_raw(assoc: object, ds: Dataset, data_set: bytes) -> Dataset:
    """Send a C-STORE-RQ for `ds` whose data set is exactly `data_set` (possibly empty); return the status."""
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    request.DataSet = io.BytesIO(b"-")
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    commands = [p for p in message.encode_msg(1, 16384) if p.presentation_data_value_list[0][1][0] & 1]
    last = P_DATA()
    last.presentation_data_value_list = [[1, b"\x02" + data_set]]
    # Pause the requestor's reactor as pynetdicom's own send_* methods do, or it may take the response.
    assoc._reactor_checkpoint.clear()  # type: ignore[attr-defined]
    while not assoc._is_paused:  # type: ignore[attr-defined]
        time.sleep(0.0001)
    try:
        for primitive in [*commands, last]:
            assoc.dul.send_pdu(primitive)  # type: ignore[attr-defined]
        _, response = assoc.dimse.get_msg(block=True)  # type: ignore[attr-defined]
    finally:
        assoc._reactor_checkpoint.set()  # type: ignore[attr-defined]
    return response


def test_a_data_set_nested_too_deep_gets_cannot_understand_with_a_reason(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    ds = _slice(ct_dir)
    inner = Dataset()
    for _ in range(200):
        outer = Dataset()
        outer.ReferencedImageSequence = Sequence([inner])
        inner = outer
    ds.ReferencedImageSequence = inner.ReferencedImageSequence
    with _association(dicom, dicom.enrol("MODALITY"), _storage()) as assoc:
        status = assoc.send_c_store(ds)
        assert status.Status == CANNOT_UNDERSTAND
        assert "nested" in str(status.ErrorComment)
        assert assoc.send_c_store(_slice(ct_dir)).Status == SUCCESS, "the association stays usable"
    assert list(blob_store(dicom.pacs).blob_ids()) != []


def test_an_empty_data_set_gets_cannot_understand_with_a_reason(dicom: RunningDicom, ct_dir: Path) -> None:
    ds = _slice(ct_dir)
    with _association(dicom, dicom.enrol("MODALITY"), _storage()) as assoc:
        status = _send_raw(assoc, ds, b"")
        assert status.Status == CANNOT_UNDERSTAND
        assert "empty" in str(status.ErrorComment)
    with pytest.raises(NotFoundError):
        dicom.pacs.archive.instance(ds.SOPInstanceUID)
    assert list(blob_store(dicom.pacs).blob_ids()) == []


def test_a_data_set_cut_inside_an_element_gets_cannot_understand(dicom: RunningDicom, ct_dir: Path) -> None:
    ds = _slice(ct_dir)
    encoded = encode(ds, False, True)
    with _association(dicom, dicom.enrol("MODALITY"), _storage()) as assoc:
        status = _send_raw(assoc, ds, encoded[:-100])
    assert status.Status == CANNOT_UNDERSTAND
    assert "truncated" in str(status.ErrorComment)
    assert list(blob_store(dicom.pacs).blob_ids()) == []


def test_pixel_data_shorter_than_declared_is_stored_with_a_warning_and_flagged(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    ds = _slice(ct_dir)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    with _association(dicom, dicom.enrol("MODALITY"), _storage()) as assoc:
        status = assoc.send_c_store(ds)
    assert status.Status == DATA_SET_DOES_NOT_MATCH
    assert "shorter" in str(status.ErrorComment)
    with dicom.pacs.database.read() as session:
        flagged = session.scalar(
            select(Instance.pixel_data_short).where(Instance.sop_uid == ds.SOPInstanceUID)
        )
    assert flagged is True
    with dicom.pacs.archive.open(ds.SOPInstanceUID) as stream:
        assert pydicom.dcmread(io.BytesIO(stream.read())).PixelData == ds.PixelData


def test_an_identical_object_sent_again_is_acknowledged_without_a_second_blob(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    ds = _slice(ct_dir)
    with _association(dicom, dicom.enrol("MODALITY"), _storage()) as assoc:
        assert assoc.send_c_store(ds).Status == SUCCESS
        assert assoc.send_c_store(ds).Status == SUCCESS
    assert len(list(blob_store(dicom.pacs).blob_ids())) == 1
    assert dicom.pacs.archive.instance(ds.SOPInstanceUID).version == 1
