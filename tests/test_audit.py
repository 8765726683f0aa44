"""The audit trail on both index backends: the keyed hash chain, tamper detection, export.

Tampering is done the way an intruder with database access would do it: plain SQL on
the engine, never through :class:`pacs.core.audit.AuditLog`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import xml.etree.ElementTree as ET
from hashlib import sha256
from pathlib import Path

import pytest
from sqlalchemy import text

from pacs.cli import main
from pacs.core.audit import GENESIS, Action, AuditEvent, EventID, EventType, Outcome, _canonical
from pacs.core.config import Settings
from pacs.core.context import Context, open_pacs
from storage.db import AuditRecord

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


# --- concurrency ---------------------------------------------------------------------------------------


def test_concurrent_appends_from_four_threads_leave_a_gap_free_verifying_chain(settings: Settings) -> None:
    threads, per_thread = 4, 25
    start = threading.Barrier(threads, timeout=30)
    failures: list[BaseException] = []

    def work(number: int) -> None:
        pacs = open_pacs(settings)
        try:
            start.wait()
            for index in range(per_thread):
                try:
                    pacs.audit.append(_event(f"thread{number}@cli", details={"index": index}))
                except Exception as exc:
                    failures.append(exc)
        finally:
            pacs.close()

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers)

    pacs = open_pacs(settings)
    try:
        rows = _rows(pacs)
        report = pacs.audit.verify()
    finally:
        pacs.close()
    assert [r.seq for r in rows] == list(range(1, 1 + 1 + threads * per_thread))
    for number in range(threads):
        mine = [json.loads(r.details)["index"] for r in rows if r.user_id == f"thread{number}@cli"]
        assert mine == list(range(per_thread))
    assert failures == []
    assert report.ok, report.problems
    assert json.loads(_anchor(settings).read_text())["seq"] == rows[-1].seq


def test_reanchor_acknowledges_a_cut_off_end_and_the_chain_verifies_again(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs = open_pacs(settings)
    try:
        _append(pacs, 4)
        _sql(pacs, "DELETE FROM audit_log WHERE seq = 5")
    finally:
        pacs.close()
    assert main(["audit", "verify", "--reanchor", "--data", str(settings.data_dir)], environ={}) == 0
    assert "re-anchored" in capsys.readouterr().out
    code, lines = _audit_verify(settings, capsys)
    assert code == 0, lines
    assert any(line.startswith("ACKNOWLEDGED record 5 is missing") for line in lines)
    pacs = open_pacs(settings)
    try:
        alert = [r for r in _rows(pacs) if r.event_id == "110113"]
    finally:
        pacs.close()
    assert len(alert) == 1
    assert json.loads(alert[0].details)["acknowledged"] == [
        "records 5..5 were removed from the end of the log"
    ]


def test_reanchor_does_not_acknowledge_later_tampering_of_older_records(pacs: Context) -> None:
    _append(pacs, 8)
    (pacs.settings.data_dir / "audit.anchor").unlink()
    pacs.audit.reanchor("admin@cli", pacs.audit.verify())
    assert pacs.audit.verify().ok
    _sql(pacs, "DELETE FROM audit_log WHERE seq IN (4, 5)")
    _sql(pacs, "UPDATE audit_log SET user_id = 'mallory' WHERE seq = 7")
    report = pacs.audit.verify()
    assert not report.ok
    assert any("record 4 is missing" in problem for problem in report.problems)
    assert any("record 7 was altered" in problem for problem in report.problems)


def test_reanchor_does_not_hide_later_tampering(pacs: Context) -> None:
    _append(pacs, 2)
    _sql(pacs, "DELETE FROM audit_log WHERE seq = 2")
    pacs.audit.reanchor("admin@cli", pacs.audit.verify())
    _append(pacs, 2)
    _sql(pacs, "UPDATE audit_log SET user_id = 'mallory' WHERE seq = (SELECT MAX(seq) FROM audit_log)")
    report = pacs.audit.verify()
    assert len(report.problems) == 1 and "was altered" in report.problems[0]


def test_audit_export_is_itself_audited(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = _audit_export(settings, capsys, "--format", "jsonl")
    assert code == 0
    last = _rows(pacs)[-1]
    assert (last.seq, last.event_id, last.action) == (2, "110101", "R")
    assert json.loads(last.details) == {"what": "export", "format": "jsonl"}


def test_audit_verify_is_itself_audited(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _audit_verify(settings, capsys)
    assert code == 0
    last = _rows(pacs)[-1]
    assert (last.seq, last.event_id, last.action) == (2, "110101", "R")
    assert json.loads(last.details) == {"what": "verify"}


# --- export -----------------------------------------------------------------------------------------------


def test_jsonl_export_writes_one_object_with_the_documented_fields_per_record(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs.audit.append(_event("bob@cli", patient_id="PID-42", study_uid="1.2.3.4", details={"hits": 7}))
    code, out, _ = _audit_export(settings, capsys, "--format", "jsonl")
    assert code == 0
    lines = out.splitlines()
    objects = [json.loads(line) for line in lines]
    assert all(set(o) == EXPORT_FIELDS for o in objects)
    assert [o["seq"] for o in objects] == [1, 2, 3]
    stored = _rows(pacs)
    assert [(o["hash"], o["prev_hash"]) for o in objects] == [(r.hash, r.prev_hash) for r in stored]
    query = objects[1]
    assert (query["event_id"], query["event"]) == ("110112", "Query")
    assert (query["action"], query["outcome"]) == ("E", 0)
    assert (query["user_id"], query["patient_id"], query["study_uid"]) == ("bob@cli", "PID-42", "1.2.3.4")
    assert query["details"] == {"hits": 7}
    init = objects[0]
    assert (init["event"], init["event_type"], init["event_type_name"]) == (
        "Application Activity",
        "110129",
        "Security Configuration",
    )
    assert objects[2]["event"] == "Audit Log Used"


def test_export_to_a_file_writes_the_records_there(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _append(pacs, 2)
    target = tmp_path / "audit.jsonl"
    code, out, err = _audit_export(settings, capsys, "--format", "jsonl", "--output", str(target))
    assert code == 0
    assert out == ""
    assert [json.loads(line)["seq"] for line in target.read_text().splitlines()] == [1, 2, 3, 4]
    assert err.strip() == f"4 audit records written to {target}"


def test_export_refuses_to_overwrite_an_existing_file(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "precious.xml"
    target.write_text("keep me\n")
    code, out, err = _audit_export(settings, capsys, "--format", "atna-xml", "--output", str(target))
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pacs: error: ")
    assert str(target) in lines[0]
    assert "Traceback" not in err
    assert out == ""
    assert target.read_text() == "keep me\n"


def _atna(settings: Settings, capsys: pytest.CaptureFixture[str]) -> ET.Element:
    code, out, _ = _audit_export(settings, capsys, "--format", "atna-xml")
    assert code == 0
    return ET.fromstring(out)


def test_atna_export_has_event_id_and_active_participant_in_every_message(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(pacs, 2)
    pacs.audit.append(AuditEvent(EventID.SECURITY_ALERT, Action.EXECUTE, source="192.0.2.9"))
    root = _atna(settings, capsys)
    assert root.tag == "AuditMessages"
    messages = root.findall("AuditMessage")
    assert len(messages) == len(_rows(pacs)) == 5
    for message in messages:
        event_id = message.find("EventIdentification/EventID")
        assert event_id is not None
        assert event_id.get("csd-code")
        assert event_id.get("codeSystemName") == "DCM"
        participant = message.find("ActiveParticipant")
        assert participant is not None
        assert participant.get("UserID")
    codes = [m.find("EventIdentification/EventID").get("csd-code") for m in messages]  # type: ignore[union-attr]
    assert codes == ["110100", "110112", "110112", "110113", "110101"]
    alert = messages[3].find("ActiveParticipant")
    assert alert is not None
    assert (alert.get("UserID"), alert.get("NetworkAccessPointID")) == ("unknown", "192.0.2.9")


def test_atna_export_names_patient_and_study_when_set(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs.audit.append(_event(patient_id="PID-42", study_uid="1.2.3.4"))
    root = _atna(settings, capsys)
    query = root.findall("AuditMessage")[1]
    objects = {
        o.get("ParticipantObjectTypeCode"): o for o in query.findall("ParticipantObjectIdentification")
    }
    patient, study = objects["1"], objects["2"]
    assert patient.get("ParticipantObjectID") == "PID-42"
    assert patient.get("ParticipantObjectTypeCodeRole") == "1"
    assert study.get("ParticipantObjectID") == "1.2.3.4"
    assert study.get("ParticipantObjectTypeCodeRole") == "3"
    study_code = study.find("ParticipantObjectIDTypeCode")
    assert study_code is not None
    assert study_code.get("csd-code") == "110180"
    without = root.findall("AuditMessage")[0].findall("ParticipantObjectIdentification")
    assert {o.get("ParticipantObjectTypeCode") for o in without} == {"4"}


def test_atna_export_stays_well_formed_with_a_control_character_in_a_patient_id(
    pacs: Context, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs.audit.append(_event(patient_id="PID\x1b$B42"))
    root = _atna(settings, capsys)
    assert len(root.findall("AuditMessage")) == 3
