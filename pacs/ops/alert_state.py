"""The alert producers' memory in the index (table ``alert_marks``): named values that survive restarts.

The producers (:mod:`pacs.ops.alert_sources`, :mod:`pacs.ops.alert_conditions`) keep here their
cursors into the audit trail, what they already alerted (a certificate's threshold, a failed
forwarding job, the disk's side of the watermark, the last selfcheck findings) and when the
daily check last ran. Each producer queues its alert first and writes its mark after: a crash
in between repeats an alert (with the same key, so a copy still queued is not queued twice)
rather than losing one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from storage.db import Database
from storage.models import AlertMark


class AlertState:
    """Reads and writes the named marks of the alert producers."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def get(self, name: str, default: str = "") -> str:
        """The value of mark `name`, or `default` when it was never written."""
        with self._database.read() as session:
            mark = session.get(AlertMark, name)
        return default if mark is None else mark.value

    def put(self, name: str, value: str) -> None:
        """Write mark `name` (committed at once)."""
        with self._database.write() as session:
            mark = session.get(AlertMark, name)
            if mark is None:
                session.add(AlertMark(name=name, value=value, updated_at=datetime.now(UTC)))
            else:
                mark.value, mark.updated_at = value, datetime.now(UTC)

    def get_json(self, name: str, default: Any) -> Any:
        """The JSON value of mark `name`, or `default`."""
        value = self.get(name)
        return json.loads(value) if value else default

    def put_json(self, name: str, value: Any) -> None:
        """Write mark `name` as JSON."""
        self.put(name, json.dumps(value, sort_keys=True))
