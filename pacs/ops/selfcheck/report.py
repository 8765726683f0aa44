"""What ``pacs selfcheck`` reports: findings to fix, notes worth knowing, and the report of a run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

from pacs.core.context import Context


@dataclass(frozen=True)
class Finding:
    """Something to fix: which check found it, what is wrong, and how to fix it."""

    check: str
    message: str
    fix: str


@dataclass(frozen=True)
class Note:
    """Something acceptable that the admin should know about."""

    check: str
    message: str


@dataclass
class Report:
    """The outcome of every check."""

    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no check found anything to fix."""
        return not self.findings

    def to_json(self) -> str:
        """The report as one JSON document."""
        return json.dumps(
            {
                "ok": self.ok,
                "checked": self.checked,
                "findings": [asdict(f) for f in self.findings],
                "notes": [asdict(n) for n in self.notes],
            },
            indent=2,
        )


Result = Finding | Note
Check = Callable[[Context, datetime], Iterator[Result]]
