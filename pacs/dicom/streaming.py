"""C-STORE data sets streamed from the association into the archive as their fragments arrive.

pynetdicom collects a data set in memory, or with ``STORE_RECV_CHUNKED_DATASET`` in a
plaintext temporary file, before the C-STORE handler sees it. :class:`StreamingDIMSE`
replaces the association's DIMSE provider so that, once the command set of a C-STORE-RQ
is complete, every data set fragment goes straight to an object that
``open_object(assoc, message)`` returns (an :class:`~storage.ingest.IncomingObject`,
started with the File Meta Information from :func:`file_meta`); when it returns None the
fragments are read and dropped. The request then reaches the handler like any other,
and :func:`incoming_object` gives the handler what was received.

This is the only module that reaches into pynetdicom's DIMSE internals. It relies on
these behaviours of pynetdicom 3.0 (``tests/dicom/test_pynetdicom_contract.py`` checks each):

- the DUL hands every P-DATA primitive to ``assoc.dimse.receive_primitive``;
- ``DIMSEMessage.decode_msg`` fed one command-set PDV at a time returns False after
  the last command fragment of a request with a data set, with ``context_id`` set and
  the message's class switched to ``C_STORE_RQ``;
- ``DIMSEServiceProvider.receive_primitive`` starts a new ``DIMSEMessage`` when
  ``message`` is None, and clears ``message`` once one is complete;
- ``message_to_primitive()`` builds the C-STORE primitive the service class hands to
  ``EVT_C_STORE`` handlers as ``event.request``;
- the service class answers through ``assoc.dimse.send_msg``, which sends a message as
  P-DATA through ``dul.send_pdu`` (C-STORE responses are encoded by :mod:`pacs.dicom.wire`).

While a C-GET or C-MOVE runs, its :class:`~pacs.dicom.sending.Outbox` is the provider's
``outbox``: C-GET's C-STORE requests are streamed by :mod:`pacs.dicom.sending`, and the
final response carries the reason sub-operations failed.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Protocol

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE, DimsePrimitiveType
from pynetdicom.pdu_primitives import P_DATA

from pacs.dicom import sending, wire

LOG = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the bytes of one data set go (an :class:`~storage.ingest.IncomingObject`)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next piece."""

    def abort(self) -> None:
        """Give up: the association ended before the data set did."""


OpenObject = Callable[[Association, C_STORE_RQ], Sink | None]
_RECEIVED: weakref.WeakKeyDictionary[C_STORE, Sink] = weakref.WeakKeyDictionary()


def incoming_object(request: C_STORE) -> Sink | None:
    """What the data set of a streamed C-STORE request went into (None if it was dropped)."""
    return _RECEIVED.get(request)


def file_meta(
    message: C_STORE_RQ, transfer_syntax: str, implementation_uid: str, implementation_version: str
) -> bytes:
    """Preamble, ``DICM`` and File Meta Information for the data set of `message`."""
    command = message.command_set
    return wire.part10_prefix(
        str(command.AffectedSOPClassUID or "").strip("\0 "),
        str(command.AffectedSOPInstanceUID or "").strip("\0 "),
        transfer_syntax,
        implementation_uid,
        implementation_version,
    )


class _Stream:
    """The C-STORE request whose data set is arriving, and where it goes."""

    def __init__(self, message: C_STORE_RQ, sink: Sink | None) -> None:
        self.message = message
        self.sink = sink


class StreamingDIMSE(DIMSEServiceProvider):
    """A DIMSE provider that streams C-STORE data sets; see the module docstring."""

    def __init__(self, assoc: Association, open_object: OpenObject) -> None:
        super().__init__(assoc)
        self._open_object = open_object
        self._stream: _Stream | None = None
        self.outbox: sending.Outbox | None = None

    def receive_primitive(self, primitive: P_DATA) -> None:
        """Process a P-DATA primitive one presentation data value at a time."""
        for context_id, data in primitive.presentation_data_value_list:
            if self._stream is not None:
                self._data_fragment(self._stream, data)
                continue
            single = P_DATA()
            single.presentation_data_value_list = [[context_id, data]]
            super().receive_primitive(single)
            message = self.message
            if isinstance(message, C_STORE_RQ) and message.context_id is not None:
                self._start(message)

    def _start(self, message: C_STORE_RQ) -> None:
        """The command set of a C-STORE-RQ is complete and its data set follows.

        (Without a data set ``decode_msg`` completes the message, so it never gets here.)
        """
        self.message = None
        try:
            sink = self._open_object(self.assoc, message)
        except Exception:
            LOG.exception("could not start receiving an object; its data set is dropped")
            sink = None
        self._stream = _Stream(message, sink)

    def _data_fragment(self, stream: _Stream, data: bytes) -> None:
        if data[0] & 1:
            LOG.error("a command fragment arrived inside a data set; aborting the association")
            self.abort_stream()
            self.dul.event_queue.put("Evt19")
            return
        if stream.sink is not None:
            stream.sink.write(memoryview(data)[1:])
        if data[0] & 2:
            self._stream = None
            self._deliver(stream)

    def _deliver(self, stream: _Stream) -> None:
        """Queue the complete request for the association, as pynetdicom does."""
        evt.trigger(self.assoc, evt.EVT_DIMSE_RECV, {"message": stream.message})
        try:
            request = stream.message.message_to_primitive()
        except Exception:
            LOG.exception("received an invalid C-STORE request")
            if stream.sink is not None:
                stream.sink.abort()
            self.dul.event_queue.put("Evt19")
            return
        assert isinstance(request, C_STORE)
        if stream.sink is not None:
            _RECEIVED[request] = stream.sink
        self.msg_queue.put((stream.message.context_id, request))

    def send_msg(self, primitive: DimsePrimitiveType, context_id: int) -> None:
        """Send a DIMSE message; a C-STORE response goes out encoded by :mod:`pacs.dicom.wire`.

        A retrieve's C-STORE requests and final response go through :mod:`pacs.dicom.sending`.

        Nothing here binds ``EVT_DIMSE_SENT``, which such responses do not trigger.
        """
        encoded = None
        if self.outbox is not None and sending.send_retrieve_message(
            self, primitive, context_id, self.outbox
        ):
            return
        if isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is not None:
            encoded = wire.c_store_response(primitive)
        if encoded is None:
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list = [[context_id, b"\x03" + encoded]]
        self.dul.send_pdu(pdata)

    def abort_stream(self) -> None:
        """Drop a data set cut off by the end of the association."""
        stream, self._stream = self._stream, None
        if stream is not None and stream.sink is not None:
            stream.sink.abort()
