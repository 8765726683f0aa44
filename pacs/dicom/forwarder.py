"""The forwarding sender: takes due jobs of the queue and sends their studies with C-STORE over TLS.

One :class:`Forwarder` runs inside ``pacs serve`` (in the only, or the first, DICOM process).
For each job it claims (:meth:`pacs.ops.forward_queue.ForwardQueue.claim`), it opens one
association to the enrolled destination as our AE title, with the archive's server
certificate as client certificate and the destination's enrolled certificate as the only one
trusted, as C-MOVE does. Each current instance the job has not delivered yet goes out as C-MOVE's
sub-operations do (:func:`pacs.dicom.retrieve.sub_operation`): streamed from the archive in its
stored transfer syntax when the destination accepted it, else transcoded. Each acknowledged
instance is recorded at once, so a retry (or a restart) sends only the rest: every instance
arrives once. A job whose instances all arrived is ``sent``; otherwise it is retried with the
queue's back-off until it is given up.

Storage Commitment (Push Model): when the destination accepts the Storage Commitment Push Model
SOP Class on the association, an N-ACTION asks it to commit every instance the job delivered,
and the sender waits up to ``commitment_wait`` seconds for the N-EVENT-REPORT on the same
association: ``confirmed`` (event type 1), ``failed`` (event type 2, some instances not
committed; the job stays sent), or ``pending`` (no report in time). A destination that does not
accept the SOP class gets ``not offered``. A report sent later on a new association is not
accepted: our DICOM service does not negotiate Storage Commitment as an acceptor, so the job
stays ``pending``.

A study in the trash (or purged) is never sent: its job fails with the reason. Every attempt is
audited (:func:`pacs.core.care_events.study_forwarded`) before any object leaves (no record, no
attempt), and its outcome after it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from sqlalchemy import select

from pacs.core import care_events, tls
from pacs.core.audit import AuditEvent, Outcome
from pacs.core.context import SERVER_CERT, SERVER_KEY, Context
from pacs.core.nodes import EnrolledNode, NodeRegistry
from pacs.dicom import sending
from pacs.dicom.retrieve import MAX_CONTEXTS, retrieve_contexts, sub_operation
from pacs.ops.decodelimits import FrameLimit
from pacs.ops.forward_queue import (
    COMMIT_FAILED,
    COMMIT_PENDING,
    CONFIRMED,
    FAILED,
    NOT_OFFERED,
    SENT,
    Attempt,
    ForwardQueue,
    Job,
)
from storage.archive import InstanceInfo, NotFoundError
from storage.models import Patient, Study

LOG = logging.getLogger(__name__)
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known SOP Instance
REQUEST_COMMITMENT = 1  # N-ACTION Action Type ID
ALL_COMMITTED = 1  # N-EVENT-REPORT Event Type ID (2: failures exist)
STORED = frozenset({0x0000, 0x0001, 0xB000, 0xB006, 0xB007})  # success and the warnings
POLL_SECONDS = 2.0
COMMITMENT_WAIT_SECONDS = 30.0


@dataclass
class _Commitment:
    """One Storage Commitment request on an association, and the report that answers it."""

    transaction_uid: str = field(default_factory=lambda: str(generate_uid()))
    result: str = COMMIT_PENDING
    reported: threading.Event = field(default_factory=threading.Event)

    def request(self, instances: list[InstanceInfo]) -> Dataset:
        """The N-ACTION's Action Information: the transaction and every instance to commit."""
        action = Dataset()
        action.TransactionUID = self.transaction_uid
        action.ReferencedSOPSequence = []
        for info in instances:
            item = Dataset()
            item.ReferencedSOPClassUID = info.sop_class_uid
            item.ReferencedSOPInstanceUID = info.sop_uid
            action.ReferencedSOPSequence.append(item)
        return action

    def on_report(self, event: Event) -> tuple[int, Dataset | None]:
        """``EVT_N_EVENT_REPORT``: the destination's answer to our transaction (others are acknowledged)."""
        information = event.event_information
        if str(information.get("TransactionUID", "")) == self.transaction_uid:
            confirmed = event.event_type == ALL_COMMITTED and not information.get("FailedSOPSequence")
            self.result = CONFIRMED if confirmed else COMMIT_FAILED
            self.reported.set()
        return 0x0000, None


@dataclass
class _Tally:
    """What one attempt sent and failed, with the first reasons."""

    sent: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)

    def fail(self, count: int, reason: str) -> None:
        """Count `count` instances failed for `reason`."""
        self.failed += count
        if reason and reason not in self.reasons:
            self.reasons.append(reason)

    def error(self) -> str:
        """The reasons, one line."""
        return "; ".join(self.reasons[:3])


class Forwarder:
    """The sender of one archive's forwarding queue: start it, let it run, stop it."""

    def __init__(
        self,
        pacs: Context,
        queue: ForwardQueue,
        *,
        frame_limit: FrameLimit | None = None,
        poll_seconds: float = POLL_SECONDS,
        commitment_wait: float = COMMITMENT_WAIT_SECONDS,
    ) -> None:
        self.pacs = pacs
        self.queue = queue
        self.registry = NodeRegistry(pacs.database)
        max_frame = pacs.settings.dicom.max_frame_mb * 2**20
        self.frame_limit = frame_limit or FrameLimit(max_frame, "[dicom] max_frame_mb")
        self.poll_seconds = poll_seconds
        self.commitment_wait = commitment_wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Send due jobs in a background thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the instance being sent; a job cut short is due again after its back-off."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:
                LOG.exception("forwarding failed; trying again in %.0f s", self.poll_seconds)
            self._stop.wait(self.poll_seconds)

    def run_due(self) -> list[Job]:
        """Attempt every job that is due now, each once, one after the other; return them as they ended."""
        done, started = [], datetime.now(UTC)
        while not self._stop.is_set():
            job = self.queue.claim(started)
            if job is None:
                break
            done.append(self.attempt(job))
        return done

    def attempt(self, job: Job) -> Job:
        """One attempt at `job` (claimed already), recorded in the queue and audited."""
        patient_id, attempt = self._try(job)
        finished = self.queue.finish(job, attempt)
        outcome = {SENT: Outcome.SUCCESS, FAILED: Outcome.SERIOUS_FAILURE}.get(finished.state)
        self.pacs.audit.append_after(
            self._event(
                job,
                patient_id,
                finished.state,
                outcome if outcome is not None else Outcome.MINOR_FAILURE,
                sent=attempt.sent,
                failed=attempt.failed,
                commitment=attempt.commitment,
                error=attempt.error,
            )
        )
        return finished

    def _event(
        self, job: Job, patient_id: str, stage: str, outcome: Outcome = Outcome.SUCCESS, **details: object
    ) -> AuditEvent:
        """The audit record of an attempt at `job` (`stage`: ``sending``, or the state it ended in)."""
        return care_events.study_forwarded(
            by=job.requested_by,
            source=self.pacs.settings.dicom.ae_title,
            patient_id=patient_id,
            study_uid=job.study_uid,
            destination=job.destination,
            outcome=outcome,
            stage=stage,
            job=job.id,
            attempt=job.attempts,
            **details,
        )

    def _study(self, study_uid: str) -> tuple[str, bool] | None:
        """The patient ID of the study and whether it is in the trash; None if it is not in the archive."""
        query = (
            select(Patient.patient_id, Study.deleted_at)
            .join(Study, Study.patient_fk == Patient.id)
            .where(Study.study_uid == study_uid)
        )
        with self.pacs.database.read() as session:
            row = session.execute(query).first()
        return None if row is None else (row[0], row[1] is not None)

    def _instances(self, job: Job) -> list[InstanceInfo]:
        """The study's (or series') current instances; NotFoundError if there are none."""
        instances = [
            info
            for info in self.pacs.archive.study_instances(job.study_uid)
            if not job.series_uid or info.series_uid == job.series_uid
        ]
        if not instances:
            raise NotFoundError(f"series {job.series_uid} is no longer in the study")
        return instances

    def _try(self, job: Job) -> tuple[str, Attempt]:
        """Check the job can be sent, audit the attempt, then send; the patient ID and the outcome."""
        study = self._study(job.study_uid)
        if study is None or study[1]:
            where = "in the trash" if study is not None else "no longer in the archive"
            return (study[0] if study else ""), Attempt(0, 0, error=f"the study is {where}", final=True)
        patient_id = study[0]
        node = self.registry.get(job.destination)
        if node is None or node.port is None or node.network.num_addresses != 1:
            why = "is not enrolled" if node is None else "has no port and address to send to"
            return patient_id, Attempt(0, 0, error=f"node {job.destination} {why}", final=True)
        try:
            instances = self._instances(job)
        except NotFoundError as error:
            return patient_id, Attempt(0, 0, error=str(error), final=True)
        try:
            self.pacs.audit.append(self._event(job, patient_id, "sending", instances=len(instances)))
        except Exception:
            LOG.exception("could not write the audit record of forwarding job %s; not sending", job.id)
            return patient_id, Attempt(0, len(instances), error="the audit trail cannot be written")
        return patient_id, self._send(job, node, instances)

    def _associate(
        self,
        node: EnrolledNode,
        instances: list[InstanceInfo],
        outbox: sending.Outbox,
        commitment: _Commitment,
    ) -> tuple[AE, Association]:
        """An association with `node` proposing what `instances` need and Storage Commitment."""
        settings = self.pacs.settings
        ae = AE(ae_title=settings.dicom.ae_title)
        ae.acse_timeout = settings.dicom.acse_timeout
        ae.dimse_timeout = settings.dicom.dimse_timeout
        ae.network_timeout = settings.dicom.network_timeout
        contexts = retrieve_contexts(instances)[: MAX_CONTEXTS - 1]
        contexts.append(build_context(STORAGE_COMMITMENT, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        context = tls.client_context(
            settings.tls_dir / SERVER_CERT, settings.key_dir / SERVER_KEY, node.cert_pem
        )
        assoc = ae.associate(
            str(node.network.network_address),
            int(node.port or 0),
            contexts=contexts,
            ae_title=node.ae_title,
            tls_args=(context, None),
            evt_handlers=[*outbox.handlers(), (evt.EVT_N_EVENT_REPORT, commitment.on_report)],
        )
        return ae, assoc

    def _send(self, job: Job, node: EnrolledNode, instances: list[InstanceInfo]) -> Attempt:
        """Send what `job` has not delivered of `instances` on one association, then ask for commitment."""
        delivered = self.queue.delivered(job.id)
        todo = [info for info in instances if (info.sop_uid, info.version) not in delivered]
        tally = _Tally(sent=len(instances) - len(todo))
        outbox, commitment = sending.Outbox(), _Commitment()
        ae, assoc = self._associate(node, todo or instances, outbox, commitment)
        try:
            if not assoc.is_established:
                tally.fail(len(todo), f"{node.ae_title} did not accept an association")
                return Attempt(tally.sent, tally.failed, error=tally.error())
            for number, info in enumerate(todo):
                if self._stop.is_set() or not assoc.is_established:
                    tally.fail(len(todo) - number, "the association ended before every object was sent")
                    break
                self._store(job, assoc, outbox, info, tally)
            result = NOT_OFFERED
            if assoc.is_established and tally.failed == 0:
                result = self._commit(assoc, commitment, instances)
            return Attempt(tally.sent, tally.failed, commitment=result, error=tally.error())
        finally:
            outbox.close()
            if assoc.is_established:
                assoc.release()
            ae.shutdown()

    def _store(
        self, job: Job, assoc: Association, outbox: sending.Outbox, info: InstanceInfo, tally: _Tally
    ) -> None:
        """Send one instance; count it, and record it delivered when the destination acknowledged it."""
        dataset = sub_operation(self.pacs.archive, self.frame_limit, outbox, info, streams=True)
        if "TransferSyntaxUID" not in dataset.file_meta:
            tally.fail(1, outbox.failures[-1] if outbox.failures else "the object cannot be sent")
            return
        try:
            status = assoc.send_c_store(dataset)
        except (ValueError, RuntimeError) as error:
            tally.fail(1, str(error).splitlines()[0][:200])
            return
        code = status.get("Status") if status else None
        if code in STORED:
            self.queue.mark_delivered(job.id, info.sop_uid, info.version)
            tally.sent += 1
        elif code is None:
            tally.fail(1, outbox.failures[-1] if outbox.failures else "no answer to a C-STORE request")
        else:
            tally.fail(1, f"the destination answered status 0x{code:04X}")

    def _commit(self, assoc: Association, commitment: _Commitment, instances: list[InstanceInfo]) -> str:
        """Ask the destination to commit `instances`; the commitment's state."""
        offered = any(
            cx.abstract_syntax == STORAGE_COMMITMENT and cx.as_scu for cx in assoc.accepted_contexts
        )
        if not offered:
            return NOT_OFFERED
        status, _ = assoc.send_n_action(
            commitment.request(instances), REQUEST_COMMITMENT, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
        if not status or status.get("Status") != 0x0000:
            return COMMIT_FAILED
        commitment.reported.wait(self.commitment_wait)
        return commitment.result
