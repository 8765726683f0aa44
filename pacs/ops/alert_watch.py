"""The alert watch: a thread of ``pacs serve`` that turns what happens into alerts.

Every :data:`SCAN_SECONDS` it reads the audit trail from its cursors (Security Alerts per source
and window, lockouts), the free disk against the watermark and the failed forwarding jobs
(:mod:`pacs.ops.alert_sources`, :mod:`pacs.ops.alert_conditions`), and runs the daily check
(:mod:`pacs.ops.daily_check`) when it is due. At start, and then daily, it logs the server
certificate's state if it has expired or expires soon. Alerts go to the durable queue of
:mod:`pacs.ops.alerts`; everything it remembers is in the index, so a new watch over the same
archive goes on where the last one stopped.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from pacs.core.context import Context
from pacs.ops.alert_conditions import disk_alert, forward_alerts
from pacs.ops.alert_sources import scan_lockouts, scan_security_alerts
from pacs.ops.alert_state import AlertState
from pacs.ops.alerts import AlertQueue
from pacs.ops.daily_check import DAILY, due, log_server_certificate, run_daily_check

LOG = logging.getLogger(__name__)
SCAN_SECONDS = 60.0
STOP_TIMEOUT = 60.0


class AlertWatch:
    """Scans for alerts in the background; :meth:`scan` and :meth:`tick` do one round (tests call them)."""

    def __init__(
        self, pacs: Context, queue: AlertQueue, *, window_minutes: int, interval: float = SCAN_SECONDS
    ) -> None:
        self._pacs, self._queue = pacs, queue
        self._state = AlertState(pacs.database)
        self._window_minutes = window_minutes
        self._interval = interval
        self._logged: datetime | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)

    def start(self) -> None:
        """Watch in the background (the first round, at once, logs the server certificate's state)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (a round in progress gets :data:`STOP_TIMEOUT` seconds to finish)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_TIMEOUT)

    def scan(self, now: datetime | None = None) -> int:
        """Queue the alerts of the audit trail, the disk and the forwarding jobs; return how many."""
        now = now or datetime.now(UTC)
        database, queue, state = self._pacs.database, self._queue, self._state
        queued = scan_security_alerts(database, queue, state, window_minutes=self._window_minutes, now=now)
        queued += scan_lockouts(database, queue, state)
        queued += int(disk_alert(self._pacs.settings, queue, state))
        queued += forward_alerts(database, queue, state)
        return queued

    def tick(self, now: datetime | None = None) -> None:
        """One round: :meth:`scan`, the daily check if no process ran it in the last day, and once a
        day (the first round too) the server certificate's line in the log if it needs attention."""
        now = now or datetime.now(UTC)
        self.scan(now)
        if due(self._state, now):
            run_daily_check(self._pacs, self._queue, now, log=False)
        if self._logged is None or now - self._logged >= DAILY:
            log_server_certificate(self._pacs.settings, now)
            self._logged = now

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                LOG.exception("the alert watch failed; it tries again in %.0f s", self._interval)
            if self._stop.wait(self._interval):
                return
