"""HTTP clients for ``bench/web_viewer.py``: HTTPS with a cookie and Flask's test client behind one
interface, the login a person goes through, and ``pacs serve`` on free ports of 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import socket
import ssl
import subprocess
import time
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

import pyotp
from flask import Flask

from bench.common import free_port
from bench.dicom_servers import BenchError, pacs_command, server_process
from pacs.core.accounts import Accounts
from pacs.core.context import Context

ROLES = frozenset({"physician"})
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TOTP_KEY = re.compile(r'id="totp-key">([^<]+)<')


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    ms: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


class Client(Protocol):
    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Reply: ...


def get(client: Client, path: str) -> Reply:
    return client.request("GET", path)


def post_form(client: Client, path: str, form: dict[str, str]) -> Reply:
    return client.request("POST", path, urlencode(form).encode(), "application/x-www-form-urlencoded")


class HttpsClient:
    """One keep-alive HTTPS connection that keeps cookies (reconnects if the server closed it).

    Without `cafile` it speaks plain HTTP (Orthanc, when its HTTPS does not work).
    """

    def __init__(
        self, host: str, port: int, cafile: Path | None, *, basic_auth: tuple[str, str] | None = None
    ) -> None:
        self.host, self.port = host, port
        self.context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
        self.cookies: dict[str, str] = {}
        self.auth = "Basic " + b64encode(":".join(basic_auth).encode()).decode() if basic_auth else ""
        self.connection: http.client.HTTPConnection | None = None
        self.connects = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.connection is None:
            if self.context is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            else:
                self.connection = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=60
                )
            self.connection.connect()
            self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Reply:
        headers = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if content_type:
            headers["Content-Type"] = content_type
        if self.auth:
            headers["Authorization"] = self.auth
        for attempt in (1, 2):
            connection = self._connection()  # a (re)connection is not part of the timed request
            try:
                began = time.perf_counter()
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                elapsed = (time.perf_counter() - began) * 1000
                break
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                self.close()
                if attempt == 2:
                    raise
        if response.will_close:
            self.close()
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in cookie.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)
        return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, data, elapsed)


class LocalClient:
    """Flask's test client on the application object: no TLS, no HTTP, no sockets."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()
        self.client.environ_base["wsgi.url_scheme"] = "https"

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Reply:
        began = time.perf_counter()
        response = self.client.open(path, method=method, data=body, content_type=content_type or None)
        data = response.get_data()
        elapsed = (time.perf_counter() - began) * 1000
        return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, data, elapsed)


def _csrf(reply: Reply, what: str) -> str:
    match = _CSRF.search(reply.text)
    if reply.status != 200 or not match:
        raise BenchError(f"{what}: HTTP {reply.status}, no CSRF token")
    return match.group(1)


def new_user(pacs: Context, purpose: str) -> tuple[str, str]:
    """A new physician account (name, one-time password)."""
    name = f"bench-{purpose}-{secrets.token_hex(3)}"
    _, password = Accounts(pacs.database, pacs.keyring, audit=pacs.audit).add(name, ROLES)
    return name, password


def login(client: Client, name: str, password: str) -> None:
    """Password, TOTP enrolment (key from #totp-key) and the forced password change."""
    token = _csrf(get(client, "/login"), "GET /login")
    reply = post_form(client, "/login", {"username": name, "password": password, "csrf_token": token})
    if reply.status != 302 or not reply.location.endswith("/login/enrol"):
        raise BenchError(f"password step: HTTP {reply.status} to {reply.location!r}")
    page = get(client, "/login/enrol")
    key = _TOTP_KEY.search(page.text)
    if key is None:
        raise BenchError("enrolment page without #totp-key")
    code = pyotp.TOTP(key.group(1).replace(" ", "")).now()
    reply = post_form(client, "/login/enrol", {"code": code, "csrf_token": _csrf(page, "GET /login/enrol")})
    if reply.status != 200:
        raise BenchError(f"TOTP enrolment: HTTP {reply.status} to {reply.location!r}")
    page = get(client, "/account/password")
    new = f"bench {secrets.token_hex(6)} lantern harbour"
    form = {"new": new, "again": new, "csrf_token": _csrf(page, "GET /account/password")}
    reply = post_form(client, "/account/password", form)
    if reply.status != 302:
        raise BenchError(f"password change: HTTP {reply.status}")
    if get(client, "/").status != 200:
        raise BenchError("the study list does not answer 200 after the login")


# ---------------------------------------------------------------------------
# pacs serve
# ---------------------------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    cafile: Path

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> HttpsClient:
        return HttpsClient("127.0.0.1", self.port, self.cafile)


@contextmanager
def pacs_serve(pacs: Context, log: Path) -> Iterator[Served]:
    """``pacs serve`` on the archive of `pacs`, both listeners on free ports of 127.0.0.1."""
    web_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PACS_")},
        "PACS_DICOM_PORT": str(free_port()),
        "PACS_DICOM_BIND": "127.0.0.1",
        "PACS_WEB_PORT": str(web_port),
        "PACS_WEB_BIND": "127.0.0.1",
    }
    command = [*pacs_command(), "serve", "--data", str(pacs.settings.data_dir)]
    with server_process(command, log, port=web_port, env=env, ready_text="web viewer on") as proc:
        yield Served(proc, web_port, pacs.settings.tls_dir / "ca.crt")
