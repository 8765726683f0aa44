"""Admission of new DICOM connections per peer address: pending limits, back-off, blocks, aggregated alerts.

A connection is *pending* from its accept until its association request is decided or it
closes. Each address may have ``max_pending`` pending connections; more are closed at
accept, before TLS; a connection counts as pending for at most ``pending_seconds``
(the handshake deadline bounds it anyway), so a connection that is never settled cannot
hold an address's quota. *Failures* (a failed or timed-out TLS handshake, a certificate no
enrolment references, no association request in time, an oversized PDU, a rejected
association) are counted per address: after :data:`FREE_FAILURES` in a row, the address is
refused at accept for a back-off that doubles with each further failure, up to
:data:`BLOCK_SECONDS` (the temporary block). A quiet :data:`WINDOW_SECONDS` after the last
failure or block forgives the address.

The audit trail gets the first failure of each kind (what failed, and the TLS reason if it
was the handshake) from an address in a window at once,
with its reason, and the rest of that window as one aggregated Security Alert when the window
closes (:meth:`ConnectionGate.flush`, called by the server's refresh loop). A flood of
thousands of attempts so writes a handful of records. The counts are per worker process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pacs.core.access_events import connection_failed, connection_failures
from pacs.core.audit import AuditEvent, AuditLog

LOG = logging.getLogger(__name__)
FREE_FAILURES = 10
FIRST_BACKOFF_SECONDS = 1.0
BLOCK_SECONDS = 900.0
WINDOW_SECONDS = 60.0


@dataclass
class _Window:
    """What an address did since its first failure in the current audit window."""

    started: float
    wall_start: datetime
    reported: set[str] = field(default_factory=set)
    unreported: Counter[str] = field(default_factory=Counter)
    refused: int = 0


@dataclass
class _Peer:
    pending: list[float] = field(default_factory=list)  # when each pending connection was admitted
    strikes: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0
    window: _Window | None = None


class ConnectionGate:
    """Decides which connections of an address are taken, and records what the address did wrong."""

    def __init__(
        self,
        audit: AuditLog | None,
        *,
        max_pending: int,
        pending_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.max_pending = max_pending
        self.pending_seconds = pending_seconds
        self._clock = clock
        self._peers: dict[str, _Peer] = {}
        self._lock = threading.Lock()

    def _peer(self, address: str) -> _Peer:
        return self._peers.setdefault(address, _Peer())

    def admit(self, address: str) -> bool:
        """Take a new connection from `address` as pending, or refuse it (blocked, or too many pending)."""
        now = self._clock()
        with self._lock:
            peer = self._peer(address)
            peer.pending = [t for t in peer.pending if now - t < self.pending_seconds]
            if peer.blocked_until > now or len(peer.pending) >= self.max_pending:
                self._window(peer, now).refused += 1
                return False
            peer.pending.append(now)
            return True

    def settled(self, address: str) -> None:
        """A pending connection of `address` was decided or closed (call once per admitted one)."""
        with self._lock:
            peer = self._peers.get(address)
            if peer is not None and peer.pending:
                peer.pending.pop(0)

    def blocked(self, address: str) -> bool:
        """Whether new connections from `address` are refused at accept right now."""
        with self._lock:
            peer = self._peers.get(address)
            return peer is not None and peer.blocked_until > self._clock()

    def failed(self, address: str, what: str, details: dict[str, Any], *, user_id: str = "") -> None:
        """Count a failure of `address`; audit it now if it is the first of its kind in this window.

        `details` may hold a ``reason`` from a small fixed set (a TLS alert name); it tells kinds apart.
        """
        now = self._clock()
        with self._lock:
            peer = self._peer(address)
            if now - max(peer.last_failure, peer.blocked_until) > WINDOW_SECONDS:
                peer.strikes = 0
            peer.strikes += 1
            peer.last_failure = now
            if peer.strikes > FREE_FAILURES:
                backoff = min(FIRST_BACKOFF_SECONDS * 2 ** (peer.strikes - FREE_FAILURES - 1), BLOCK_SECONDS)
                peer.blocked_until = now + backoff
                LOG.warning("DICOM connections from %s refused for %.0f s", address, backoff)
            window = self._window(peer, now)
            kind = f"{what}: {details['reason']}" if "reason" in details else what
            first = kind not in window.reported
            if first:
                window.reported.add(kind)
            else:
                window.unreported[kind] += 1
        if first:
            self._write(connection_failed(address, what, details, by=user_id))

    def _window(self, peer: _Peer, now: float) -> _Window:
        if peer.window is None:
            peer.window = _Window(started=now, wall_start=datetime.now(UTC))
        return peer.window

    def flush(self, now: float | None = None) -> int:
        """Write one aggregated alert per address whose window has closed by `now`; return how many."""
        now = self._clock() if now is None else now
        closed: list[tuple[str, _Window]] = []
        with self._lock:
            for address, peer in list(self._peers.items()):
                window = peer.window
                if window is not None and now - window.started >= WINDOW_SECONDS:
                    peer.window = None
                    if window.unreported or window.refused:
                        closed.append((address, window))
                idle = peer.window is None and not peer.pending and peer.blocked_until <= now
                if idle and now - peer.last_failure > WINDOW_SECONDS:
                    del self._peers[address]
        for address, window in closed:
            self._write(
                connection_failures(
                    address,
                    refused_at_accept=window.refused,
                    failures=dict(window.unreported),
                    since=window.wall_start.isoformat(timespec="seconds"),
                    window_seconds=WINDOW_SECONDS,
                )
            )
        return len(closed)

    def _write(self, event: AuditEvent) -> None:
        """Record a refusal, which stands whether or not its record can be written (the policy's)."""
        if self.audit is not None:
            self.audit.append_after(event)
