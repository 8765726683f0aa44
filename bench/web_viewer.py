"""Web viewer: frame latency, first image and scrolling in Chromium, and study-list search.

What is measured
----------------
Per index backend (encrypted SQLite and/or PostgreSQL, ``--db``), a fresh archive is made
with ``bench/index_query.py``'s ``fresh_archive`` (a new ``bench_<random>`` database on the
local PostgreSQL server, dropped at the end) and filled with its synthetic index of
``--studies`` studies (default 100,000; PostgreSQL is ANALYZEd afterwards, SQLite left as
the application leaves it). A synthetic CT series (default 500 slices of 512x512 int16,
``tests/data/make_series.py``) is stored with ``Archive.store``. Then ``pacs serve`` runs
as a subprocess (its defaults: one DICOM worker per core and one web worker process) with
both listeners on free ports of 127.0.0.1. Every user below is a new physician account,
logged in with password, TOTP enrolment and the forced password change, as a person would.

1. Frames. Over HTTPS (``http.client``, one keep-alive connection, the CA of the data
   directory trusted, the ``__Host-pacs`` session cookie kept), right after ``pacs serve``
   started: every frame ``/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1``
   once in slice order ("cold": decrypt, parse and decode, the server's caches empty; the
   blobs are in the OS page cache, as just written) and then once more ("warm": from the
   server's decoded-frame cache). Per request the time from sending it to having read the
   whole body; p50/p95/max, and the server's CPU time per request (process tree, /proc).
   The same two passes with Flask's test client in this process (``WebServer(pacs).app``,
   fresh caches), which leaves out TLS, HTTP and the network: the application's own time.
   Then the requests the viewer makes before its first image (viewer page, viewer.js,
   series list, instance list, a cached frame), 20 times each, over HTTPS and in-process;
   and the memory (VmRSS, VmHWM) of ``pacs serve``'s web worker after the frame passes.
   Orthanc (Debian's package, if installed and we are root; ``--skip-orthanc``): it cannot
   listen on loopback only, so, as in ``bench/dicom_ingest.py`` (whose namespace code is
   reused), it runs in a network namespace behind a veth pair, with HTTP basic
   authentication and HTTPS (a certificate from a throwaway CA) if its HTTPS works, else
   plain HTTP (Debian's 1.10.1 crashes on the first HTTPS request on Debian 12; the note
   says which). The same CT is uploaded with ``POST /instances``, Orthanc is restarted,
   and ``/instances/{id}/preview`` (an 8-bit PNG) is timed for every slice twice (first
   after the restart, then again).
2. Browser. Headless Chromium (Playwright, ``/usr/bin/chromium``), a new context holding
   the session cookie of a fresh login, against a freshly started ``pacs serve``:
   ``page.goto`` of the study's viewer page until ``window.viewerState.ready``. Reported:
   ``viewerState.firstImageMs`` (from the viewer script's start) and the time from
   navigation start (``performance.now()`` at the moment ``ready`` is set, caught by an
   init script; ``performance.timeOrigin`` is navigation start), with the page's resource
   timings (HTML, series list, instance list, first frame). Then, cold (frames not yet
   in the browser, the server's caches as cold as the prefetcher left them): ArrowDown
   is dispatched as soon as the current slice has been drawn (a new ``putImageData`` on
   the viewer's image canvas, counted by the init script), through all slices: slices
   shown per second. Once the prefetch has finished (``viewerState.inFlight === 0`` and
   every frame fetched), back to the first slice, and one ArrowDown per animation frame
   from a ``requestAnimationFrame`` loop inside the page: ``framesDrawn`` per second of
   wall time, the animation frames per second the browser ran (the ceiling: headless
   Chromium runs them at ~60 Hz), the time the viewer's ``draw()`` took per slice (an upper
   bound: how far into the animation frame our later callback started), the longest gap
   between two animation frames and the number of gaps over 20 ms. Last, the viewer is
   opened again in a new context (server caches warm) for a second first-image time.
3. Study-list search: the web endpoint ``/`` with query arguments as the search form
   sends them, over HTTPS with a logged-in session: a name prefix (``name=SMI``, the first
   letters of a surname in the index), an exact patient ID, a one-month date range, a
   modality (``modality=CT``, etc.) and the newest page without criteria; ``--searches``
   timed requests each (default 100, after 5 untimed). The same searches through the
   Flask test client in this process, and bare ``Archive.find("STUDY", ..., limit=51)``
   with the identifier the view builds, so that HTTP and page (audit, template) overhead
   can be told apart from the index query.

``--repeat N`` does the measurements (not the fill) N times, each with fresh server
processes; latencies are pooled, single figures reported as median (min..max).

Targets (from the issue): frame request p50 <= 10 ms (Orthanc's preview takes ~30 ms
there); first image < 300 ms; scrolling >= 60 slices/s (Orthanc's previews manage
~24/s); study-list search p95 < 50 ms. The script only prints figures; it never asserts.
Other work on the machine makes the figures noisy; the CPU count and load are printed.

Run: ``.venv/bin/python bench/web_viewer.py [--slices N] [--studies N]
[--db sqlite|postgresql|both] [--skip-browser] [--skip-orthanc] [--repeat N]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from base64 import b64encode
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(ROOT))

import pyotp  # noqa: E402
from flask import Flask  # noqa: E402

from bench.dicom_ingest import (  # noqa: E402
    NETNS,
    NS_ADDR,
    ORTHANC,
    BenchError,
    BenchPki,
    cpu_seconds,
    free_port,
    make_pki,
    network_namespace,
    orthanc_unavailable,
    orthanc_version,
    pacs_command,
    process_tree,
    server_process,
)
from bench.index_query import (  # noqa: E402
    FIRST_DAY,
    MODALITIES,
    PG_SERVER,
    Corpus,
    analyze,
    fill_index,
    fresh_archive,
    percentile,
)
from pacs.core.accounts import Accounts  # noqa: E402
from pacs.core.context import Pacs  # noqa: E402
from pacs.serve.https import WebServer  # noqa: E402
from webviewer.sessions import COOKIE  # noqa: E402
from webviewer.studies import Search  # noqa: E402
from webviewer.studies import identifier as study_identifier  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ORTHANC_HTTP_PORT = 8042
TARGET_FRAME_P50_MS = 10.0
TARGET_FIRST_IMAGE_MS = 300.0
TARGET_FPS = 60.0
TARGET_SEARCH_P95_MS = 50.0
PAGE_SIZE = 50  # WebConfig.page_size: the view asks find() for one more
ROLES = frozenset({"physician"})
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TOTP_KEY = re.compile(r'id="totp-key">([^<]+)<')
_ROW = re.compile(r'<tr data-study="')


# ---------------------------------------------------------------------------
# HTTP clients: HTTPS with a cookie, and Flask's test client, behind one interface
# ---------------------------------------------------------------------------


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


def new_user(pacs: Pacs, purpose: str) -> tuple[str, str]:
    """A new physician account (name, one-time password)."""
    name = f"bench-{purpose}-{secrets.token_hex(3)}"
    _, password = Accounts(pacs.database, pacs.keyring).add(name, ROLES)
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
def pacs_serve(pacs: Pacs, log: Path) -> Iterator[Served]:
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


# ---------------------------------------------------------------------------
# 1. Frames
# ---------------------------------------------------------------------------


@dataclass
class Latencies:
    """Request latencies (ms) of one kind, pooled over repeats, with the server CPU they cost."""

    label: str
    ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_known: bool = False
    nbytes: list[int] = field(default_factory=list)
    failed: str = ""


def frame_paths(pacs: Pacs, study_uid: str) -> list[str]:
    return [
        f"/dicomweb/studies/{study_uid}/series/{info.series_uid}/instances/{info.sop_uid}/frames/1"
        for info in pacs.archive.study_instances(study_uid)
    ]


def time_frames(client: Client, paths: Sequence[str], into: Latencies, pid: int | None = None) -> None:
    """GET every path once, in order; check each is a whole frame."""
    cpu = cpu_seconds(pid) if pid else 0.0
    for path in paths:
        reply = get(client, path)
        expected = int(reply.headers.get("x-rows", 0)) * int(reply.headers.get("x-columns", 0)) * 2
        if reply.status != 200 or len(reply.body) != expected:
            raise BenchError(
                f"frame request: HTTP {reply.status}, {len(reply.body)} bytes (expected {expected})"
            )
        into.ms.append(reply.ms)
        into.nbytes.append(len(reply.body))
    if pid:
        into.cpu_s += cpu_seconds(pid) - cpu
        into.cpu_known = True


def chain_paths(pacs: Pacs, study_uid: str, first_frame: str) -> list[tuple[str, str]]:
    """The requests between opening the viewer and its first image, in the order it makes them."""
    instances = pacs.archive.study_instances(study_uid)
    series = f"/dicomweb/studies/{study_uid}/series"
    return [
        ("viewer page", f"/studies/{study_uid}"),
        ("viewer.js (static)", "/static/viewer.js"),
        ("series list", series),
        (f"instance list ({len(instances)})", f"{series}/{instances[0].series_uid}/instances"),
        ("frame 1 (cached)", first_frame),
    ]


def time_chain(
    client: Client, chain: Sequence[tuple[str, str]], into: dict[str, dict[str, list[float]]], kind: str
) -> None:
    """Each request of the first-image chain 20 times (after 2 untimed), one after the other."""
    for label, path in chain:
        times = into.setdefault(label, {}).setdefault(kind, [])
        for iteration in range(22):
            reply = get(client, path)
            if reply.status != 200:
                raise BenchError(f"{label}: HTTP {reply.status}")
            if iteration >= 2:
                times.append(reply.ms)


def web_worker_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (MB) of the web worker of ``pacs serve`` (of `pid` itself if it has none)."""
    worker = pid
    for member in process_tree(pid)[1:]:
        with suppress(OSError):
            if Path(f"/proc/{member}/comm").read_text().strip() == "pacs-web":
                worker = member
    fields = {}
    for line in Path(f"/proc/{worker}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


# ---------------------------------------------------------------------------
# Orthanc: /instances/{id}/preview, in the network namespace of bench/dicom_ingest.py
# ---------------------------------------------------------------------------


def orthanc_config(home: Path, certs: BenchPki, password: str, *, tls: bool) -> Path:
    pem = home / "https.pem"  # Orthanc wants the certificate and its key in one PEM file
    pem.write_text(certs.server.cert.read_text() + certs.server.key.read_text())
    pem.chmod(0o600)
    config = {
        "Name": "pacs-bench",
        "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "index"),
        "StorageCompression": False,
        "Plugins": [],
        "LuaScripts": [],
        "DicomServerEnabled": False,
        "HttpServerEnabled": True,
        "HttpPort": ORTHANC_HTTP_PORT,
        "SslEnabled": tls,
        "SslCertificate": str(pem),
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {"bench": password},
        "KeepAlive": True,
        "TcpNoDelay": True,
    }
    path = home / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def orthanc_previews(workdir: Path, files: Sequence[Path], certs: BenchPki, passes: list[Latencies]) -> str:
    """Upload `files` to a fresh Orthanc, restart it, time every preview once per pass.

    HTTPS if Orthanc's works, else plain HTTP. Returns what was run, for the notes.
    """
    home = Path(tempfile.mkdtemp(prefix="orthanc-", dir=workdir))
    try:
        password = secrets.token_urlsafe(12)
        auth = ("bench", password)
        env = dict(os.environ)
        ids: list[str] = []
        scheme = "HTTPS"
        for tls in (True, False):
            config = orthanc_config(home, certs, password, tls=tls)
            command = ["ip", "netns", "exec", NETNS, ORTHANC, str(config)]
            cafile = certs.server.ca if tls else None
            log = home / "orthanc-load.log"
            with server_process(command, log, port=ORTHANC_HTTP_PORT, env=env) as proc:
                client = HttpsClient(NS_ADDR, ORTHANC_HTTP_PORT, cafile, basic_auth=auth)
                try:
                    get(client, "/system")
                except (OSError, http.client.HTTPException) as exc:
                    if not tls:
                        raise
                    with suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=5)
                    how = f"Orthanc exited with {proc.returncode}" if proc.returncode is not None else exc
                    scheme = f"plain HTTP, as its HTTPS failed on the first request ({how})"
                    continue
                for path in files:
                    reply = client.request("POST", "/instances", path.read_bytes(), "application/dicom")
                    if reply.status != 200:
                        raise BenchError(f"Orthanc POST /instances: HTTP {reply.status} {reply.text[:200]}")
                    ids.append(json.loads(reply.body)["ID"])
                client.close()
            break
        with server_process(command, home / "orthanc.log", port=ORTHANC_HTTP_PORT, env=env) as proc:
            client = HttpsClient(NS_ADDR, ORTHANC_HTTP_PORT, cafile, basic_auth=auth)
            for latencies in passes:
                cpu = cpu_seconds(proc.pid)
                for instance in ids:
                    reply = get(client, f"/instances/{instance}/preview")
                    if reply.status != 200 or reply.headers.get("content-type") != "image/png":
                        raise BenchError(f"Orthanc preview: HTTP {reply.status}")
                    latencies.ms.append(reply.ms)
                    latencies.nbytes.append(len(reply.body))
                latencies.cpu_s += cpu_seconds(proc.pid) - cpu
                latencies.cpu_known = True
            client.close()
        return scheme
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------
# 2. The viewer in headless Chromium
# ---------------------------------------------------------------------------

# Runs before the viewer's script: notes performance.now() (ms since navigation start)
# when viewerState.ready becomes true, and counts putImageData calls on the canvas the
# viewer draws onto #viewport, i.e. new images rendered (not mere re-composites).
INIT_SCRIPT = """
(() => {
  const marks = { readyAt: null, puts: 0, canvas: null };
  window.__bench = marks;
  let state;
  Object.defineProperty(window, "viewerState", {
    configurable: true,
    get() { return state; },
    set(value) {
      state = value;
      let ready = value.ready;
      Object.defineProperty(value, "ready", {
        configurable: true,
        enumerable: true,
        get() { return ready; },
        set(flag) {
          if (flag && !ready) marks.readyAt = performance.now();
          ready = flag;
        },
      });
    },
  });
  const proto = CanvasRenderingContext2D.prototype;
  const put = proto.putImageData;
  proto.putImageData = function (...args) {
    if (marks.canvas !== null && this.canvas === marks.canvas) marks.puts += 1;
    return put.apply(this, args);
  };
  const drawImage = proto.drawImage;
  proto.drawImage = function (source, ...rest) {
    if (this.canvas.id === "viewport") marks.canvas = source;
    return drawImage.call(this, source, ...rest);
  };
})();
"""

TIMINGS_JS = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  const end = (test) => {
    const entry = resources.find((r) => test(new URL(r.name).pathname));
    return entry ? entry.responseEnd : null;
  };
  const s = window.viewerState;
  const error = document.getElementById("viewer-error");
  return {
    readyAt: window.__bench.readyAt,
    firstImageMs: s.firstImageMs,
    connect: nav.connectEnd - nav.connectStart,
    htmlWait: nav.responseStart - nav.requestStart,
    html: nav.responseEnd,
    script: end((p) => p.endsWith("/viewer.js")),
    series: end((p) => p.endsWith("/series")),
    instances: end((p) => p.endsWith("/instances")),
    frame: end((p) => p.includes("/frames/")),
    error: error.hidden ? "" : error.textContent,
  };
}
"""

# Cold: ArrowDown as soon as the current slice is on screen, from the first to the last.
COLD_SCROLL_JS = """
async () => {
  const s = window.viewerState;
  const marks = window.__bench;
  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  const last = s.total - 1;
  const requests = s.frameRequests;
  let maxWait = 0;
  const began = performance.now();
  while (s.index < last) {
    const before = marks.puts;
    const pressed = performance.now();
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    while (marks.puts === before) {
      await nextFrame();
      if (performance.now() - pressed > 60000) throw new Error(`stalled at slice ${s.index + 1}`);
    }
    maxWait = Math.max(maxWait, performance.now() - pressed);
  }
  const seconds = (performance.now() - began) / 1000;
  return { slices: last, seconds, maxWait, requests: s.frameRequests - requests };
}
"""

PREFETCHED_JS = (
    "() => window.viewerState.inFlight === 0 && window.viewerState.frameRequests >= window.viewerState.total"
)

# Prefetched: back to slice 1, then one ArrowDown per animation frame to the last slice.
RAF_SCROLL_JS = """
async () => {
  const s = window.viewerState;
  const marks = window.__bench;
  const key = (name) =>
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: name, bubbles: true }));
  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  key("Home");
  await nextFrame();
  await nextFrame();
  const last = s.total - 1;
  const drawn = s.framesDrawn;
  const puts = marks.puts;
  const gaps = [];
  const busy = [];
  return await new Promise((resolve) => {
    let previous = null;
    const began = performance.now();
    const step = (now) => {
      if (previous !== null) {
        gaps.push(now - previous);
        busy.push(performance.now() - now); // this frame's earlier callbacks: the viewer's draw()
      }
      previous = now;
      if (s.index < last) {
        key("ArrowDown");
        requestAnimationFrame(step);
        return;
      }
      requestAnimationFrame((end) => {
        gaps.push(end - previous);
        const seconds = (performance.now() - began) / 1000;
        resolve({
          seconds,
          slices: last,
          drawn: s.framesDrawn - drawn,
          rendered: marks.puts - puts,
          animationFrames: gaps.length,
          maxGap: Math.max(...gaps),
          longGaps: gaps.filter((gap) => gap > 20).length,
          drawMs: busy.sort((a, b) => a - b),
        });
      });
    };
    requestAnimationFrame(step);
  });
}
"""


@dataclass
class PageLoad:
    """One opening of the viewer page, in ms since navigation start."""

    ready: float = 0.0  # performance.now() when viewerState.ready was set
    first_image: float = 0.0  # viewerState.firstImageMs: from the viewer script's start
    connect: float = 0.0  # TCP + TLS connection of the page
    html_wait: float = 0.0  # request sent -> first byte of the HTML
    html: float = 0.0  # responses complete: ...
    script: float = 0.0
    series: float = 0.0
    instances: float = 0.0
    frame: float = 0.0

    @classmethod
    def of(cls, timings: dict[str, Any]) -> PageLoad:
        return cls(
            ready=timings["readyAt"] or 0.0,
            first_image=timings["firstImageMs"] or 0.0,
            connect=timings["connect"] or 0.0,
            html_wait=timings["htmlWait"] or 0.0,
            html=timings["html"] or 0.0,
            script=timings["script"] or 0.0,
            series=timings["series"] or 0.0,
            instances=timings["instances"] or 0.0,
            frame=timings["frame"] or 0.0,
        )


@dataclass
class BrowserRun:
    cold: PageLoad = field(default_factory=PageLoad)  # fresh pacs serve, new browser context
    warm: PageLoad = field(default_factory=PageLoad)  # opened again, new context, server caches warm
    cold_fps: float = 0.0  # slices shown per second, next slice as soon as one is drawn
    cold_max_wait_ms: float = 0.0
    cold_requests: int = 0
    prefetch_wait_s: float = 0.0
    fps: float = 0.0  # framesDrawn per second, prefetched, one ArrowDown per animation frame
    rendered_fps: float = 0.0  # new images rendered per second (putImageData on the image canvas)
    raf_fps: float = 0.0  # animation frames per second the browser ran meanwhile
    max_gap_ms: float = 0.0
    long_gaps: int = 0
    draw_p50_ms: float = 0.0  # time of the viewer's draw() callback per animation frame
    draw_p95_ms: float = 0.0
    errors: list[str] = field(default_factory=list)


def open_viewer(browser: Any, served: Served, token: str, study_uid: str) -> tuple[Any, Any, dict[str, Any]]:
    """A new context with the session cookie; the viewer page, once its first image is drawn."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": COOKIE, "value": token, "url": served.base_url + "/"}])
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{served.base_url}/studies/{study_uid}", wait_until="commit")
    page.wait_for_function("() => window.viewerState && window.viewerState.ready", timeout=60_000)
    timings = page.evaluate(TIMINGS_JS)
    timings["pageerrors"] = errors
    return context, page, timings


def browser_run(served: Served, token: str, study_uid: str) -> BrowserRun:
    from playwright.sync_api import sync_playwright  # only needed without --skip-browser

    run = BrowserRun()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--ignore-certificate-errors"])
        try:
            context, page, timings = open_viewer(browser, served, token, study_uid)
            run.cold = PageLoad.of(timings)
            cold = page.evaluate(COLD_SCROLL_JS)
            run.cold_fps = cold["slices"] / cold["seconds"] if cold["seconds"] else 0.0
            run.cold_max_wait_ms, run.cold_requests = cold["maxWait"], cold["requests"]
            began = time.perf_counter()
            page.wait_for_function(PREFETCHED_JS, timeout=300_000)
            run.prefetch_wait_s = time.perf_counter() - began
            scroll = page.evaluate(RAF_SCROLL_JS)
            seconds = scroll["seconds"] or 1e-9
            run.fps, run.rendered_fps = scroll["drawn"] / seconds, scroll["rendered"] / seconds
            run.raf_fps = scroll["animationFrames"] / seconds
            run.max_gap_ms, run.long_gaps = scroll["maxGap"], scroll["longGaps"]
            run.draw_p50_ms = percentile(scroll["drawMs"], 50)
            run.draw_p95_ms = percentile(scroll["drawMs"], 95)
            shown = page.evaluate(TIMINGS_JS)["error"]
            run.errors += [
                problem for problem in [timings["error"], shown, *timings["pageerrors"]] if problem
            ]
            context.close()
            context, page, timings = open_viewer(browser, served, token, study_uid)
            run.warm = PageLoad.of(timings)
            run.errors += [problem for problem in [timings["error"], *timings["pageerrors"]] if problem]
            context.close()
        finally:
            browser.close()
    return run


# ---------------------------------------------------------------------------
# 3. Study-list search
# ---------------------------------------------------------------------------


def _dashed(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def query_string(search: Search) -> str:
    """The query string the search form sends for `search`."""
    args = {
        "name": search.name,
        "patient_id": search.patient_id,
        "from": _dashed(search.date_from) if search.date_from else "",
        "to": _dashed(search.date_to) if search.date_to else "",
        "modality": search.modality,
    }
    args = {key: value for key, value in args.items() if value}
    return "/?" + urlencode(args) if args else "/"


def by_name(rng: random.Random, corpus: Corpus) -> Search:
    return Search(name=rng.choice(corpus.surnames)[:3])


def by_patient_id(rng: random.Random, corpus: Corpus) -> Search:
    return Search(patient_id=rng.choice(corpus.patient_ids))


def by_month(rng: random.Random, corpus: Corpus) -> Search:
    month = rng.randrange(120)
    first = date(FIRST_DAY.year + month // 12, month % 12 + 1, 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return Search(date_from=f"{first:%Y%m%d}", date_to=f"{last:%Y%m%d}")


def by_modality(rng: random.Random, corpus: Corpus) -> Search:
    return Search(modality=rng.choice(MODALITIES))


def newest_page(rng: random.Random, corpus: Corpus) -> Search:
    return Search()


SEARCHES: list[tuple[str, Callable[[random.Random, Corpus], Search]]] = [
    ("name prefix (name=SMI)", by_name),
    ("patient ID", by_patient_id),
    ("date range, one month", by_month),
    ("modality (modality=CT)", by_modality),
    ("newest page, no criteria", newest_page),
]


@dataclass
class SearchTiming:
    label: str
    https: list[float] = field(default_factory=list)
    local: list[float] = field(default_factory=list)
    find: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


def time_searches(
    client: Client,
    corpus: Corpus,
    timings: dict[str, SearchTiming],
    kind: str,
    n: int,
    warmup: int,
    seed: int,
) -> None:
    """`n` timed requests (after `warmup`) of every search through `client`."""
    for number, (label, make) in enumerate(SEARCHES):
        rng = random.Random(seed * 1000 + number)
        timing = timings.setdefault(label, SearchTiming(label))
        for iteration in range(warmup + n):
            reply = get(client, query_string(make(rng, corpus)))
            if reply.status != 200:
                raise BenchError(f"study list: HTTP {reply.status}")
            if iteration >= warmup:
                getattr(timing, kind).append(reply.ms)
                if kind == "https":
                    timing.rows.append(len(_ROW.findall(reply.text)))


def time_finds(
    pacs: Pacs, corpus: Corpus, timings: dict[str, SearchTiming], n: int, warmup: int, seed: int
) -> None:
    """The same searches as bare ``Archive.find`` calls with the view's identifier and limit."""
    for number, (label, make) in enumerate(SEARCHES):
        rng = random.Random(seed * 1000 + number)
        timing = timings.setdefault(label, SearchTiming(label))
        for iteration in range(warmup + n):
            query = study_identifier(make(rng, corpus))
            began = time.perf_counter()
            pacs.archive.find("STUDY", query, limit=PAGE_SIZE + 1, offset=0)
            if iteration >= warmup:
                timing.find.append((time.perf_counter() - began) * 1000)


# ---------------------------------------------------------------------------
# One backend: fill, store the CT, then measure (--repeat times)
# ---------------------------------------------------------------------------


@dataclass
class BackendResult:
    backend: str
    frames: dict[str, Latencies] = field(default_factory=dict)
    browser: list[BrowserRun] = field(default_factory=list)
    browser_failed: str = ""
    searches: dict[str, SearchTiming] = field(default_factory=dict)
    fill_s: float = 0.0
    store_s: float = 0.0
    web_rss_mb: list[float] = field(default_factory=list)  # web worker VmRSS after the frame passes
    web_hwm_mb: list[float] = field(default_factory=list)
    chain: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


FRAME_KINDS = [
    ("https-cold", "HTTPS pacs serve, cold"),
    ("https-warm", "HTTPS pacs serve, warm"),
    ("local-cold", "test client in-process, cold"),
    ("local-warm", "test client in-process, warm"),
]


def measure_backend(
    backend: str, args: argparse.Namespace, workdir: Path, files: Sequence[Path]
) -> BackendResult:
    result = BackendResult(backend)
    result.frames = {key: Latencies(label) for key, label in FRAME_KINDS}
    with fresh_archive(backend, workdir, args.pg_server) as pacs:
        print(f"{backend}: filling {args.studies} studies ...", flush=True)
        began = time.perf_counter()
        corpus = fill_index(pacs.database.engine, args.studies, args.seed)
        if backend == "postgresql":
            analyze(pacs.database.engine)
        result.fill_s = time.perf_counter() - began
        began = time.perf_counter()
        study_uid = {pacs.archive.store(path).study_uid for path in files}.pop()
        result.store_s = time.perf_counter() - began
        print(
            f"{backend}: index filled in {result.fill_s:.0f} s, {len(files)} CT slices stored in "
            f"{result.store_s:.1f} s",
            flush=True,
        )
        paths = frame_paths(pacs, study_uid)
        chain = chain_paths(pacs, study_uid, paths[0])
        for repeat in range(args.repeat):
            tag = f"{backend} [{repeat + 1}/{args.repeat}]"
            with pacs_serve(pacs, workdir / f"serve-{backend}-{repeat}-a.log") as served:
                client = served.client()
                login(client, *new_user(pacs, "https"))
                print(f"{tag}: {len(paths)} frames over HTTPS, cold then warm ...", flush=True)
                time_frames(client, paths, result.frames["https-cold"], served.proc.pid)
                time_frames(client, paths, result.frames["https-warm"], served.proc.pid)
                rss, hwm = web_worker_mb(served.proc.pid)
                result.web_rss_mb.append(rss)
                result.web_hwm_mb.append(hwm)
                time_chain(client, chain, result.chain, "https")
                print(f"{tag}: study-list searches over HTTPS ...", flush=True)
                time_searches(client, corpus, result.searches, "https", args.searches, 5, args.seed + repeat)
                if client.connects > 2:
                    result.notes.append(f"the HTTPS client had to reconnect {client.connects - 1} times")
                client.close()
            if not args.skip_browser:
                with pacs_serve(pacs, workdir / f"serve-{backend}-{repeat}-b.log") as served:
                    client = served.client()
                    login(client, *new_user(pacs, "browser"))
                    client.close()
                    print(f"{tag}: viewer in headless Chromium ...", flush=True)
                    try:
                        result.browser.append(browser_run(served, client.cookies[COOKIE], study_uid))
                    except Exception as exc:  # Playwright's errors: report, go on with the rest
                        result.browser_failed = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                        print(f"{tag}: browser run failed: {result.browser_failed}", flush=True)
            print(f"{tag}: in-process test client and Archive.find ...", flush=True)
            local = LocalClient(WebServer(pacs).app)
            login(local, *new_user(pacs, "local"))
            time_frames(local, paths, result.frames["local-cold"])
            time_frames(local, paths, result.frames["local-warm"])
            time_chain(local, chain, result.chain, "local")
            time_searches(local, corpus, result.searches, "local", args.searches, 5, args.seed + repeat)
            time_finds(pacs, corpus, result.searches, args.searches, 5, args.seed + repeat)
            del local
    return result


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _median(values: Sequence[float], digits: int = 0, repeat: int = 1) -> str:
    if not values:
        return "-"
    text = f"{statistics.median(values):.{digits}f}"
    if repeat > 1 and len(values) > 1:
        text += f" ({min(values):.{digits}f}..{max(values):.{digits}f})"
    return text


def print_frames(results: Sequence[BackendResult], orthanc: Sequence[Latencies], orthanc_note: str) -> None:
    header = (
        f"{'backend':<11} {'path':<36} {'n':>5} {'p50':>7} {'p95':>7} {'max':>7} {'mean':>7} "
        f"{'req/s':>6} {'KB':>5} {'CPU ms':>6}  target p50 <= {TARGET_FRAME_P50_MS:.0f} ms"
    )
    print(header)
    print("-" * len(header))
    rows = [(result.backend, lat) for result in results for lat in result.frames.values()]
    rows += [("orthanc", lat) for lat in orthanc]
    for backend, lat in rows:
        if lat.failed or not lat.ms:
            print(f"{backend:<11} {lat.label:<36} {lat.failed or 'no figures'}")
            continue
        mean = statistics.fmean(lat.ms)
        kilobytes = statistics.fmean(lat.nbytes) / 1024
        p50 = percentile(lat.ms, 50)
        cpu = f"{lat.cpu_s / len(lat.ms) * 1000:.1f}" if lat.cpu_known else "-"
        verdict = ("met" if p50 <= TARGET_FRAME_P50_MS else "MISSED") if lat.label.startswith("HTTPS") else ""
        print(
            f"{backend:<11} {lat.label:<36} {len(lat.ms):>5} {p50:>7.2f} {percentile(lat.ms, 95):>7.2f} "
            f"{max(lat.ms):>7.2f} {mean:>7.2f} {1000 / mean:>6.0f} {kilobytes:>5.0f} {cpu:>6}  {verdict}"
        )
    if orthanc_note:
        print(f"orthanc: {orthanc_note}")


def print_browser(result: BackendResult, repeat: int) -> None:
    runs = result.browser
    if not runs:
        if result.browser_failed:
            print(f"{result.backend}: browser run failed: {result.browser_failed}")
        return

    def pick(value: Callable[[BrowserRun], float], digits: int = 0) -> str:
        return _median([value(run) for run in runs], digits, repeat)

    def median(value: Callable[[BrowserRun], float]) -> float:
        return statistics.median(value(run) for run in runs)

    def page_load(name: str, which: Callable[[BrowserRun], PageLoad]) -> None:
        def at(attribute: str) -> str:
            return pick(lambda run: float(getattr(which(run), attribute)))

        verdict = "met" if median(lambda r: which(r).ready) < TARGET_FIRST_IMAGE_MS else "MISSED"
        print(
            f"  first image, {name}: navigation -> ready {at('ready')} ms, viewerState.firstImageMs "
            f"{at('first_image')} ms (target < {TARGET_FIRST_IMAGE_MS:.0f} ms: {verdict})"
        )
        print(
            f"    connection {at('connect')} ms, HTML first byte after {at('html_wait')} ms; responses "
            f"complete at: HTML {at('html')}, viewer.js {at('script')}, series list {at('series')}, "
            f"instance list {at('instances')}, first frame {at('frame')}"
        )

    plural = "s" if len(runs) > 1 else ""
    print(f"{result.backend} ({len(runs)} run{plural}; times in ms since navigation start):")
    page_load("cold server", lambda run: run.cold)
    page_load("warm server (opened again)", lambda run: run.warm)
    verdict = "met" if median(lambda r: r.cold_fps) >= TARGET_FPS else "MISSED"
    print(
        f"  cold scroll (next slice as soon as one is drawn): {pick(lambda r: r.cold_fps, 1)} slices/s, "
        f"longest wait {pick(lambda r: r.cold_max_wait_ms)} ms, {pick(lambda r: r.cold_requests)} frame "
        f"requests meanwhile (target >= {TARGET_FPS:.0f}: {verdict})"
    )
    fps, raf = median(lambda r: r.fps), median(lambda r: r.raf_fps)
    if fps >= TARGET_FPS:
        verdict = "met"
    elif fps >= 0.95 * raf:
        verdict = f"a new slice every animation frame; headless Chromium runs ~{raf:.0f}/s, the ceiling"
    else:
        verdict = "MISSED"
    print(
        f"  prefetched scroll (one ArrowDown per animation frame): {pick(lambda r: r.fps, 1)} framesDrawn/s, "
        f"{pick(lambda r: r.rendered_fps, 1)} new images/s; the browser ran "
        f"{pick(lambda r: r.raf_fps, 1)} animation frames/s (target >= {TARGET_FPS:.0f}: {verdict})"
    )
    print(
        f"    draw() per slice p50 {pick(lambda r: r.draw_p50_ms, 2)} ms, "
        f"p95 {pick(lambda r: r.draw_p95_ms, 2)} ms; longest gap between animation frames "
        f"{pick(lambda r: r.max_gap_ms, 1)} ms, "
        f"{pick(lambda r: r.long_gaps)} gaps > 20 ms; prefetch done {pick(lambda r: r.prefetch_wait_s, 1)} s "
        "after the cold scroll"
    )
    for error in sorted({error for run in runs for error in run.errors}):
        print(f"  viewer error: {error}")


def print_searches(results: Sequence[BackendResult], studies: int) -> None:
    header = (
        f"{'backend':<11} {'search':<26} {'n':>4} {'rows':>5} {'HTTPS p50':>9} {'p95':>7} {'max':>7} "
        f"{'local p50':>9} {'p95':>7} {'find p50':>8} {'p95':>7}  target p95 < {TARGET_SEARCH_P95_MS:.0f} ms"
    )
    print(f"study list, {studies} studies, ms per request/call (rows: mean rows on the page)")
    print(header)
    print("-" * len(header))
    for result in results:
        for timing in result.searches.values():
            p95 = percentile(timing.https, 95)
            verdict = "met" if p95 < TARGET_SEARCH_P95_MS else "MISSED"
            rows = statistics.fmean(timing.rows) if timing.rows else 0.0
            print(
                f"{result.backend:<11} {timing.label:<26} {len(timing.https):>4} {rows:>5.1f} "
                f"{percentile(timing.https, 50):>9.2f} {p95:>7.2f} {max(timing.https, default=0):>7.2f} "
                f"{percentile(timing.local, 50):>9.2f} {percentile(timing.local, 95):>7.2f} "
                f"{percentile(timing.find, 50):>8.2f} {percentile(timing.find, 95):>7.2f}  {verdict}"
            )


def print_chain(results: Sequence[BackendResult]) -> None:
    header = (
        f"{'backend':<11} {'request':<22} {'n':>3} {'HTTPS p50':>9} {'p95':>7} {'local p50':>9} {'p95':>7}"
    )
    print("requests of the viewer before its first image, one at a time, server caches warm; ms")
    print(header)
    print("-" * len(header))
    for result in results:
        for label, kinds in result.chain.items():
            https, local = kinds.get("https", []), kinds.get("local", [])
            print(
                f"{result.backend:<11} {label:<22} {len(https):>3} {percentile(https, 50):>9.2f} "
                f"{percentile(https, 95):>7.2f} {percentile(local, 50):>9.2f} {percentile(local, 95):>7.2f}"
            )


def make_series(outdir: Path, slices: int) -> list[Path]:
    from tests.data.make_series import make_ct_series  # ROOT is on sys.path

    return make_ct_series(
        outdir,
        slices=slices,
        rows=512,
        columns=512,
        patient_name="BENCH^VIEWER",
        patient_id="BENCH-0003",
        accession="BENCH0003",
    )


def describe_environment(files: Sequence[Path], args: argparse.Namespace, orthanc: str) -> None:
    sizes = [path.stat().st_size for path in files]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}")
    print(f"platform: {platform.platform()}")
    print(f"series: {len(files)} CT slices of 512x512 int16, {sum(sizes) / 1e6:.1f} MB")
    print(f"index: {args.studies} synthetic studies; backends: {args.db}")
    print(f"browser: {'skipped' if args.skip_browser else CHROMIUM + ' (headless, Playwright)'}")
    print(f"Orthanc: {orthanc}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--slices", type=int, default=500, help="slices of the CT series (default 500)")
    parser.add_argument("--studies", type=int, default=100_000, help="studies in the index (default 100000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--skip-browser", action="store_true", help="no Chromium measurements")
    parser.add_argument("--skip-orthanc", action="store_true", help="no Orthanc preview figures")
    parser.add_argument("--repeat", type=int, default=1, help="measure N times, fresh servers each time")
    parser.add_argument(
        "--searches", type=int, default=100, help="timed requests per study-list search (default 100)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of data and searches (default 1)")
    parser.add_argument("--pg-server", default=PG_SERVER, help=f"PostgreSQL server URL (default {PG_SERVER})")
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where temp dirs go (default: system temp)"
    )
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if not args.skip_browser and not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: use --skip-browser", file=sys.stderr)
        return 1

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds: servers stopped, namespace, databases, temp dirs removed

    signal.signal(signal.SIGTERM, terminate)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="pacs-bench-web-", dir=args.tmp_dir))
    try:
        print(f"generating {args.slices} CT slices of 512x512 ...", flush=True)
        files = make_series(workdir / "series", args.slices)
        why_not = orthanc_unavailable(args.skip_orthanc)
        describe_environment(files, args, f"skipped: {why_not}" if why_not else orthanc_version())

        orthanc = [
            Latencies("Orthanc /preview, first after start"),
            Latencies("Orthanc /preview, second pass"),
        ]
        orthanc_note = f"skipped: {why_not}" if why_not else ""
        if not why_not:
            try:
                with ExitStack() as stack:
                    stack.enter_context(network_namespace())
                    certs = make_pki(workdir / "pki")
                    for repeat in range(args.repeat):
                        print(
                            f"orthanc [{repeat + 1}/{args.repeat}]: upload, restart, previews ...", flush=True
                        )
                        orthanc_note = orthanc_previews(workdir, files, certs, orthanc)
                orthanc_note = (
                    f"{orthanc_version()} over {orthanc_note}; in netns {NETNS} via veth ({NS_ADDR}); "
                    "its previews are 8-bit PNGs"
                )
            except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                orthanc_note = f"failed: {exc}"
                for latencies in orthanc:
                    latencies.failed = orthanc_note

        results = [measure_backend(backend, args, workdir, files) for backend in backends]

        print()
        print(
            f"frames: {args.slices} slices, one keep-alive connection, one request at a time; ms per request"
        )
        print("CPU ms: server process tree CPU time per request (/proc); KB: mean response body")
        print()
        print_frames(results, orthanc, orthanc_note)
        if not args.skip_browser:
            print()
            for result in results:
                print_browser(result, args.repeat)
        print()
        print_chain(results)
        print()
        print_searches(results, args.studies)
        print()
        for result in results:
            rss = _median(result.web_rss_mb, 0, args.repeat)
            hwm = _median(result.web_hwm_mb, 0, args.repeat)
            print(
                f"{result.backend}: fill {result.fill_s:.0f} s, CT store {result.store_s:.1f} s; "
                f"pacs serve's web worker after both frame passes: RSS {rss} MB, peak {hwm} MB "
                f"(the decoded frames alone: {args.slices * 2**19 / 2**20:.0f} MiB)"
            )
            for note in result.notes:
                print(f"  note: {note}")
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"run took {time.perf_counter() - started:.0f} s; load average now {load}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
