"""The DICOM listener: a pynetdicom AE on the TLS port, and the legacy plaintext port when needed.

Accepted sockets get TCP_NODELAY, and the TLS handshake runs in the connection's own
thread under the ACSE timeout, so a peer that stalls cannot hold up the others; a failed
handshake (no certificate, an unknown CA, TLS 1.0/1.1, plaintext on the TLS port) is
audited as a Security Alert. Enrolment changes reach the running server within
:data:`REFRESH_SECONDS`: newly pinned certificates are trusted, and the plaintext port
opens while a plaintext node exists and closes when none is left.
"""

from __future__ import annotations

import functools
import logging
import socket
import socketserver
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from pacs.core import sockets, tls
from pacs.core.config import Settings
from pacs.core.context import CA_CERT, SERVER_CERT, SERVER_KEY, Context
from pacs.core.nodes import EnrolledNode, NodeRegistry
from pacs.dicom.handlers import DicomHandlers, certificate_subject
from pacs.dicom.policy import certificate_fingerprint
from pacs.dicom.reactor import EventDrivenRequestHandler
from pacs.dicom.slots import AssociationSlots
from pacs.dicom.streaming import OpenObject
from pacs.dicom.throttle import ConnectionGate
from pacs.ops.decodelimits import FrameLimit
from pacs.ops.forwarding import Forwarding

LOG = logging.getLogger(__name__)
REFRESH_SECONDS = 2.0
MAX_PENDING = 256  # connections of all addresses awaiting their association decision, per worker
PENDING_SLACK_SECONDS = 5
ASSOCIATION_SLOTS = "associations"  # under the data directory: one lock file per slot
# Accepted as sent, never transcoded. Kept to the usual ones: pynetdicom copies every
# supported context for each association, so a shorter list makes associations cheaper.
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old devices)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
_QUERY_RETRIEVE = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)


class _Listener(ThreadedAssociationServer):
    """pynetdicom's threaded server, with TCP_NODELAY, a gate at accept and an audited TLS handshake.

    The handshake runs in the connection's own thread under the handshake deadline, so a
    peer that stalls cannot hold up the others, and a certificate that no enrolment
    references (a removed node's, or any other the CA once issued) ends the connection
    before any DICOM byte is read.
    """

    handshake_timeout: float = 10.0
    read_timeout: float | None = 60.0
    gate: ConnectionGate | None = None
    enrolled: Callable[[bytes], bool] | None = None
    reuse_port: bool = False
    open_object: OpenObject

    def server_bind(self) -> None:
        """Bind, sharing the port with the other worker processes when asked to."""
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def _accepted(self, client: socket.socket) -> socket.socket:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        self._deadlines[client] = time.monotonic() + self.handshake_timeout
        return client

    @functools.cached_property
    def _deadlines(self) -> weakref.WeakKeyDictionary[socket.socket, float]:
        return weakref.WeakKeyDictionary()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = self.socket.accept()
        return self._accepted(client), address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Take the connection only if the gate admits its address (not blocked, not too many pending)."""
        return self.gate is None or self.gate.admit(str(client_address[0]))

    def handshake_deadline(self, request: socket.socket) -> float:
        """When the connection must have sent its association request."""
        return self._deadlines.get(request, time.monotonic() + self.handshake_timeout)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        address = str(client_address[0])
        if isinstance(request, ssl.SSLSocket) and not self._shook_hands(request, address):
            if self.gate is not None:
                self.gate.settled(address)
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def _shook_hands(self, request: ssl.SSLSocket, address: str) -> bool:
        try:
            return self._shake_hands(request, address)
        except Exception:
            LOG.exception("checking the TLS handshake of %s failed; closing the connection", address)
            return False

    def _shake_hands(self, request: ssl.SSLSocket, address: str) -> bool:
        """Complete TLS within the deadline with a certificate an enrolment references."""
        try:
            request.settimeout(max(self.handshake_deadline(request) - time.monotonic(), 0.001))
            request.do_handshake()
            request.settimeout(self.read_timeout)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self._failed(address, "TLS handshake refused", {"reason": str(reason), "error": str(exc)[:200]})
            return False
        der = request.getpeercert(binary_form=True)
        if der is None or (self.enrolled is not None and not self.enrolled(der)):
            self._failed(
                address,
                "TLS handshake refused",
                {"reason": "CERTIFICATE_NOT_ENROLLED", "certificate_subject": certificate_subject(der)},
            )
            return False
        return True

    def _failed(self, address: str, what: str, details: dict[str, Any]) -> None:
        if self.gate is not None:
            self.gate.failed(address, what, details)

    def shutdown(self) -> None:
        """Stop serving and close the socket (the AE does not track servers made by make_server)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class _SharedListener(_Listener):
    """A listener of one of several worker processes: the kernel spreads connections across them."""

    reuse_port = True


class _InheritedListener(_Listener):
    """A listener on the socket the supervisor bound before it forked the workers.

    Every worker accepts from the one queue, so the next association goes to whichever
    worker is first free to take it, rather than to one chosen by a hash of the peer's
    address (SO_REUSEPORT), which can put every association of a few modalities on one
    process. A worker that loses the race to accept simply tries again.
    """

    inherited: socket.socket | None = None

    def server_bind(self) -> None:
        """Use the inherited socket instead of binding one (non-blocking, as the race needs)."""
        assert self.inherited is not None, "set _InheritedListener.inherited first"
        self.socket.close()
        self.socket = self.inherited.dup()
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """The supervisor's socket is listening already."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = self.socket.accept()  # BlockingIOError: another worker took it
        client.setblocking(True)
        return self._accepted(client), address


def listening_socket(bind: str, port: int) -> socket.socket:
    """A TCP socket listening on (`bind`, `port`), for the workers to inherit and share."""
    sock = sockets.listening_socket(bind, port)
    sock.set_inheritable(True)
    return sock


class DicomServer:
    """The DICOM service of one archive: start it, let it run, stop it."""

    def __init__(
        self, pacs: Context, *, worker: int | None = None, tls_socket: socket.socket | None = None
    ) -> None:
        """Serve `pacs`; as `worker` N of several processes, accept on the shared `tls_socket`."""
        self.pacs = pacs
        self.worker = worker
        self.tls_socket = tls_socket
        self.settings: Settings = pacs.settings
        self.registry = NodeRegistry(pacs.database)
        self.slots = AssociationSlots(
            self.settings.data_dir / ASSOCIATION_SLOTS, self.settings.dicom.max_associations
        )
        self.gate = ConnectionGate(
            pacs.audit,
            max_pending=self.settings.dicom.max_pending_per_address,
            pending_seconds=self.settings.dicom.handshake_timeout + PENDING_SLACK_SECONDS,
        )
        self.handlers = DicomHandlers(
            pacs.archive,
            pacs.audit,
            self.registry,
            ae_title=self.settings.dicom.ae_title,
            client_context=self._client_context,
            slots=self.slots,
            gate=self.gate,
            frame_limit=FrameLimit(self.settings.dicom.max_frame_mb * 2**20, "[dicom] max_frame_mb"),
            delivered=Forwarding(pacs.database, pacs.audit, self.settings.routes).delivered,
        )
        self.ae = self._make_ae()
        self._tls_context: ssl.SSLContext | None = None
        self._trusted: set[str] = set()
        self._enrolled: frozenset[str] = frozenset()
        self._tls_server: _Listener | None = None
        self._plain_server: _Listener | None = None
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _make_ae(self) -> AE:
        dicom = self.settings.dicom
        ae = AE(ae_title=dicom.ae_title)
        # Our slots limit associations (AssociationSlots); pynetdicom would count pending connections too.
        ae.maximum_associations = dicom.max_associations + MAX_PENDING
        ae.maximum_pdu_size = dicom.max_pdu
        ae.acse_timeout = dicom.acse_timeout
        ae.dimse_timeout = dicom.dimse_timeout
        ae.network_timeout = dicom.network_timeout
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
        for sop_class in _QUERY_RETRIEVE:
            ae.add_supported_context(sop_class)
        return ae

    def _paths(self) -> tuple[Path, Path, Path]:
        return (
            self.settings.tls_dir / SERVER_CERT,
            self.settings.key_dir / SERVER_KEY,
            self.settings.tls_dir / CA_CERT,
        )

    def _client_context(self, node: EnrolledNode) -> ssl.SSLContext:
        certificate, key, _ = self._paths()
        return tls.client_context(certificate, key, node.cert_pem)

    def _listen(self, port: int, context: ssl.SSLContext | None) -> _Listener:
        server_class: type[_Listener] = _Listener if self.worker is None else _SharedListener
        if context is not None and self.tls_socket is not None:
            _InheritedListener.inherited = self.tls_socket
            server_class = _InheritedListener
        server = self.ae.make_server(
            (self.settings.dicom.bind, port),
            ssl_context=context,
            evt_handlers=self.handlers.bindings(tls=context is not None),
            server_class=server_class,
            request_handler=EventDrivenRequestHandler,
        )
        server.gate = self.gate
        server.enrolled = self._is_enrolled if context is not None else None
        server.open_object = self.handlers.open_object
        server.handshake_timeout = float(self.settings.dicom.handshake_timeout)
        server.read_timeout = float(self.settings.dicom.network_timeout)
        thread = threading.Thread(target=server.serve_forever, name=f"dicom-{port}", daemon=True)
        thread.start()
        return server

    def start(self) -> None:
        """Open the TLS listener (and the plaintext one if a node needs it)."""
        self.pacs.archive.hold_writer_lock()
        certificate, key, ca = self._paths()
        nodes = self.registry.all()
        pinned = {n.fingerprint: n.cert_pem for n in nodes if not n.cert_issued}
        self._tls_context = tls.server_context(certificate, key, ca, pinned.values())
        self._trusted = set(pinned)
        self._tls_server = self._listen(self.settings.dicom.port, self._tls_context)
        self._refresh(nodes)
        self._refresher = threading.Thread(target=self._refresh_loop, name="dicom-refresh", daemon=True)
        self._refresher.start()

    @property
    def tls_port(self) -> int:
        """The port the TLS listener is bound to."""
        assert self._tls_server is not None
        return int(self._tls_server.server_address[1])

    @property
    def plaintext_open(self) -> bool:
        """Whether the legacy plaintext listener is open."""
        return self._plain_server is not None

    def _is_enrolled(self, der: bytes) -> bool:
        """Whether a node enrolled now holds the certificate `der`.

        When the enrolments cannot be read, the association policy decides instead: it reads
        them again and rejects the request (as transient while the index is down).
        """
        try:
            self._enrolled = frozenset(n.fingerprint for n in self.registry.all())
        except Exception:
            LOG.exception("could not read the enrolments; leaving the certificate to the association policy")
            return True
        return certificate_fingerprint(der) in self._enrolled

    def _refresh(self, nodes: list[EnrolledNode]) -> None:
        assert self._tls_context is not None
        self._enrolled = frozenset(n.fingerprint for n in nodes)
        self.handlers.recheck(nodes)
        self.gate.flush()
        new = [n for n in nodes if not n.cert_issued and n.fingerprint not in self._trusted]
        tls.trust_pinned(self._tls_context, [n.cert_pem for n in new])
        self._trusted.update(n.fingerprint for n in new)
        wanted = self.settings.dicom.plaintext_port != 0 and any(n.plaintext for n in nodes)
        if wanted and self._plain_server is None:
            self._plain_server = self._listen(self.settings.dicom.plaintext_port, None)
            LOG.warning(
                "plaintext DICOM port %s is open for legacy nodes", self.settings.dicom.plaintext_port
            )
        elif not wanted and self._plain_server is not None:
            self._plain_server.shutdown()
            self._plain_server = None

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                self._refresh(self.registry.all())
            except Exception:
                LOG.exception("refreshing enrolled nodes failed")

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop accepting, let associations in flight finish (up to `grace_seconds`), then abort the rest."""
        self._stop.set()
        for server in (self._tls_server, self._plain_server):
            if server is not None:
                server.shutdown()
        self._tls_server = self._plain_server = None
        deadline = time.monotonic() + grace_seconds
        while self.ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.1)
        for assoc in self.ae.active_associations:
            assoc.abort()
        if self._refresher is not None:
            self._refresher.join(timeout=REFRESH_SECONDS * 2)
        self.gate.flush(now=float("inf"))
        self.slots.close()
