"""What every web request meets first: its client address decided, a refusal outside the allowed networks.

:class:`NetworkGate` wraps the whole WSGI app (:func:`webviewer.create_app`), so it runs before
sessions, the login page, static files and DICOMweb (tokens included). It sets ``REMOTE_ADDR`` to
the client address :meth:`pacs.core.config_web_networks.WebNetworks.client` decides (the TCP peer
stays in ``environ["pacs.peer"]``, and ``X-Forwarded-For`` is dropped), so every audit record,
throttle and token check downstream sees the same address. A client outside ``[web]
allowed_networks`` gets a plain 403.

Refusals are audited by :class:`RefusalTrail`, aggregated so that a scan cannot flood the trail:
the first refusal of an address opens a window of :data:`WINDOW_SECONDS` and is recorded at once;
later ones in the window are only counted, and one more record carries that count when the window
has passed (written by the next refusal from anywhere). At most :data:`MAX_WINDOWS` addresses have
windows open; beyond, refusals share the window of the source ``many addresses``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pacs.core.audit import AuditLog
from pacs.core.config_web_networks import WebNetworks
from pacs.core.security_events import network_refused
from webviewer.security import HEADERS

REFUSED = b"This address may not use this archive.\n"
WINDOW_SECONDS = 60.0
MAX_WINDOWS = 1024
MANY = "many addresses"
PEER = "pacs.peer"
LOG = logging.getLogger(__name__)
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class _Window:
    opened: float
    what: str
    path: str
    more: int = 0  # refusals after the first, not recorded yet


class RefusalTrail:
    """The aggregated audit records of refused requests (see the module docstring)."""

    def __init__(self, audit: AuditLog, clock: Callable[[], float] = time.monotonic) -> None:
        self._audit = audit
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def refused(self, source: str, what: str, path: str) -> None:
        """Note one refused request of `what` (``web request``, ``access token``) from `source` for `path`."""
        now = self._clock()
        with self._lock:
            records = self._closed(now)
            if source not in self._windows and len(self._windows) >= MAX_WINDOWS:
                source = MANY
            window = self._windows.get(source)
            if window is None:
                self._windows[source] = _Window(now, what, path)
                records.append(network_refused(source=source, what=what, path=path, refused=1))
            else:
                window.more += 1
        for record in records:
            self._audit.append_after(record)

    def _closed(self, now: float) -> list[Any]:
        """The count records of the windows that have passed, which are closed (lock held)."""
        records = []
        for source, window in list(self._windows.items()):
            if now - window.opened < WINDOW_SECONDS:
                continue
            del self._windows[source]
            if window.more:
                details = {"path": window.path, "refused": window.more, "within_seconds": int(WINDOW_SECONDS)}
                records.append(network_refused(source=source, what=window.what, **details))
        return records


class NetworkGate:
    """WSGI middleware: decide the client address of each request; refuse one outside the allowed networks."""

    def __init__(self, app: WsgiApp, networks: WebNetworks, trail: RefusalTrail) -> None:
        self.app = app
        self.networks = networks
        self.trail = trail

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR") or ""
        client = self.networks.client(peer, environ.pop("HTTP_X_FORWARDED_FOR", None))
        environ[PEER], environ["REMOTE_ADDR"] = peer, client
        if self.networks.allows(client):
            return self.app(environ, start_response)
        bearer = str(environ.get("HTTP_AUTHORIZATION", "")).lower().startswith("bearer ")
        what = "access token" if bearer else "web request"
        self.trail.refused(client, what, str(environ.get("PATH_INFO", ""))[:200])
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(REFUSED))),
            ("Cache-Control", "no-store"),
            *HEADERS.items(),
        ]
        start_response("403 Forbidden", headers)
        return [REFUSED]
