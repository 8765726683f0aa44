"""The audit trail on both index backends: concurrent appends, re-anchoring, and export.

Tampering is done the way an intruder with database access would do it: plain SQL on
the engine, never through :class:`pacs.core.audit.AuditLog`.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.audit import Action, AuditEvent, EventID
from pacs.core.config import Settings
from pacs.core.context import Context, open_pacs
from tests.core.audit_helpers import (
    EXPORT_FIELDS,
    _anchor,
    _append,
    _audit_export,
    _audit_verify,
    _event,
    _rows,
    _sql,
)

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
