"""The audit trail on both index backends: the keyed hash chain and tamper detection.

Tampering is done the way an intruder with database access would do it: plain SQL on
the engine, never through :class:`pacs.core.audit.AuditLog`.
"""

from __future__ import annotations

import itertools
import json
import re
from hashlib import sha256

import pytest
from sqlalchemy import text

from pacs.core.audit import GENESIS, Action, AuditEvent, EventID, EventType, Outcome, _canonical
from pacs.core.config import Settings
from pacs.core.context import Context
from tests.core.audit_helpers import (
    COLUMNS,
    MADE_UP_HASH,
    _anchor,
    _append,
    _assert_cli_reports_broken,
    _audit_verify,
    _event,
    _names,
    _rows,
    _sql,
)

# --- an intact chain --------------------------------------------------------------------------------


def test_fresh_archive_holds_only_the_init_record_and_verifies(pacs: Context) -> None:
    (record,) = _rows(pacs)
    assert (record.seq, record.prev_hash) == (1, GENESIS)
    assert record.event_id == EventID.APPLICATION_ACTIVITY
    assert record.event_type == EventType.SECURITY_CONFIGURATION
    assert record.user_id == "test"
    report = pacs.audit.verify()
    assert report.ok, report.problems
    assert report.records == 1


def test_appended_records_are_numbered_from_1_and_each_links_to_the_one_before(pacs: Context) -> None:
    _append(pacs, 5)
    rows = _rows(pacs)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.hash) for r in rows)
    assert len({r.hash for r in rows}) == len(rows)
    assert [r.event_id for r in rows[1:]] == ["110112"] * 5
    report = pacs.audit.verify()
    assert report.ok, report.problems
    assert report.records == 6


def test_stored_record_holds_every_field_of_the_event(pacs: Context) -> None:
    returned = pacs.audit.append(
        AuditEvent(
            EventID.EXPORT,
            Action.READ,
            outcome=Outcome.MINOR_FAILURE,
            user_id="bob@cli",
            source="10.0.0.7",
            patient_id="PID-42",
            study_uid="1.2.826.0.1.3680043.2.1143.1",
            details={"instances": 3, "destination": "/tmp/out"},
        )
    )
    stored = _rows(pacs)[-1]
    assert stored.seq == returned.seq == 2
    assert stored.hash == returned.hash
    assert (stored.event_id, stored.action, stored.outcome) == ("110106", "R", 4)
    assert (stored.user_id, stored.source) == ("bob@cli", "10.0.0.7")
    assert (stored.patient_id, stored.study_uid) == ("PID-42", "1.2.826.0.1.3680043.2.1143.1")
    assert json.loads(stored.details) == {"instances": 3, "destination": "/tmp/out"}


def test_anchor_file_holds_the_newest_record_and_is_private(pacs: Context, settings: Settings) -> None:
    _append(pacs, 3)
    last = _rows(pacs)[-1]
    anchor = json.loads(_anchor(settings).read_text())
    assert (anchor["seq"], anchor["hash"]) == (last.seq, last.hash)
    assert _anchor(settings).stat().st_mode & 0o777 == 0o600


def test_audit_verify_of_an_intact_chain_exits_0(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 3)
    code, lines = _audit_verify(settings, capsys)
    assert code == 0
    assert lines == ["4 audit records: chain intact"]


# --- tampering ----------------------------------------------------------------------------------------


def test_edited_row_breaks_the_chain(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 4)
    _sql(pacs, "UPDATE audit_log SET user_id = :who WHERE seq = 3", who="mallory@cli")
    report = pacs.audit.verify()
    assert not report.ok
    assert any(_names(p, 3) and "altered" in p for p in report.problems), report.problems
    _assert_cli_reports_broken(settings, capsys, r"\brecord 3\b.*altered")


def test_deleted_middle_row_breaks_the_chain(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 4)
    _sql(pacs, "DELETE FROM audit_log WHERE seq = 3")
    report = pacs.audit.verify()
    assert not report.ok
    assert any(_names(p, 3) and "missing" in p for p in report.problems), report.problems
    _assert_cli_reports_broken(settings, capsys, r"\brecord 3\b.*missing")


def test_forged_row_added_at_the_end_breaks_the_chain(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 4)
    last = _rows(pacs)[-1]
    _sql(
        pacs,
        f"INSERT INTO audit_log ({COLUMNS}) SELECT 6, recorded_at, event_id, event_type, action, outcome, "
        "user_id, source, patient_id, study_uid, details, hash, :forged FROM audit_log WHERE seq = 5",
        forged=MADE_UP_HASH,
    )
    assert _rows(pacs)[-1].prev_hash == last.hash
    report = pacs.audit.verify()
    assert not report.ok
    assert any(_names(p, 6) and "altered" in p for p in report.problems), report.problems
    _assert_cli_reports_broken(settings, capsys, r"\brecord 6\b.*altered")


def test_forged_row_slipped_into_the_middle_breaks_the_chain(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 4)
    _sql(
        pacs,
        # Two steps, so that no intermediate state collides on the primary key.
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000",
        f"INSERT INTO audit_log ({COLUMNS}) SELECT 3, recorded_at, event_id, event_type, action, outcome, "
        "'mallory@cli', source, patient_id, study_uid, details, hash, :forged FROM audit_log WHERE seq = 2",
        forged=MADE_UP_HASH,
    )
    assert [r.seq for r in _rows(pacs)] == [1, 2, 3, 4, 5, 6]
    report = pacs.audit.verify()
    assert not report.ok
    assert any(_names(p, 3) and "altered" in p for p in report.problems), report.problems
    _assert_cli_reports_broken(settings, capsys, r"\brecord 3\b.*altered")


def test_deleted_last_row_is_caught_by_the_anchor(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 4)
    _sql(pacs, "DELETE FROM audit_log WHERE seq = 5")
    report = pacs.audit.verify()
    assert report.problems == ["records 5..5 were removed from the end of the log"]
    _assert_cli_reports_broken(settings, capsys, r"\brecords 5\.\.5\b.*removed")


def test_append_after_a_cut_off_end_leaves_the_gap_visible(pacs: Context) -> None:
    _append(pacs, 4)
    _sql(pacs, "DELETE FROM audit_log WHERE seq = 5")
    record = pacs.audit.append(_event("innocent@cli"))
    report = pacs.audit.verify()
    assert record.seq == 6
    assert report.problems == ["record 5 is missing (next is 6)"]


def test_damaged_anchor_file_is_reported(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 2)
    _anchor(settings).write_text('{"seq": 3, "hash": ')
    report = pacs.audit.verify()
    assert report.problems == [f"anchor file {_anchor(settings)} is damaged or forged"]
    _assert_cli_reports_broken(settings, capsys, r"anchor file .* damaged or forged")


def test_anchor_forged_to_hide_a_deleted_last_row_is_reported(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 4)
    _sql(pacs, "DELETE FROM audit_log WHERE seq = 5")
    new_last = _rows(pacs)[-1]
    mac = sha256(f"anchor|{new_last.seq}|{new_last.hash}".encode()).hexdigest()
    _anchor(settings).write_text(json.dumps({"seq": new_last.seq, "hash": new_last.hash, "mac": mac}))
    report = pacs.audit.verify()
    assert report.problems == [f"anchor file {_anchor(settings)} is damaged or forged"]
    _assert_cli_reports_broken(settings, capsys, r"anchor file .* damaged or forged")


def test_missing_anchor_file_is_reported(pacs: Context, settings: Settings) -> None:
    _append(pacs, 2)
    _anchor(settings).unlink()
    report = pacs.audit.verify()
    assert report.problems == [f"anchor file {_anchor(settings)} is missing"]


def test_chain_rebuilt_with_plain_sha256_does_not_verify(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 4)
    rows = _rows(pacs)
    rows[2].user_id = "mallory@cli"
    prev_hash = rows[1].hash
    with pacs.database.engine.begin() as connection:
        for row in rows[2:]:
            row.prev_hash = prev_hash
            row.hash = prev_hash = sha256(_canonical(row)).hexdigest()
            connection.execute(
                text(
                    "UPDATE audit_log SET user_id = :user, prev_hash = :prev, hash = :hash WHERE seq = :seq"
                ),
                {"user": row.user_id, "prev": row.prev_hash, "hash": row.hash, "seq": row.seq},
            )
    last = rows[-1]
    mac = sha256(f"anchor|{last.seq}|{last.hash}".encode()).hexdigest()
    _anchor(settings).write_text(json.dumps({"seq": last.seq, "hash": last.hash, "mac": mac}))
    stored = _rows(pacs)
    assert [r.prev_hash for r in stored[1:]] == [r.hash for r in stored[:-1]]
    report = pacs.audit.verify()
    assert not report.ok
    assert any(_names(p, 3) and "altered" in p for p in report.problems), report.problems
    _assert_cli_reports_broken(settings, capsys, r"\brecord 3\b.*altered")


def test_cut_off_last_row_is_still_detected_after_later_appends(pacs: Context) -> None:
    _append(pacs, 4)
    _sql(pacs, "DELETE FROM audit_log WHERE seq = 5")
    _append(pacs, 2)
    assert not pacs.audit.verify().ok


def test_damaged_anchor_is_still_reported_by_a_second_audit_verify(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 2)
    _anchor(settings).write_text("garbage")
    first, _ = _audit_verify(settings, capsys)
    second, lines = _audit_verify(settings, capsys)
    assert (first, second) == (1, 1), lines
