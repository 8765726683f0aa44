"""The web viewer's HTTPS server: hypercorn's asyncio event loop, TLS 1.2+ only, the app in threads.

It serves :func:`webviewer.create_app` for one archive on ``[web] bind:port`` with the server
certificate made by ``pacs init`` and the BCP 195 cipher suites of the DICOM listener. The
event loop holds every connection until its request is complete: a TLS handshake must finish
within :data:`REQUEST_TIMEOUT` and a request's header (at most :data:`MAX_HEADER_BYTES`) too, a
body (at most :data:`MAX_BODY_BYTES`) is read in the loop, and only a complete request takes
one of :data:`THREADS` worker threads. So idle and half-open connections cost memory, not
threads. Only a STOW-RS store's body, which may be gigabytes, streams to the app as it arrives
instead (:mod:`pacs.serve.streamed_body`), behind the app's check of its credentials. Every
response, the server's own refusals included, carries the security headers of
:mod:`webviewer.security` exactly once. Flask's secret key (it signs the CSRF tokens) is
derived from the key-encryption key, so it survives restarts and is never written anywhere.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import Any

from hypercorn.app_wrappers import WSGIWrapper, _build_environ
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

from pacs.core.accounts import Accounts
from pacs.core.config import networks_of
from pacs.core.config_web_networks import WebNetworks
from pacs.core.context import SERVER_CERT, SERVER_KEY, Context
from pacs.core.passkeys import RelyingParty
from pacs.core.sockets import listening_socket
from pacs.core.tls import https_context
from pacs.ops.assessment_report import ReportDesk
from pacs.serve.streamed_body import StreamedBody
from pacs.serve.webadmin import PacsAdmin
from webviewer import WebConfig, create_app
from webviewer import assessment as assessment_page
from webviewer.security import HEADERS
from webviewer.stow import is_stow_request

THREADS = 16
# STOW-RS uploads held at once: each holds a worker thread while its client sends.
MAX_STORES = THREADS // 4
REQUEST_TIMEOUT = 10
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
STOP_GRACE = 10
BACKLOG = 1024
# A response body is written in pieces of about this size, two at most on their way at once.
WRITE_BYTES = 1 << 20
WRITES_IN_FLIGHT = 2
_SECRET_PURPOSE = "web secret key v1"
# Sent by the server on every response; the app's own copies are dropped so each appears once.
SERVER_HEADERS = {**HEADERS, "Cache-Control": "no-store", "Pragma": "no-cache"}
_OWN = {name.lower() for name in SERVER_HEADERS} | {"date"}
_BODY_TOO_LARGE = f"Request body too large: at most {MAX_BODY_BYTES // 1024} KiB.\n".encode()
_TARGET_TOO_LONG = f"Request URL too long: at most {MAX_HEADER_BYTES // 1024} KiB.\n".encode()
_HEADER_TOO_LARGE = f"Request header too large: at most {MAX_HEADER_BYTES // 1024} KiB.\n".encode()
_STORES_BUSY = f"{MAX_STORES} uploads are in progress; try again shortly.\n".encode()

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Config(Config):  # type: ignore[misc]
    """hypercorn's settings with our TLS context and the security headers on every response."""

    def create_ssl_context(self) -> ssl.SSLContext:
        return https_context(self.certfile, self.keyfile)

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        own = [(name.lower().encode(), value.encode()) for name, value in SERVER_HEADERS.items()]
        return [*super().response_headers(protocol), *own]


def server_config(certificate: str, key: str) -> Config:
    """The limits and timeouts of the HTTPS server, for `certificate` and `key` (PEM files)."""
    config = _Config()
    config.certfile, config.keyfile = certificate, key
    config.ssl_handshake_timeout = REQUEST_TIMEOUT
    config.keep_alive_timeout = REQUEST_TIMEOUT  # also the time a request's header may take to arrive
    config.read_timeout = REQUEST_TIMEOUT
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.h2_max_header_list_size = MAX_HEADER_BYTES
    config.wsgi_max_body_size = MAX_BODY_BYTES
    config.graceful_timeout = STOP_GRACE
    config.backlog = BACKLOG
    config.include_server_header = False
    return config


class _Wsgi(WSGIWrapper):  # type: ignore[misc]
    """hypercorn's WSGI bridge, answering an oversized body with 413 and a message.

    It also starts a response that has no body (HEAD, 204, 304), and drops the app's copies
    of the headers the server sends itself. At most :data:`MAX_STORES` STOW-RS uploads run at
    once (503 beyond), so uploads cannot take every worker thread from the viewer.
    """

    stores = 0

    async def handle_http(
        self,
        scope: HTTPScope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        if len(scope["raw_path"]) + len(scope["query_string"]) > MAX_HEADER_BYTES:
            await _refuse(send, 414, _TARGET_TOO_LONG)
            return
        if _header_bytes(scope) > MAX_HEADER_BYTES:  # h11 checks only a header that arrives in pieces
            await _refuse(send, 431, _HEADER_TOO_LARGE)
            return
        if is_stow_request(scope["method"], scope["path"]):  # a body that may be gigabytes streams in
            await self._store(scope, receive, send, sync_spawn, call_soon)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        body = bytearray()
        while int(declared) <= self.max_body_size and len(body) <= self.max_body_size:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        if int(declared) > self.max_body_size or len(body) > self.max_body_size:
            await _refuse(send, 413, _BODY_TOO_LARGE)
            return
        schedule = _scheduler(asyncio.get_running_loop())
        await super().handle_http(scope, _replay(bytes(body)), send, sync_spawn, schedule)

    async def _store(
        self,
        scope: HTTPScope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> None:
        if self.stores >= MAX_STORES:
            await _refuse(send, 503, _STORES_BUSY)
            return
        self.stores += 1
        try:
            schedule = _scheduler(asyncio.get_running_loop())
            await sync_spawn(self.run_app, _streamed_environ(scope, receive), partial(schedule, send))
        finally:
            self.stores -= 1
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def run_app(self, environ: dict[str, Any], send: Callable[[dict[str, Any]], Future[None]]) -> None:
        """Run the app on this worker thread; `send` schedules a message on the event loop.

        The body goes out in writes of about :data:`WRITE_BYTES` (:func:`_coalesced`), and the
        next one is read and prepared while the one before is still being sent: at most
        :data:`WRITES_IN_FLIGHT` are scheduled at once, so memory stays bounded.
        """
        started: list[dict[str, Any]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            kept = [
                (n.lower().encode("latin-1"), v.encode("latin-1"))
                for n, v in headers
                if n.lower() not in _OWN
            ]
            started[:] = [
                {"type": "http.response.start", "status": int(status.split(" ", 1)[0]), "headers": kept}
            ]

        body = self.app(environ, start_response)
        in_flight: deque[Future[None]] = deque()
        try:
            for chunk in _coalesced(body):
                if not in_flight:
                    in_flight.append(send(started[0]))
                in_flight.append(send({"type": "http.response.body", "body": chunk, "more_body": True}))
                while len(in_flight) > WRITES_IN_FLIGHT:
                    in_flight.popleft().result()
            if not in_flight:
                in_flight.append(send(started[0]))
        finally:
            while in_flight:
                in_flight.popleft().result()
            if hasattr(body, "close"):
                body.close()


def _coalesced(body: Iterable[bytes]) -> Iterator[bytes]:
    """The non-empty chunks of `body` gathered into pieces of at least :data:`WRITE_BYTES` (the last
    may be smaller): a multipart answer's small part headers travel with the content they precede.
    """
    held: list[bytes] = []
    size = 0
    for chunk in body:
        if not chunk:
            continue
        held.append(chunk)
        size += len(chunk)
        if size >= WRITE_BYTES:
            yield held[0] if len(held) == 1 else b"".join(held)
            held, size = [], 0
    if held:
        yield b"".join(held)


def _scheduler(loop: asyncio.AbstractEventLoop) -> Callable[..., Future[Any]]:
    """hypercorn's ``call_soon`` for :meth:`_Wsgi.run_app` that does not wait: the coroutine is
    scheduled on `loop` and its future returned. Coroutines run in the order they are scheduled.
    """

    def schedule(func: Callable[..., Any], *args: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(func(*args), loop)

    return schedule


def _streamed_environ(scope: HTTPScope, receive: ASGIReceiveCallable) -> dict[str, Any]:
    """The WSGI environ of a request whose body the app reads as it comes (see :mod:`.streamed_body`)."""
    environ: dict[str, Any] = _build_environ(scope, b"")
    environ["wsgi.input"] = StreamedBody(receive, asyncio.get_running_loop())
    environ["wsgi.input_terminated"] = True
    return environ


def _header_bytes(scope: HTTPScope) -> int:
    """The size of the request line and header fields as they came in (give or take separators)."""
    line = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 16
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def _refuse(send: ASGISendCallable, status: int, message: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(message)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": message, "more_body": False})


def _replay(body: bytes) -> ASGIReceiveCallable:
    """A receive callable that hands over the already read `body` as one message."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _listening_socket(bind: str, port: int) -> socket.socket:
    """The web port; accepted sockets inherit TCP_NODELAY from it.

    Without it, a response whose head and body go out in two writes waits for the
    client's delayed ACK (40 ms on Linux) before its body leaves.
    """
    sock = listening_socket(bind, port, backlog=BACKLOG)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class WebServer:
    """The HTTPS web viewer of one archive: start it, let it run, stop it."""

    def __init__(self, pacs: Context) -> None:
        settings = pacs.settings
        config = WebConfig(
            secret_key=pacs.keyring.derive(_SECRET_PURPOSE, version=1),
            session_idle=timedelta(minutes=settings.web.session_idle_minutes),
            session_absolute=timedelta(hours=settings.web.session_absolute_hours),
            max_frame_bytes=settings.web.max_frame_mb * 2**20,
            object_cache_bytes=settings.web.object_cache_mb * 2**20,
            frame_cache_bytes=settings.web.frame_cache_mb * 2**20,
            metadata_cache_bytes=settings.web.metadata_cache_mb * 2**20,
            token_networks=networks_of(settings.web.token_networks),
            cors_origins=settings.web.cors_origins,
            routes=settings.routes,
            relying_party=RelyingParty.of(settings.server.hostname, settings.web.port),
            require_passkey=settings.web.require_passkey,
            networks=WebNetworks.of(settings.web.allowed_networks, settings.web.trusted_proxies),
        )
        self.app = create_app(
            config,
            archive=pacs.archive,
            accounts=Accounts(pacs.database, pacs.keyring, audit=pacs.audit),
            audit=pacs.audit,
            database=pacs.database,
            admin=PacsAdmin(pacs),
        )
        assessment_page.attach(self.app, ReportDesk(pacs))
        self._bind = (settings.web.bind, settings.web.port)
        self._config = server_config(str(settings.tls_dir / SERVER_CERT), str(settings.key_dir / SERVER_KEY))
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        """Bind the port and serve in a background thread."""
        self._config.create_ssl_context()  # an unusable certificate or key fails here, not in the thread
        self._socket = _listening_socket(*self._bind)
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="https", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=REQUEST_TIMEOUT)

    async def _serve(self) -> None:
        assert self._socket is not None
        self._loop = asyncio.get_running_loop()
        self._loop.set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="https"))
        self._stopping = asyncio.Event()
        self._ready.set()
        sockets = Sockets(secure_sockets=[self._socket], insecure_sockets=[], quic_sockets=[])
        app = _Wsgi(self.app, MAX_BODY_BYTES)
        await worker_serve(app, self._config, sockets=sockets, shutdown_trigger=self._stopping.wait)

    @property
    def port(self) -> int:
        """The port the server is bound to."""
        assert self._socket is not None, "start() binds the port"
        return int(self._socket.getsockname()[1])

    def stop(self) -> None:
        """Stop accepting, finish the requests in flight (for up to :data:`STOP_GRACE` s), then close."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE + REQUEST_TIMEOUT)
        if self._socket is not None:
            self._socket.close()
