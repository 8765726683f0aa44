"""Checks of forwarding: ``[[route]]`` rules whose destination cannot receive, and jobs given up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from pacs.core.context import Context
from pacs.ops.forward_queue import FAILED, ForwardQueue
from pacs.ops.forwarding import route_problems
from pacs.ops.selfcheck.report import Finding, Note, Result


def check_forwarding(pacs: Context, now: datetime) -> Iterator[Result]:
    """Routes to nodes that are not enrolled or have no port; failed forwarding jobs."""
    for problem in route_problems(pacs.database, pacs.settings.routes):
        yield Finding(
            "forwarding",
            f"{problem}: pacs serve refuses to start, and no study is sent by it",
            "enrol the node with its port (pacs modality add ... --port N) or fix the [[route]] in pacs.toml",
        )
    failed = ForwardQueue(pacs.database).counts()[FAILED]
    if failed:
        yield Note(
            "forwarding",
            f"{failed} forwarding job(s) failed; see pacs study queue --state failed, and retry with "
            "pacs study retry JOB_ID",
        )
