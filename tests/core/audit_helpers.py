"""Shared pieces of the audit trail tests: events to append, plain SQL on the index, the CLI's verdicts.

Tampering is done the way an intruder with database access would do it: plain SQL on
the engine, never through :class:`pacs.core.audit.AuditLog`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

from pacs.cli import main
from pacs.core.audit import Action, AuditEvent, EventID
from pacs.core.config import Settings
from pacs.core.context import Context
from storage.models import AuditRecord

COLUMNS = (
    "seq, recorded_at, event_id, event_type, action, outcome, user_id, source, "
    "patient_id, study_uid, details, prev_hash, hash"
)
EXPORT_FIELDS = {
    "seq",
    "recorded_at",
    "event_id",
    "event",
    "event_type",
    "event_type_name",
    "action",
    "outcome",
    "user_id",
    "source",
    "patient_id",
    "study_uid",
    "details",
    "prev_hash",
    "hash",
}
MADE_UP_HASH = "f" * 64


def _event(user: str = "alice@cli", **fields: object) -> AuditEvent:
    return AuditEvent(EventID.QUERY, Action.EXECUTE, user_id=user, **fields)  # type: ignore[arg-type]


def _append(pacs: Context, count: int) -> None:
    for number in range(count):
        pacs.audit.append(_event(f"user{number}@cli"))


def _rows(pacs: Context) -> list[AuditRecord]:
    return list(pacs.audit.records())


def _sql(pacs: Context, *statements: str, **params: object) -> None:
    with pacs.database.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), params)


def _anchor(settings: Settings) -> Path:
    return settings.data_dir / "audit.anchor"


def _names(problem: str, seq: int) -> bool:
    return re.search(rf"\brecords? {seq}\b", problem) is not None


def _audit_verify(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["audit", "verify", "--data", str(settings.data_dir)], environ={})
    return code, capsys.readouterr().out.splitlines()


def _audit_export(
    settings: Settings, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str, str]:
    code = main(["audit", "export", *extra, "--data", str(settings.data_dir)], environ={})
    out, err = capsys.readouterr()
    return code, out, err


def _assert_cli_reports_broken(settings: Settings, capsys: pytest.CaptureFixture[str], needle: str) -> None:
    code, lines = _audit_verify(settings, capsys)
    assert code == 1, lines
    broken = [line for line in lines if line.startswith("BROKEN ")]
    assert any(re.search(needle, line) for line in broken), lines
    assert lines[-1].endswith("CHAIN BROKEN")
