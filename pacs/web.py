"""The web viewer's HTTPS server: cheroot, a production WSGI server, with TLS 1.2+ only.

It serves :func:`webviewer.create_app` for one archive on ``[web] bind:port`` with the
server certificate made by ``pacs init`` and the BCP 195 cipher suites of the DICOM
listener. Flask's secret key (it signs the CSRF tokens) is derived from the key-encryption
key, so it survives restarts and is never written anywhere.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import timedelta
from typing import Any

from cheroot import wsgi
from cheroot.errors import FatalSSLAlert
from cheroot.ssl.builtin import BuiltinSSLAdapter

from pacs.accounts import Accounts
from pacs.datadir import SERVER_CERT, SERVER_KEY, Pacs
from pacs.dicom.tls import BCP195_CIPHERS
from pacs.webadmin import PacsAdmin
from webviewer import WebConfig, create_app

THREADS = 16
REQUEST_TIMEOUT = 10
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
_SECRET_PURPOSE = "web secret key v1"


class _HandshakeOnFirstUse(ssl.SSLSocket):
    """A server-side TLS socket that shakes hands on its first read or write.

    cheroot wraps sockets in its one accepting thread; handshaking there would let a
    client that never finishes its handshake hold up every other connection. This way
    the handshake runs in the worker thread that serves the connection, under its timeout.
    """

    _handshaken = False

    def _ensure_handshake(self) -> None:
        if self._handshaken:
            return
        self._handshaken = True
        try:
            self.do_handshake()
        except OSError as exc:  # ssl.SSLError included: a failed handshake drops the connection
            raise FatalSSLAlert(*exc.args) from exc

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._ensure_handshake()
        return super().recv_into(buffer, nbytes or 0, flags)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._ensure_handshake()
        return super().recv(buflen, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._ensure_handshake()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._ensure_handshake()
        super().sendall(data, flags)


class _WorkerHandshakeAdapter(BuiltinSSLAdapter):  # type: ignore[misc]
    """cheroot's TLS adapter, leaving the handshake to the connection's worker thread."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}


def https_adapter(certificate: str, key: str) -> BuiltinSSLAdapter:
    """A TLS adapter for cheroot: TLS 1.2+ only, the BCP 195 suites, handshakes off the accept thread."""
    adapter = _WorkerHandshakeAdapter(certificate, key)
    context: ssl.SSLContext = adapter.context
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.sslsocket_class = _HandshakeOnFirstUse
    return adapter


class WebServer:
    """The HTTPS web viewer of one archive: start it, let it run, stop it."""

    def __init__(self, pacs: Pacs) -> None:
        settings = pacs.settings
        config = WebConfig(
            secret_key=pacs.keyring.derive(_SECRET_PURPOSE, version=1),
            session_idle=timedelta(minutes=settings.web.session_idle_minutes),
            session_absolute=timedelta(hours=settings.web.session_absolute_hours),
        )
        self.app = create_app(
            config,
            archive=pacs.archive,
            accounts=Accounts(pacs.database, pacs.keyring),
            audit=pacs.audit,
            database=pacs.database,
            admin=PacsAdmin(pacs),
        )
        self._server = wsgi.Server(
            (settings.web.bind, settings.web.port),
            self.app,
            numthreads=THREADS,
            server_name=settings.server.hostname,
            timeout=REQUEST_TIMEOUT,
        )
        self._server.max_request_header_size = MAX_HEADER_BYTES
        self._server.max_request_body_size = MAX_BODY_BYTES
        self._server.ssl_adapter = https_adapter(
            str(settings.tls_dir / SERVER_CERT), str(settings.key_dir / SERVER_KEY)
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the port and serve in a background thread."""
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="https", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port the server is bound to."""
        return int(self._server.bind_addr[1])

    def stop(self) -> None:
        """Stop accepting and finish the requests in flight."""
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
