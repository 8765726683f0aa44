"""The HTTPS server of ``pacs serve`` against floods and malformed requests, with real peers.

One ``pacs serve`` runs for the module (:mod:`tests.web.viewer_live`: one process, one study,
one physician with TOTP).
Floods are raw TCP connections that send nothing and TLS connections that send half of a
real ClientHello (made by :mod:`ssl` itself) and then nothing; a :class:`Flood` keeps its
count open (reopening what the server drops) for a bounded time. While one is held, a plain
``GET /login`` over verified TLS must answer within :data:`REQUEST_TIMEOUT`, and headless
Chromium must log in and load the study list (its pages watched: a console error fails the
test). The server's own refusals (a bad request
line, an oversized header, a bad Content-Length, a body over the limit) must carry the
same security headers as the app's pages. No wall-clock time is asserted: timeouts only
bound how long a test may wait.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from pacs.core.context import Context
from pacs.serve.https import _listening_socket
from tests.data.make_series import make_ct_series
from tests.web.browser import log_in
from tests.web.viewer_live import Live, serve_archive, watched_page
from webviewer.security import CSP

READER = "reader"
REQUEST_TIMEOUT = 10.0  # how long a doctor's browser or a plain client waits for an answer
FLOOD_SECONDS = 60.0  # no flood outlives this, whatever the test does
IDLE_CONNECTIONS = 300
PARTIAL_HELLOS = 60
HEADER_LIMIT = 16 * 1024
BODY_LIMIT = 64 * 1024
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[str]]:
    """The server, with one study (its UID seeded) and one physician."""
    root = tmp_path_factory.mktemp("webserver")

    def seed(pacs: Context) -> str:
        series = make_ct_series(root / "ct", slices=2, rows=64, columns=64, patient_name="FLOOD^FIONA")
        study_uid = pacs.archive.store(series[0]).study_uid
        pacs.archive.store(series[1])
        return study_uid

    with serve_archive(root, seed, [READER]) as running:
        yield running


# -- the attackers ---------------------------------------------------------------------------------


def half_a_client_hello(context: ssl.SSLContext) -> bytes:
    """The first half of the ClientHello `context` sends to localhost (TLS record header included)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16 and len(hello) > 100, "not a TLS handshake record"
    return hello[: len(hello) // 2]


class Flood:
    """`count` connections to `port` that send `opening` and then wait; what the server drops is reopened.

    It stops on leaving the ``with`` block or after :data:`FLOOD_SECONDS`, whichever is first,
    and never opens more than ten times `count` connections in all.
    """

    def __init__(self, port: int, count: int, opening: bytes = b"") -> None:
        self.port, self.count, self.opening = port, count, opening
        self.sockets: list[socket.socket] = []
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, name="flood", daemon=True)
        self._deadline = time.monotonic() + FLOOD_SECONDS

    def _open(self) -> None:
        if self.opened >= 10 * self.count or time.monotonic() > self._deadline:
            return
        self.opened += 1
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT)
        if self.opening:
            sock.sendall(self.opening)
        self.sockets.append(sock)

    def _hold(self) -> None:
        while not self._stop.wait(0.2) and time.monotonic() < self._deadline:
            dropped, _, _ = select.select(self.sockets, [], [], 0)
            for sock in dropped:
                self.sockets.remove(sock)
                sock.close()
                with contextlib.suppress(OSError):
                    self._open()

    def __enter__(self) -> Flood:
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT)
        for sock in self.sockets:
            sock.close()


@contextlib.contextmanager
def web_flood(live: Live[str]) -> Iterator[tuple[Flood, Flood]]:
    """300 idle TCP connections and 60 half ClientHellos, held together."""
    hello = half_a_client_hello(live.tls())
    with Flood(live.port, IDLE_CONNECTIONS) as idle, Flood(live.port, PARTIAL_HELLOS, hello) as hellos:
        assert idle.opened >= IDLE_CONNECTIONS and hellos.opened >= PARTIAL_HELLOS
        yield idle, hellos


def get_login(live: Live[str]) -> int | str:
    """The status of ``GET /login`` over verified TLS, or why there was none within the timeout."""
    connection = http.client.HTTPSConnection(
        "localhost", live.port, context=live.tls(), timeout=REQUEST_TIMEOUT
    )
    try:
        connection.request("GET", "/login")
        answer = connection.getresponse()
        return answer.status if b"Log in" in answer.read() else f"{answer.status} without the login form"
    except OSError as exc:  # TimeoutError, ssl.SSLError and ConnectionError included
        return f"no answer: {exc!r}"
    finally:
        connection.close()


def raw_exchange(live: Live[str], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is over verified TLS; the status, headers and body the server answers."""
    with (
        socket.create_connection(("127.0.0.1", live.port), timeout=REQUEST_TIMEOUT) as plain,
        live.tls().wrap_socket(plain, server_hostname="localhost") as tls,
    ):
        tls.sendall(request)
        answer = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := tls.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), f"no HTTP answer: {answer[:200]!r}"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"{name} sent twice"
        headers[name.lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


# -- floods ----------------------------------------------------------------------------------------


def test_login_page_answers_while_300_idle_tcp_connections_are_held(live: Live[str]) -> None:
    with Flood(live.port, IDLE_CONNECTIONS) as idle:
        assert len(idle.sockets) == IDLE_CONNECTIONS
        assert get_login(live) == 200


def test_login_page_answers_while_60_half_client_hellos_are_held(live: Live[str]) -> None:
    with Flood(live.port, PARTIAL_HELLOS, half_a_client_hello(live.tls())) as hellos:
        assert len(hellos.sockets) == PARTIAL_HELLOS
        assert get_login(live) == 200


def log_in_with(page: Page, live: Live[str], code: str) -> None:
    """The reader logs in with `code` and sees the study in the list."""
    reader = live.readers[READER]
    log_in(page, reader.name, reader.password, lambda: code)
    expect(page.locator(f'#studies tr[data-study="{live.seeded}"]')).to_be_visible()


def test_chromium_logs_in_and_loads_the_study_list_during_the_web_flood(
    browser: Browser, live: Live[str]
) -> None:
    totp = live.readers[READER].totp
    with watched_page(browser, live) as before, watched_page(browser, live) as during:
        log_in_with(before, live, totp.now())
        with web_flood(live):
            before.reload()  # a doctor who logged in before the flood goes on working
            expect(before.locator(f'#studies tr[data-study="{live.seeded}"]')).to_be_visible()
            # One who logs in during it gets in (with the next step's code: each code is accepted once).
            log_in_with(during, live, totp.at(time.time() + 30))
            assert get_login(live) == 200


def test_connections_that_never_complete_a_handshake_or_a_request_are_closed_by_the_server(
    live: Live[str],
) -> None:
    silent = socket.create_connection(("127.0.0.1", live.port), timeout=REQUEST_TIMEOUT)
    half_hello = socket.create_connection(("127.0.0.1", live.port), timeout=REQUEST_TIMEOUT)
    half_hello.sendall(half_a_client_hello(live.tls()))
    plain = socket.create_connection(("127.0.0.1", live.port), timeout=REQUEST_TIMEOUT)
    half_request = live.tls().wrap_socket(plain, server_hostname="localhost")
    half_request.sendall(b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    waiting = [silent, half_hello, half_request]
    deadline = time.monotonic() + 3 * REQUEST_TIMEOUT
    try:
        while waiting and time.monotonic() < deadline:
            closed, _, _ = select.select(waiting, [], [], 1.0)
            for sock in closed:
                with contextlib.suppress(OSError):
                    last = sock.recv(4096)  # the end of the stream, or a 408 before it
                    assert last == b"" or last.startswith(b"HTTP/1.1 408 "), last
                waiting.remove(sock)
        assert waiting == [], f"{len(waiting)} of 3 stalled connections still open"
    finally:
        for sock in (silent, half_hello, half_request):
            sock.close()


# -- the server's own answers ----------------------------------------------------------------------

_HOST = b"Host: localhost\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "statuses"),
    [
        pytest.param(b"NOT AN HTTP REQUEST LINE\r\n\r\n", {400}, id="bad-request-line"),
        pytest.param(
            b"GET /login HTTP/1.1\r\n" + _HOST + b"X-Big: " + b"a" * (HEADER_LIMIT + 1024) + b"\r\n\r\n",
            {400, 413, 431},
            id="oversized-header",
        ),
        pytest.param(
            b"POST /login HTTP/1.1\r\n" + _HOST + b"Content-Length: eleven\r\n\r\n", {400}, id="bad-length"
        ),
        pytest.param(
            b"POST /login HTTP/1.1\r\n" + _HOST + b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(BODY_LIMIT + 1).encode() + b"\r\n\r\n",
            {413},
            id="body-too-large",
        ),
    ],
)
def test_the_servers_own_refusals_carry_the_security_headers(
    live: Live[str], request_bytes: bytes, statuses: set[int]
) -> None:
    status, headers, _ = raw_exchange(live, request_bytes)
    assert status in statuses
    missing = {name: value for name, value in SECURITY_HEADERS.items() if headers.get(name) != value}
    assert missing == {}, f"{status} lacks or alters {sorted(missing)}: {headers}"


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        pytest.param(
            b"POST /login HTTP/1.1\r\n" + _HOST + b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(BODY_LIMIT + 1).encode() + b"\r\n\r\n",
            413,
            b"Request body too large",
            id="body",
        ),
        pytest.param(
            b"GET /login HTTP/1.1\r\n" + _HOST + b"X-Big: " + b"a" * (HEADER_LIMIT + 1024) + b"\r\n\r\n",
            431,
            b"Request header too large",
            id="header",
        ),
    ],
)
def test_a_request_over_a_limit_is_refused_with_a_message(
    live: Live[str], request_bytes: bytes, status: int, message: bytes
) -> None:
    answer, headers, body = raw_exchange(live, request_bytes)
    assert (answer, headers["content-type"]) == (status, "text/plain; charset=utf-8")
    assert body.startswith(message)


def test_requests_within_the_limits_reach_the_app_with_each_header_once(live: Live[str]) -> None:
    big_header = b"X-Big: " + b"a" * (HEADER_LIMIT - 2048) + b"\r\n"
    status, headers, body = raw_exchange(
        live, b"GET /login HTTP/1.1\r\n" + _HOST + big_header + b"Connection: close\r\n\r\n"
    )
    assert status == 200 and b"Log in" in body
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    form = b"username=reader&password=" + b"p" * (BODY_LIMIT - 1024)
    status, _, body = raw_exchange(
        live,
        b"POST /login HTTP/1.1\r\n" + _HOST + b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\nConnection: close\r\n\r\n" + form,
    )
    assert status == 400 and b"CSRF" in body  # the app's own answer: the form carried no token


def test_static_files_and_answers_without_a_body_carry_each_header_once(live: Live[str]) -> None:
    close = b"Connection: close\r\n\r\n"
    status, headers, script = raw_exchange(live, b"GET /static/viewer.js HTTP/1.1\r\n" + _HOST + close)
    assert status == 200 and len(script) == int(headers["content-length"]) > 0
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    revalidate = f"If-None-Match: {headers['etag']}\r\n".encode()
    status, headers, body = raw_exchange(
        live, b"GET /static/viewer.js HTTP/1.1\r\n" + _HOST + revalidate + close
    )
    assert (status, body) == (304, b"")
    status, headers, body = raw_exchange(live, b"HEAD /login HTTP/1.1\r\n" + _HOST + close)
    assert (status, body) == (200, b"")
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


def test_accepted_connections_send_without_waiting_for_the_clients_delayed_ack() -> None:
    """TCP_NODELAY, inherited from the web port: a body written after its head leaves at once."""
    with _listening_socket("127.0.0.1", 0) as port:
        port.setblocking(True)
        with socket.create_connection(port.getsockname()[:2]) as _client:
            accepted, _ = port.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
