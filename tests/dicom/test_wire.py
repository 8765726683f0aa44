"""The hand-written encoders of ``pacs.dicom.wire`` write what pydicom and pynetdicom write."""

from __future__ import annotations

import io

import pytest
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta

from pacs.dicom import wire

CT = "1.2.840.10008.5.1.4.1.1.2"
UIDS = ["1.2.3.4", "1.2.3.45", "1.2.826.0.1.3680043.8.498.1234567890123456789012345678901234567"]


@pytest.mark.parametrize("instance", UIDS)
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"])
@pytest.mark.parametrize("version", ["PYNETDICOM_304", "ODD"])
def test_the_file_meta_is_what_pydicom_writes(instance: str, syntax: str, version: str) -> None:
    meta = create_file_meta(
        sop_class_uid=UID(CT),
        sop_instance_uid=UID(instance),
        transfer_syntax=UID(syntax),
        implementation_uid=UID("1.2.826.0.1.3680043.9.3811.3.0.4"),
        implementation_version=version,
    )
    expected = io.BytesIO()
    expected.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(expected, meta, enforce_standard=True)  # type: ignore[arg-type]
    ours = wire.part10_prefix(CT, instance, syntax, "1.2.826.0.1.3680043.9.3811.3.0.4", version)
    assert ours == expected.getvalue()


def _response(status: int, comment: str | None, instance: str) -> C_STORE:
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 7
    response.AffectedSOPClassUID = CT
    response.AffectedSOPInstanceUID = instance
    response.Status = status
    if comment is not None:
        response.ErrorComment = comment
    return response


@pytest.mark.parametrize("instance", UIDS)
@pytest.mark.parametrize(
    ("status", "comment"),
    [(0x0000, None), (0xA700, "disk full while writing the object"), (0xC000, "odd"), (0xB007, "even")],
)
def test_the_c_store_response_is_what_pynetdicom_sends(
    status: int, comment: str | None, instance: str
) -> None:
    response = _response(status, comment, instance)
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    (pdata,) = message.encode_msg(1, 16384)
    ((_, sent),) = pdata.presentation_data_value_list
    assert sent[0] == 0x03
    assert wire.c_store_response(response) == sent[1:]


def test_a_response_with_an_offending_element_is_left_to_pynetdicom() -> None:
    response = _response(0xC000, "bad", UIDS[0])
    response.OffendingElement = [0x00100010]
    assert wire.c_store_response(response) is None
