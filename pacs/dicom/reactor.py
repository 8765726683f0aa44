"""Event-driven association threads for the acceptor side of pynetdicom.

pynetdicom runs two threads per association, and both poll. The DUL thread sleeps 1 ms
whenever the socket has nothing to read, and the association thread sleeps 1 ms between
looks at its queues. A 0.5 MB object arrives in several PDUs, so those sleeps made up
most of the time we spent per object. Here both threads block until there is work:
the DUL thread in ``select()`` on the socket and a wake-up socket pair, and the
association thread on an :class:`threading.Event` that is set whenever a message or a
primitive reaches it. :data:`MAX_WAIT` bounds each wait, so timers are still checked.
The association socket reads each PDU in bulk (:class:`BulkReadingSocket`), and every read
has a timeout: until the association is requested, what is left of the handshake deadline;
then the network timeout.

A PDU longer than it may be (:func:`pdu_limit`) is answered with an A-ABORT and the
connection closed, before any of it is read. Each acceptor tells the
:class:`~pacs.dicom.throttle.ConnectionGate` once that it is no longer pending, and reports
its failures (an oversized PDU, no association request in time) to it.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler

from pacs.dicom.streaming import OpenObject, StreamingDIMSE
from pacs.dicom.throttle import ConnectionGate

MAX_WAIT = 0.05
MAX_ASSOCIATE_RQ = 64 * 1024  # 128 presentation contexts of 4 transfer syntaxes each take ~20 KiB
MAX_SMALL_PDU = 1024  # release and abort PDUs have 4 bytes; an association answer is not ours to get
A_ASSOCIATE_RQ, P_DATA_TF = 0x01, 0x04
# A-ABORT: source 2 (service provider), reason 6 (invalid PDU parameter value)
ABORT_INVALID_PDU = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0x02, 0x06])


def pdu_limit(pdu_type: int, max_pdu: int) -> int:
    """The longest PDU of `pdu_type` we read, given our negotiated maximum P-DATA length `max_pdu`."""
    if pdu_type == P_DATA_TF:
        return max_pdu
    if pdu_type == A_ASSOCIATE_RQ:
        return MAX_ASSOCIATE_RQ
    return MAX_SMALL_PDU


class _WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that calls `on_put` after each item is added."""

    def __init__(self, on_put: Callable[[], None]) -> None:
        super().__init__()
        self._on_put = on_put

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._on_put()


class EventDrivenDUL(DULServiceProvider):
    """The DUL thread, blocking in ``select()`` instead of sleeping when it has no work."""

    def __init__(self, assoc: EventDrivenAssociation, wake_association: threading.Event) -> None:
        super().__init__(assoc)
        self.front_door = assoc
        # The reactor's own sleep becomes a no-op: the wait happens in _is_transport_event.
        self._run_loop_delay = 0
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self.to_provider_queue = _WakingQueue(self._wake)
        self.to_user_queue = _WakingQueue(wake_association.set)

    def _wake(self) -> None:
        # OSError: a wake-up is already pending, or the reactor has ended.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _wait_for_work(self) -> None:
        """Block until the peer sends data, a primitive is queued, or MAX_WAIT passes."""
        peer = self.socket.socket if self.socket is not None else None
        if isinstance(peer, ssl.SSLSocket) and peer.pending():
            return
        watched: list[Any] = [self._wake_reader]
        if peer is not None and peer.fileno() >= 0:
            watched.append(peer)
        try:
            ready, _, _ = select.select(watched, [], [], MAX_WAIT)
        except (OSError, ValueError):
            return  # the socket closed under us; the reactor notices it next
        if self._wake_reader in ready:
            with contextlib.suppress(OSError):
                while self._wake_reader.recv(4096):
                    pass

    def _read_pdu_data(self) -> None:
        """Read the next PDU as pynetdicom does, unless its header declares more than it may have."""
        sock = self.socket
        assert isinstance(sock, BulkReadingSocket)
        try:
            header = sock.recv(6)
        except OSError:
            self.event_queue.put("Evt17")
            return
        if len(header) == 6:
            pdu_type, _, length = struct.unpack(">BBL", header)
            limit = pdu_limit(pdu_type, self.front_door.acceptor.maximum_length)
            if length > limit:
                self.front_door.refuse_pdu(pdu_type, length, limit)
                with contextlib.suppress(OSError):
                    sock.send(ABORT_INVALID_PDU)
                self.event_queue.put("Evt17")
                return
        sock.unread(header)
        super()._read_pdu_data()
        if header[:1] == bytes([A_ASSOCIATE_RQ]):
            sock.end_handshake()

    def receive_pdu(self, wait: bool = False, timeout: float | None = None) -> Any:
        """A primitive for the association; a wait ends early when the connection has closed."""
        if not wait:
            return super().receive_pdu(wait=False)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = MAX_WAIT if deadline is None else min(MAX_WAIT, deadline - time.monotonic())
            primitive = super().receive_pdu(wait=True, timeout=max(step, 0))
            if primitive is not None:
                return primitive
            closed = self.socket is not None and self.socket.socket is None
            if closed or (deadline is not None and time.monotonic() >= deadline):
                return None

    def _is_transport_event(self) -> bool:
        idle = self.event_queue.empty() and self.to_provider_queue.empty()
        if idle and not self._kill_thread and self.state_machine.current_state != "Sta13":
            self._wait_for_work()
        return super()._is_transport_event()

    def kill_dul(self) -> None:
        """Stop the reactor now rather than after its current wait."""
        super().kill_dul()
        self._wake()

    def stop_dul(self) -> bool:
        """Stop the reactor if the association is idle (Sta1); wait for the thread to end."""
        if self.state_machine.current_state != "Sta1":
            return False
        self.kill_dul()
        self.join()
        return True

    def run_reactor(self) -> None:
        """Run pynetdicom's reactor, then close the wake-up sockets."""
        try:
            super().run_reactor()
        finally:
            self._wake_reader.close()
            self._wake_writer.close()


class EventDrivenAssociation(Association):
    """An acceptor whose reactor waits on an event instead of polling every millisecond.

    Its DIMSE provider streams C-STORE data sets into what `open_object` returns.
    """

    def __init__(
        self,
        ae: Any,
        mode: str,
        open_object: OpenObject,
        *,
        gate: ConnectionGate | None = None,
        address: str = "",
    ) -> None:
        super().__init__(ae, mode)
        self._wake = threading.Event()
        self._gate = gate
        self._address = address
        self._settled = threading.Event()
        self.dul = EventDrivenDUL(self, self._wake)
        self.dimse = StreamingDIMSE(self, open_object)
        self.dimse.msg_queue = _WakingQueue(self._wake.set)
        # The timeouts were pushed into the DUL that was just replaced.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

    def settle(self) -> None:
        """Tell the gate, once, that this connection is no longer pending."""
        if self._gate is not None and not self._settled.is_set():
            self._settled.set()
            self._gate.settled(self._address)

    def refuse_pdu(self, pdu_type: int, length: int, limit: int) -> None:
        """Report a PDU that declared more bytes than it may have."""
        if self._gate is not None:
            self._gate.failed(
                self._address,
                "PDU too long",
                {"pdu_type": f"0x{pdu_type:02X}", "declared_length": length, "limit": limit},
            )

    def run_reactor(self) -> None:
        """Serve the connection; a peer that never asked for an association counts as a failure."""
        try:
            super().run_reactor()
        finally:
            if self._gate is not None and self.requestor.primitive is None and not self._settled.is_set():
                self._gate.failed(self._address, "no association request", {})
            self.settle()

    def kill(self) -> None:
        """Stop the reactor now rather than after its current wait."""
        self._kill = True
        self._wake.set()
        super().kill()

    def _run_reactor(self) -> None:
        """Serve DIMSE messages and react to release, abort, DUL death and the network timeout.

        The same checks as pynetdicom's loop, in the same order; the event is cleared
        before the queues are read, so nothing put after that point is missed.
        """
        self._is_paused = False
        while not self._kill:
            self._wake.clear()
            # Paused while a handler uses the association to send (C-MOVE/C-GET sub-operations).
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, int(context_id))  # type: ignore[arg-type]
            if self._ended():
                return
            if not msg:
                self._wake.wait(MAX_WAIT)

    def _ended(self) -> bool:
        """Handle a release, an abort, a dead DUL or the network timeout; True if it ended."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return True
        return False


class BulkReadingSocket(AssociationSocket):
    """pynetdicom's association socket, reading a PDU in as few calls as the transport allows.

    Upstream reads every PDU 4 KiB at a time; a 128 KiB P-DATA-TF then costs 32 TLS reads
    and as many buffer extensions. Here the bytes go straight into one buffer of the
    PDU's size, a TLS record (up to 16 KiB) per call.
    """

    deadline: float | None = None
    read_timeout: float | None = None
    _unread: bytes = b""

    def end_handshake(self) -> None:
        """The association request is in: from now on each read waits up to :attr:`read_timeout`."""
        self.deadline = None
        if self.socket is not None:
            self.socket.settimeout(self.read_timeout)

    def unread(self, data: bytes) -> None:
        """Put `data` back in front of what the next :meth:`recv` returns."""
        self._unread = data + self._unread

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly `nr_bytes`, or what arrived before the peer closed the connection.

        Raises TimeoutError when a read waits longer than the socket's timeout, or the
        whole read outlasts :attr:`deadline` (set while the association is not yet requested).
        """
        assert self.socket is not None
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = min(len(self._unread), nr_bytes)
        view[:received] = self._unread[:received]
        self._unread = self._unread[received:]
        while received < nr_bytes:
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the handshake deadline passed")
                self.socket.settimeout(left)
            count = self.socket.recv_into(view[received:], nr_bytes - received)
            if not count:
                del view
                return buffer[:received]
            received += count
        return buffer


class EventDrivenRequestHandler(RequestHandler):
    """pynetdicom's request handler, building an :class:`EventDrivenAssociation`."""

    def _create_association(self) -> Association:
        """An acceptor for this connection, set up as pynetdicom's own handler does."""
        server = self.server
        assoc = EventDrivenAssociation(
            self.ae,
            MODE_ACCEPTOR,
            server.open_object,
            gate=server.gate,
            address=str(self.client_address[0]),
        )
        assoc._server = server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        sock = BulkReadingSocket(assoc, client_socket=self.request)
        sock.deadline = server.handshake_deadline(self.request)
        sock.read_timeout = server.read_timeout
        assoc.set_socket(sock)
        assoc.acse_timeout = server.handshake_timeout
        acceptor = assoc.acceptor
        acceptor.maximum_length = self.ae.maximum_pdu_size
        acceptor.ae_title = server.ae_title
        acceptor.address_info = self.local
        acceptor.implementation_class_uid = self.ae.implementation_class_uid
        acceptor.implementation_version_name = self.ae.implementation_version_name
        # Negotiation only reads the contexts and the policy replaces the list, so the
        # server's contexts are shared instead of deep-copied (tens of ms per association).
        acceptor.supported_contexts = list(server.contexts)
        assoc.requestor.address_info = self.remote
        for event, handlers in server._handlers.items():
            if event.is_intervention and handlers:
                assoc.bind(event, *handlers)
            elif isinstance(event, evt.NotificationEvent):
                for handler, args in handlers:
                    assoc.bind(event, handler, args)
        return assoc
