"""Forwarding over the wire: the sender sends queued studies with C-STORE over TLS to enrolled nodes.

Destinations are a pynetdicom Storage SCP (with or without Storage Commitment) and dcmtk's
``storescp +tls``; each trusts the project's CA, and the archive authenticates with its own
certificate. A destination that is down, a partial failure, a restart of the sender, the trash
and the audit trail are each checked against what the destination really received.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification
from sqlalchemy import update

from pacs.core.context import open_pacs
from pacs.dicom.forwarder import Forwarder
from pacs.ops.forward_queue import FAILED, PENDING, SENT, ForwardQueue, Job, RetryPolicy
from storage.models import Study
from tests.conftest import RunningDicom, assert_same_dataset
from tests.dicom.forward_peers import Peer, enrol_destination, pynetdicom_peer, storescp
from tests.dicom.helpers import _association, _audit, _sop_uid, _store_files, _study_uid

AT_ONCE = RetryPolicy(base=timedelta(0), cap=timedelta(0), max_attempts=3)


@pytest.fixture
def study(dicom: RunningDicom, ct_dir: Path) -> tuple[str, set[str]]:
    """The 6-slice CT study, stored in the archive: its UID and its SOP Instance UIDs."""
    files = sorted(ct_dir.glob("*.dcm"))
    _store_files(dicom.pacs, files)
    return _study_uid(files[0]), {_sop_uid(path) for path in files}


@pytest.fixture
def queue(dicom: RunningDicom) -> ForwardQueue:
    """The archive's queue, its jobs due again at once after a failure (3 attempts at most)."""
    return ForwardQueue(dicom.pacs.database, AT_ONCE)


def _forwarder(dicom: RunningDicom, queue: ForwardQueue, **options: float) -> Forwarder:
    return Forwarder(dicom.pacs, queue, **options)


def _only(jobs: list[Job]) -> Job:
    (job,) = jobs
    return job


def _stages(dicom: RunningDicom, study_uid: str) -> list[str]:
    """The stages of the study's forwarding audit records, oldest first."""
    records = _audit(dicom.pacs, "110104", lambda r: r.study_uid == study_uid and "stage" in r.details)
    return [json.loads(r.details)["stage"] for r in records]


def test_a_queued_study_reaches_a_pynetdicom_peer_over_tls_and_its_commitment_is_confirmed(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue, ct_dir: Path
) -> None:
    files = sorted(ct_dir.glob("*.dcm"))
    study_uid, instances = study
    node, port = enrol_destination(dicom, "TELERAD")
    queue.enqueue("TELERAD", study_uid, requested_by="alice")
    # It prefers the stored syntax (Explicit VR Little Endian): each object streams as stored.
    preferred = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    with pynetdicom_peer(dicom, node, port, commitment="confirm", syntaxes=preferred) as peer:
        job = _only(_forwarder(dicom, queue).run_due())

    assert sorted(peer.received) == sorted(instances)
    assert peer.calling == {dicom.ae_title}
    for path in files:  # streamed as stored: the same data set, in the stored transfer syntax
        received = peer.datasets[_sop_uid(path)]
        assert_same_dataset(received, pydicom.dcmread(path))
        assert received.file_meta.TransferSyntaxUID == pydicom.dcmread(path).file_meta.TransferSyntaxUID
    assert [sorted(request) for request in peer.commit_requests] == [sorted(instances)]
    assert (job.state, job.sent, job.failed, job.commitment) == (SENT, 6, 0, "confirmed")
    assert job.finished_at is not None
    assert _stages(dicom, study_uid) == ["sending", "sent"]
    (record,) = _audit(dicom.pacs, "110104", lambda r: r.study_uid == study_uid and '"sent"' in r.details)
    details = json.loads(record.details)
    assert (record.user_id, record.outcome, record.patient_id) == ("alice", 0, "PID-Q-7731")
    assert (details["destination"], details["sent"], details["failed"], details["commitment"]) == (
        "TELERAD", 6, 0, "confirmed",
    )  # fmt: skip


def test_a_commitment_report_naming_failures_is_recorded_as_failed(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue
) -> None:
    node, port = enrol_destination(dicom, "OFFSITE")
    queue.enqueue("OFFSITE", study[0], requested_by="alice")
    with pynetdicom_peer(dicom, node, port, commitment="fail"):
        job = _only(_forwarder(dicom, queue).run_due())
    assert (job.state, job.commitment) == (SENT, "failed")


def test_a_commitment_without_a_report_in_time_stays_pending(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue
) -> None:
    node, port = enrol_destination(dicom, "OFFSITE")
    queue.enqueue("OFFSITE", study[0], requested_by="alice")
    with pynetdicom_peer(dicom, node, port, commitment="silent") as peer:
        job = _only(_forwarder(dicom, queue, commitment_wait=0.5).run_due())
    assert len(peer.commit_requests) == 1
    assert (job.state, job.commitment) == (SENT, "pending")


def test_a_study_reaches_dcmtk_storescp_over_tls_and_commitment_is_not_offered(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue, tmp_path: Path
) -> None:
    study_uid, instances = study
    node, port = enrol_destination(dicom, "STORESCP")
    queue.enqueue("STORESCP", study_uid, requested_by="alice")
    with storescp(node, port, tmp_path / "received") as outdir:
        job = _only(_forwarder(dicom, queue).run_due())
    received = {str(pydicom.dcmread(path).SOPInstanceUID) for path in outdir.iterdir()}
    assert received == instances
    assert (job.state, job.sent, job.commitment) == (SENT, 6, "not offered")


def test_an_object_the_destination_cannot_take_as_stored_is_transcoded_for_it(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue, ct_dir: Path
) -> None:
    node, port = enrol_destination(dicom, "OLDVIEW")
    queue.enqueue("OLDVIEW", study[0], requested_by="alice")
    with pynetdicom_peer(dicom, node, port, syntaxes=[ImplicitVRLittleEndian]) as peer:
        job = _only(_forwarder(dicom, queue).run_due())
    assert (job.state, job.sent) == (SENT, 6)
    for path in sorted(ct_dir.glob("*.dcm")):
        received, original = peer.datasets[_sop_uid(path)], pydicom.dcmread(path)
        assert (
            received.file_meta.TransferSyntaxUID
            == ImplicitVRLittleEndian
            != original.file_meta.TransferSyntaxUID
        )
        assert received.PixelData == original.PixelData


def test_one_series_is_sent_alone(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue
) -> None:
    study_uid, instances = study
    series_uid = str(dicom.pacs.archive.study_instances(study_uid)[0].series_uid)
    node, port = enrol_destination(dicom, "TELERAD")
    queue.enqueue("TELERAD", study_uid, series_uid, requested_by="alice")
    with pynetdicom_peer(dicom, node, port) as peer:
        job = _only(_forwarder(dicom, queue).run_due())
    assert sorted(peer.received) == sorted(instances)  # the CT study has one series
    assert (job.series_uid, job.state) == (series_uid, SENT)


def test_a_destination_down_for_a_while_then_up_gets_everything_once(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue
) -> None:
    study_uid, instances = study
    node, port = enrol_destination(dicom, "TELERAD")
    queue.enqueue("TELERAD", study_uid, requested_by="alice")
    forwarder = _forwarder(dicom, queue)

    down = _only(forwarder.run_due())
    assert (down.state, down.attempts, down.sent) == (PENDING, 1, 0)
    assert "TELERAD did not accept an association" in down.last_error
    with pynetdicom_peer(dicom, node, port) as peer:
        up = _only(forwarder.run_due())
        assert forwarder.run_due() == []

    assert sorted(peer.received) == sorted(instances)  # each instance once
    assert (up.state, up.attempts, up.sent, up.failed) == (SENT, 2, 6, 0)
    assert _stages(dicom, study_uid) == ["sending", "pending", "sending", "sent"]


def test_a_retry_after_a_partial_failure_sends_only_what_did_not_arrive(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue
) -> None:
    study_uid, instances = study
    node, port = enrol_destination(dicom, "TELERAD")
    queue.enqueue("TELERAD", study_uid, requested_by="alice")
    refused = sorted(instances)[2]
    forwarder = _forwarder(dicom, queue)
    peer = Peer(node, port, refuse={refused})
    with pynetdicom_peer(dicom, node, port, peer=peer):
        first = _only(forwarder.run_due())
        second = _only(forwarder.run_due())
    assert (first.state, first.sent, first.failed) == (PENDING, 5, 1)
    assert "0xA700" in first.last_error
    assert (second.state, second.sent, second.failed) == (SENT, 6, 0)
    assert sorted(peer.received) == sorted(instances)
    assert peer.received[-1] == refused  # the second association carried that one alone


def test_a_job_fails_after_the_attempt_limit_and_a_retry_by_hand_sends_it(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue
) -> None:
    node, port = enrol_destination(dicom, "TELERAD")
    job = queue.enqueue("TELERAD", study[0], requested_by="alice")
    forwarder = _forwarder(dicom, queue)
    ends = [_only(forwarder.run_due()).state for _ in range(3)]
    assert ends == [PENDING, PENDING, FAILED]
    assert forwarder.run_due() == []
    assert queue.retry(job.id).state == PENDING
    with pynetdicom_peer(dicom, node, port) as peer:
        again = _only(forwarder.run_due())
    assert again.state == SENT
    assert sorted(peer.received) == sorted(study[1])


def test_a_study_in_the_trash_is_not_sent(
    dicom: RunningDicom, study: tuple[str, set[str]], queue: ForwardQueue
) -> None:
    node, port = enrol_destination(dicom, "TELERAD")
    queue.enqueue("TELERAD", study[0], requested_by="alice")
    with dicom.pacs.database.write() as session:
        session.execute(update(Study).where(Study.study_uid == study[0]).values(deleted_at=datetime.now(UTC)))
    with pynetdicom_peer(dicom, node, port) as peer:
        job = _only(_forwarder(dicom, queue).run_due())
    assert peer.received == []
    assert (job.state, job.last_error) == (FAILED, "the study is in the trash")
    assert _stages(dicom, study[0]) == ["failed"]


def _wait_for(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


@pytest.fixture
def reopened(dicom: RunningDicom) -> Iterator[list[object]]:
    """Contexts opened again over the archive's data directory, closed at the end."""
    opened: list[object] = []
    yield opened
    for context in opened:
        context.close()  # type: ignore[attr-defined]


def test_a_restart_of_the_sender_over_the_same_data_loses_nothing(
    dicom: RunningDicom, study: tuple[str, set[str]], reopened: list[object]
) -> None:
    node, port = enrol_destination(dicom, "TELERAD")
    first = Forwarder(dicom.pacs, ForwardQueue(dicom.pacs.database), poll_seconds=0.05)
    ForwardQueue(dicom.pacs.database).enqueue("TELERAD", study[0], requested_by="alice")
    first.start()
    _wait_for(lambda: ForwardQueue(dicom.pacs.database).jobs()[0].attempts == 1)
    first.stop()
    (waiting,) = ForwardQueue(dicom.pacs.database).jobs(PENDING)
    assert waiting.next_attempt_at - waiting.created_at >= timedelta(seconds=30)  # the back-off

    again = open_pacs(dicom.pacs.settings)
    reopened.append(again)
    queue = ForwardQueue(again.database, AT_ONCE)
    (kept,) = queue.jobs(PENDING)
    assert kept.id == waiting.id
    queue.retry(kept.id)  # due now rather than in 30 s
    second = Forwarder(again, queue, poll_seconds=0.05)
    with pynetdicom_peer(dicom, node, port) as peer:
        second.start()
        _wait_for(lambda: queue.jobs(SENT) != [])
        second.stop()
    assert sorted(peer.received) == sorted(study[1])
    assert queue.jobs(SENT)[0].id == waiting.id


def test_a_late_commitment_report_on_a_new_association_is_not_accepted(dicom: RunningDicom) -> None:
    node, _ = enrol_destination(dicom, "TELERAD")
    contexts = [build_context(StorageCommitmentPushModel), build_context(Verification)]
    with _association(dicom, node, contexts) as assoc:
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    assert accepted == {str(Verification)}
