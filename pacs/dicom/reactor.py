"""Event-driven association threads for the acceptor side of pynetdicom.

pynetdicom runs two threads per association, and both poll. The DUL thread sleeps 1 ms
whenever the socket has nothing to read, and the association thread sleeps 1 ms between
looks at its queues. A 0.5 MB object arrives in several PDUs, so those sleeps made up
most of the time we spent per object. Here both threads block until there is work:
the DUL thread in ``select()`` on the socket and a wake-up socket pair, and the
association thread on an :class:`threading.Event` that is set whenever a message or a
primitive reaches it. :data:`MAX_WAIT` bounds each wait, so timers are still checked.
The association socket reads each PDU in bulk (:class:`BulkReadingSocket`).
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, RequestHandler

from pacs.dicom.streaming import OpenObject, StreamingDIMSE

MAX_WAIT = 0.05


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

    def __init__(self, assoc: Association, wake_association: threading.Event) -> None:
        super().__init__(assoc)
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

    def __init__(self, ae: Any, mode: str, open_object: OpenObject) -> None:
        super().__init__(ae, mode)
        self._wake = threading.Event()
        self.dul = EventDrivenDUL(self, self._wake)
        self.dimse = StreamingDIMSE(self, open_object)
        self.dimse.msg_queue = _WakingQueue(self._wake.set)
        # The timeouts were pushed into the DUL that was just replaced.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

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

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly `nr_bytes`, or what arrived before the peer closed the connection."""
        assert self.socket is not None
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = 0
        while received < nr_bytes:
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
        assoc = EventDrivenAssociation(self.ae, MODE_ACCEPTOR, server.open_object)
        assoc._server = server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        assoc.set_socket(BulkReadingSocket(assoc, client_socket=self.request))
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
