"""The C-STORE sub-operations of C-MOVE and C-GET, their data sets streamed from the archive.

pynetdicom's service classes send each sub-operation with ``assoc.send_c_store(dataset)``,
which encodes the whole data set to bytes first. A retrieve handler here yields instead a
*placeholder* from :meth:`Outbox.placeholder` (a data set of the SOP Class and Instance UIDs
and the chosen transfer syntax) and keeps the real source in its :class:`Outbox`. When the
request reaches the association's DIMSE provider (:class:`SendingDIMSE` on a C-MOVE
destination, ``pacs.dicom.streaming.StreamingDIMSE`` for C-GET), :func:`send_store_request`
sends its command set and then the data set read from the decrypting stream of
:meth:`storage.archive.Archive.open_instance`, one P-DATA fragment at a time; at most
:data:`MAX_QUEUED` fragments wait in the DUL's queue, so a 2 GB object takes a few PDUs of
memory. It also puts the requester's AE title in Move Originator Application Entity Title
(pynetdicom puts its own AE's there). A sub-operation that cannot be done yields
:meth:`Outbox.failed`'s data set, which pynetdicom refuses to send, counting it as failed.

This module and :mod:`pacs.dicom.streaming` are the only ones that reach into pynetdicom's
DIMSE internals. It relies on these behaviours of pynetdicom 3.0
(``tests/dicom/test_pynetdicom_contract.py`` checks each):

- a C-MOVE handler's ``(address, port, kwargs)`` reaches ``AE.associate``, whose
  ``evt_handlers`` see ``EVT_CONN_OPEN`` before the association is requested;
- ``send_c_store`` picks the accepted context whose transfer syntax is the data set's
  File Meta Transfer Syntax UID, and hands the C-STORE primitive to ``assoc.dimse.send_msg``;
- ``send_c_store`` raises, before it sends or pauses anything, for a data set whose file
  meta has no Transfer Syntax UID, and the service class counts that sub-operation failed;
- ``C_STORE_RQ.encode_msg`` yields the command set's fragments (bit 0 of the control
  header set) before any data set fragment;
- DIMSE providers send P-DATA through ``dul.send_pdu``, which queues it on
  ``dul.to_provider_queue``.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.dataset import Dataset, FileMetaDataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_GET, C_MOVE, C_STORE, DimsePrimitiveType
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import P_DATA

MAX_QUEUED = 4
FRAGMENT_WHEN_UNLIMITED = 1 << 20
_PREAMBLE = 132
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
MOVE_DESTINATION_UNKNOWN, UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA801, 0xA702
FINAL_FAILURES = frozenset({0xA702, 0xB000})


@dataclass
class _Source:
    """The data set of one object: `head` (already read) then the rest of `stream`."""

    stream: BinaryIO
    head: bytes


def open_data_set(stream: BinaryIO) -> _Source:
    """`stream` (a stored Part 10 object) past its preamble and File Meta Information.

    Raises ValueError if it is not a Part 10 object.
    """
    prefix = stream.read(_PREAMBLE)
    if len(prefix) < _PREAMBLE or prefix[128:] != b"DICM":
        raise ValueError("the stored object is not a DICOM Part 10 file")
    while True:
        header = stream.read(8)
        if len(header) < 8 or struct.unpack_from("<H", header)[0] != 2:
            return _Source(stream, header)
        if header[4:6] in _LONG_VRS:
            length = struct.unpack("<I", stream.read(4))[0]
        else:
            length = struct.unpack_from("<H", header, 6)[0]
        if len(stream.read(length)) < length:
            raise ValueError("the stored object's file meta information is truncated")


class Outbox:
    """What one C-MOVE or C-GET sends: the streamed objects, the originator, the failures."""

    def __init__(self, *, originator: str | None = None) -> None:
        self.originator = originator
        self.destination_known = False  # a C-MOVE's enrolled destination, about to be associated with
        self.assoc: Association | None = None
        self.failures: list[str] = []
        self._sources: dict[str, _Source] = {}
        self._lock = threading.Lock()

    def accepted(self, sop_class: str) -> list[str]:
        """The transfer syntaxes the receiver accepted for storing `sop_class` from us."""
        if self.assoc is None:
            return []
        return [
            str(cx.transfer_syntax[0])
            for cx in self.assoc.accepted_contexts
            if cx.abstract_syntax == sop_class and cx.as_scu
        ]

    def placeholder(self, sop_class: str, sop_uid: str, syntax: str, source: _Source) -> Dataset:
        """The data set to yield for an object sent as it is stored, its data set from `source`."""
        with self._lock:
            self._sources[sop_uid] = source
        return _identity(sop_class, sop_uid, syntax)

    def failed(self, sop_class: str, sop_uid: str, reason: str) -> Dataset:
        """The data set to yield for a sub-operation that failed for `reason` (one line)."""
        self.failures.append(reason)
        return _identity(sop_class, sop_uid, None)

    def take(self, sop_uid: str) -> _Source | None:
        """The source of the placeholder of `sop_uid`, once."""
        with self._lock:
            return self._sources.pop(sop_uid.strip("\0 "), None)

    def close(self) -> None:
        """Close the streams of placeholders that were never sent."""
        with self._lock:
            sources, self._sources = list(self._sources.values()), {}
        for source in sources:
            source.stream.close()

    def error_comment(self) -> str:
        """Why sub-operations failed, for the final response's Error Comment (LO, 64 characters)."""
        first = self.failures[0] if self.failures else ""
        more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        return (first[: 64 - len(more)] + more).strip()

    def on_connection(self, event: Event) -> None:
        """``EVT_CONN_OPEN`` of a C-MOVE destination: give its association a :class:`SendingDIMSE`."""
        self.assoc = event.assoc
        event.assoc.dimse = SendingDIMSE(event.assoc, self)

    def handlers(self) -> list[tuple[evt.InterventionEvent | evt.NotificationEvent, Callable[[Event], None]]]:
        """The ``evt_handlers`` of a C-MOVE destination's association."""
        return [(evt.EVT_CONN_OPEN, self.on_connection)]


def _identity(sop_class: str, sop_uid: str, syntax: str | None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.file_meta = FileMetaDataset()
    if syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def final_response(primitive: DimsePrimitiveType, outbox: Outbox) -> None:
    """Give the final C-MOVE/C-GET response of `outbox`'s retrieve its failure reason.

    A destination that is enrolled but could not be associated with is not an unknown
    one: pynetdicom's 0xA801 becomes 0xA702 with the reason.
    """
    if not isinstance(primitive, C_MOVE | C_GET) or primitive.Status is None:
        return
    if primitive.Status == MOVE_DESTINATION_UNKNOWN and outbox.destination_known:
        primitive.Status = UNABLE_TO_PERFORM_SUBOPERATIONS
        outbox.failures.insert(0, "the destination did not accept an association")
    if primitive.Status in FINAL_FAILURES and outbox.failures:
        primitive.ErrorComment = outbox.error_comment()


def send_retrieve_message(
    dimse: DIMSEServiceProvider, primitive: DimsePrimitiveType, context_id: int, outbox: Outbox
) -> bool:
    """Send `primitive` if it is a retrieve's streamed C-STORE-RQ (True); a final response gets its reason."""
    if isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is None:
        return send_store_request(dimse, primitive, context_id, outbox)
    final_response(primitive, outbox)
    return False


def send_store_request(
    dimse: DIMSEServiceProvider, primitive: C_STORE, context_id: int, outbox: Outbox
) -> bool:
    """Send a retrieve's C-STORE-RQ; False if it is not a placeholder (the caller sends it as usual).

    The originator of a C-MOVE is set either way.
    """
    if outbox.originator is not None:
        primitive.MoveOriginatorApplicationEntityTitle = outbox.originator
    source = outbox.take(str(primitive.AffectedSOPInstanceUID or ""))
    if source is None:
        return False
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    max_pdu = dimse.maximum_pdu_size
    with source.stream:
        for pdata in message.encode_msg(context_id, max_pdu):
            if not pdata.presentation_data_value_list[0][1][0] & 1:
                break
            dimse.dul.send_pdu(pdata)
        fragment = max_pdu - 6 if max_pdu else FRAGMENT_WHEN_UNLIMITED
        try:
            _send_data_set(dimse, source, context_id, fragment)
        except Exception as error:  # an altered blob or a broken stream halfway: nothing to take back
            outbox.failures.append(f"the stored object could not be read: {type(error).__name__}")
            dimse.assoc.abort()
            dimse.msg_queue.put((None, None))
    return True


def _send_data_set(dimse: DIMSEServiceProvider, source: _Source, context_id: int, fragment: int) -> None:
    """The data set as P-DATA fragments of at most `fragment` bytes, the last one flagged."""
    pending = source.head + source.stream.read(max(fragment - len(source.head), 0))
    while True:
        following = source.stream.read(fragment)
        last = not following
        _wait_for_room(dimse)
        pdata = P_DATA()
        pdata.presentation_data_value_list = [[context_id, (b"\x02" if last else b"\x00") + pending]]
        dimse.dul.send_pdu(pdata)
        if last:
            return
        pending = following


def _wait_for_room(dimse: DIMSEServiceProvider) -> None:
    """Hold the sender while the DUL has :data:`MAX_QUEUED` PDUs still to write."""
    queue = dimse.dul.to_provider_queue
    while queue.qsize() >= MAX_QUEUED and dimse.assoc.is_established:
        time.sleep(0.0005)
    if not dimse.assoc.is_established:
        raise ConnectionError("the association ended")


class SendingDIMSE(DIMSEServiceProvider):
    """The DIMSE provider of a C-MOVE destination's association; see the module docstring."""

    def __init__(self, assoc: Association, outbox: Outbox) -> None:
        super().__init__(assoc)
        self.outbox = outbox

    def send_msg(self, primitive: DimsePrimitiveType, context_id: int) -> None:
        """Send a message; a C-STORE request through :func:`send_store_request`."""
        if not send_retrieve_message(self, primitive, context_id, self.outbox):
            super().send_msg(primitive, context_id)
