"""The pynetdicom behaviours that ``pacs.dicom.streaming`` and ``pacs.dicom.sending`` rely on, one test each.

If an upgrade of pynetdicom changes one of them, the matching test fails here before
any object is mis-stored. The supported range is pinned in pyproject.toml.
"""

from __future__ import annotations

import io
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)
from pynetdicom import AE, evt, fsm
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import Verification

from pacs.dicom.streaming import StreamingDIMSE, file_meta, incoming_object

MAX_PDU = 1024


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "CONTRACT^TEST"
    ds.BitsAllocated = 8
    ds.PixelData = bytes(range(256)) * 20
    return ds


def _c_store_pdata(ds: Dataset) -> list[P_DATA]:
    """The P-DATA primitives pynetdicom itself sends for a C-STORE-RQ of `ds`."""
    request = C_STORE()
    request.MessageID = 7
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 2
    request.DataSet = io.BytesIO(encode(ds, False, True))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    return list(message.encode_msg(1, MAX_PDU))


def _pdvs(primitives: list[P_DATA]) -> list[tuple[int, bytes]]:
    return [(cid, data) for p in primitives for cid, data in p.presentation_data_value_list]


def _single(context_id: int, data: bytes) -> P_DATA:
    primitive = P_DATA()
    primitive.presentation_data_value_list = [[context_id, data]]
    return primitive


def test_the_dul_hands_each_p_data_to_the_associations_dimse_provider() -> None:
    received: list[P_DATA] = []
    pdu = P_DATA_TF()
    pdu.presentation_data_value_items = []  # type: ignore[assignment]
    primitive = _c_store_pdata(_dataset())[0]
    pdu.from_primitive(primitive)
    recv: queue.Queue[P_DATA_TF] = queue.Queue()
    recv.put(pdu)
    dul = SimpleNamespace(
        _recv_pdu=recv, assoc=SimpleNamespace(dimse=SimpleNamespace(receive_primitive=received.append))
    )
    assert fsm.DT_2(dul) == "Sta6"  # type: ignore[arg-type]
    assert [p.presentation_data_value_list for p in received] == [primitive.presentation_data_value_list]


def test_decode_msg_stops_after_the_command_set_with_the_context_and_the_c_store_class() -> None:
    pdvs = _pdvs(_c_store_pdata(_dataset()))
    message = DIMSEMessage()
    commands = [(cid, data) for cid, data in pdvs if data[0] & 1]
    results = [message.decode_msg(_single(cid, data)) for cid, data in commands]
    assert results == [False] * len(commands)
    assert isinstance(message, C_STORE_RQ)
    assert message.context_id == 1
    assert message.command_set.CommandDataSetType != 0x0101


def test_receive_primitive_starts_a_message_when_none_and_clears_it_once_complete() -> None:
    assoc = Association(AE(), "acceptor")
    provider = DIMSEServiceProvider(assoc)
    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    message = C_ECHO_RQ()
    message.primitive_to_message(echo)
    primitives = list(message.encode_msg(1, MAX_PDU))
    assert provider.message is None
    provider.receive_primitive(primitives[0])
    assert provider.message is None
    context_id, queued = provider.msg_queue.get_nowait()
    assert context_id == 1 and isinstance(queued, C_ECHO)


@dataclass
class _Sink:
    data: bytearray = field(default_factory=bytearray)
    aborted: bool = False

    def write(self, piece: bytes | bytearray | memoryview) -> None:
        self.data += piece

    def abort(self) -> None:
        self.aborted = True


def test_a_streamed_c_store_reaches_its_sink_and_the_queued_request_names_it() -> None:
    ds = _dataset()
    sinks: list[_Sink] = []

    def open_object(assoc: Association, message: C_STORE_RQ) -> _Sink:
        assert str(message.command_set.AffectedSOPInstanceUID) == ds.SOPInstanceUID
        sinks.append(_Sink())
        return sinks[-1]

    provider = StreamingDIMSE(Association(AE(), "acceptor"), open_object)
    primitives = _c_store_pdata(ds)
    assert len(primitives) > 3, "the data set must span several fragments"
    for primitive in primitives:
        provider.receive_primitive(primitive)
    context_id, request = provider.msg_queue.get_nowait()
    assert context_id == 1 and isinstance(request, C_STORE)
    assert incoming_object(request) is sinks[0]
    assert bytes(sinks[0].data) == encode(ds, False, True)
    assert provider.message is None


def test_a_data_set_cut_off_by_the_close_is_aborted() -> None:
    sink = _Sink()
    provider = StreamingDIMSE(Association(AE(), "acceptor"), lambda assoc, message: sink)
    pdvs = _pdvs(_c_store_pdata(_dataset()))
    for cid, data in pdvs[:-1]:
        provider.receive_primitive(_single(cid, data))
    assert provider.msg_queue.empty()
    provider.abort_stream()
    assert sink.aborted


def test_a_refused_data_set_is_read_and_dropped() -> None:
    provider = StreamingDIMSE(Association(AE(), "acceptor"), lambda assoc, message: None)
    for primitive in _c_store_pdata(_dataset()):
        provider.receive_primitive(primitive)
    _, request = provider.msg_queue.get_nowait()
    assert incoming_object(request) is None


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, "1.2.840.10008.1.2"])
def test_file_meta_makes_the_data_set_a_part_10_file_in_the_negotiated_syntax(syntax: str) -> None:
    ds = _dataset()
    message = DIMSEMessage()
    for cid, data in _pdvs(_c_store_pdata(ds)):
        if data[0] & 1:
            message.decode_msg(_single(cid, data))
    assert isinstance(message, C_STORE_RQ)
    prefix = file_meta(message, syntax, "1.2.826.0.1.3680043.9.1", "TEST")
    implicit = syntax != ExplicitVRLittleEndian
    read = pydicom.dcmread(io.BytesIO(prefix + encode(ds, implicit, True)))
    assert read.file_meta.TransferSyntaxUID == syntax
    assert read.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert read.SOPInstanceUID == ds.SOPInstanceUID


# -- pacs.dicom.sending ---------------------------------------------------------------------------


class _RecordingDIMSE(DIMSEServiceProvider):
    """A DIMSE provider that records what it is asked to send, then sends it."""

    def __init__(self, assoc: Association, sent: list[tuple[str, str]]) -> None:
        super().__init__(assoc)
        self.sent = sent

    def send_msg(self, primitive: Any, context_id: int) -> None:
        context = self.assoc._accepted_cx[context_id]
        self.sent.append((type(primitive).__name__, str(context.transfer_syntax[0])))
        super().send_msg(primitive, context_id)


@dataclass
class _Requestor:
    assoc: Association
    sent: list[tuple[str, str]]
    established_at_connection: list[bool] = field(default_factory=list)


@pytest.fixture
def requestor() -> Iterator[_Requestor]:
    """An association with a local storage SCP; its DIMSE provider was replaced at EVT_CONN_OPEN."""
    scp = AE()
    scp.add_supported_context(CTImageStorage, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)])
    sent: list[tuple[str, str]] = []
    established: list[bool] = []

    def on_open(event: Any) -> None:
        established.append(event.assoc.is_established)
        event.assoc.dimse = _RecordingDIMSE(event.assoc, sent)

    ae = AE()
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(CTImageStorage, JPEGBaseline8Bit)
    ae.add_requested_context(Verification)
    assoc = ae.associate(*server.server_address, evt_handlers=[(evt.EVT_CONN_OPEN, on_open)])
    assert assoc.is_established
    try:
        yield _Requestor(assoc, sent, established)
    finally:
        assoc.release()
        server.shutdown()


def _placeholder(syntax: str | None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def test_evt_conn_open_comes_before_the_association_and_its_dimse_provider_is_the_one_used(
    requestor: _Requestor,
) -> None:
    assert requestor.assoc.send_c_echo().Status == 0
    assert requestor.established_at_connection == [False]
    assert requestor.sent == [("C_ECHO", ImplicitVRLittleEndian)]


def test_send_c_store_takes_the_context_of_the_file_meta_syntax_and_sends_through_dimse_send_msg(
    requestor: _Requestor,
) -> None:
    requestor.assoc.send_c_store(_placeholder(JPEGBaseline8Bit))
    requestor.assoc.send_c_store(_placeholder(ExplicitVRLittleEndian))
    assert requestor.sent == [("C_STORE", JPEGBaseline8Bit), ("C_STORE", ExplicitVRLittleEndian)]


def test_send_c_store_refuses_a_data_set_without_a_transfer_syntax_before_it_sends_or_pauses(
    requestor: _Requestor,
) -> None:
    with pytest.raises(AttributeError):
        requestor.assoc.send_c_store(_placeholder(None))
    assert requestor.sent == []
    assert requestor.assoc._reactor_checkpoint.is_set()


def test_encode_msg_yields_the_command_fragments_before_the_data_set_fragments() -> None:
    flags = [data[0] for _, data in _pdvs(_c_store_pdata(_dataset()))]
    commands = [flag & 1 for flag in flags]
    assert commands == sorted(commands, reverse=True) and 0 in commands and 1 in commands
    assert flags[-1] == 0x02


def test_dul_send_pdu_queues_the_p_data_on_to_provider_queue() -> None:
    assoc = Association(AE(), "requestor")
    assoc.dul.send_pdu(P_DATA())
    assert assoc.dul.to_provider_queue.qsize() == 1
