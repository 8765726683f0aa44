"""The forwarding queue: durable jobs (``forward_jobs``) that send a study or series to an enrolled node.

A job is committed before whoever asked for it gets an answer, so it survives a crash or a
restart; the sender (:mod:`pacs.dicom.forwarder`) claims due jobs one at a time. A claim
counts the attempt and moves ``next_attempt_at`` on by the back-off of :class:`RetryPolicy`
(30 s, doubling, at most an hour apart), so a sender that dies mid-job leaves a job that is
simply due again later. After ``max_attempts`` attempts, or once the job is ``max_age`` old,
a job that still has not been sent is ``failed``; :meth:`ForwardQueue.retry` puts it back.
The instances a job has delivered are kept (``forward_sent``), so a retry sends only the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from pacs.core.nodes import NodeRegistry
from storage.db import Database
from storage.errors import PacsError
from storage.models import ForwardJob, ForwardSent, Patient, Series, Study

PENDING, SENT, FAILED = "pending", "sent", "failed"
STATES = (PENDING, FAILED, SENT)
NOT_OFFERED, CONFIRMED, COMMIT_FAILED, COMMIT_PENDING = "not offered", "confirmed", "failed", "pending"
LIST_LIMIT = 500


class ForwardError(PacsError, ValueError):
    """A forwarding request or queue action cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a job that could not be sent is tried again: `base` doubling to `cap`, then given up."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 24
    max_age: timedelta = timedelta(days=3)

    def delay(self, attempts: int) -> timedelta:
        """How long after attempt number `attempts` (1, 2, ...) the next one is due."""
        return min(self.base * 2 ** max(attempts - 1, 0), self.cap)

    def gives_up(self, attempts: int, created: datetime, now: datetime) -> bool:
        """Whether a job of `attempts` attempts created at `created` is failed for good at `now`."""
        return attempts >= self.max_attempts or now - _aware(created) >= self.max_age


@dataclass(frozen=True)
class Job:
    """One row of the queue, as the CLI and the web page list it."""

    id: int
    created_at: datetime
    destination: str
    study_uid: str
    series_uid: str
    requested_by: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    sent: int
    failed: int
    commitment: str
    finished_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        """The job as JSON-ready values (times in ISO 8601)."""
        values = dict(self.__dict__)
        for key in ("created_at", "next_attempt_at", "finished_at"):
            values[key] = values[key].isoformat() if values[key] is not None else None
        return values


@dataclass(frozen=True)
class Attempt:
    """What one attempt achieved: instances sent and failed, the commitment, and why it fell short."""

    sent: int
    failed: int
    commitment: str = NOT_OFFERED
    error: str = ""
    final: bool = False  # a failure no retry can mend (the study is in the trash, the node is gone)


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back: they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _job(row: ForwardJob) -> Job:
    values = {key: getattr(row, key) for key in Job.__dataclass_fields__}
    for key in ("created_at", "next_attempt_at", "finished_at"):
        values[key] = _aware(values[key]) if values[key] is not None else None
    return Job(**values)


class ForwardQueue:
    """The forwarding queue of one archive's index."""

    def __init__(self, database: Database, retry: RetryPolicy | None = None) -> None:
        self._database = database
        self.retry_policy = retry or RetryPolicy()
        self._registry = NodeRegistry(database)

    def check_destination(self, ae_title: str) -> None:
        """Raise :class:`ForwardError` unless `ae_title` is an enrolled node with a port and one address."""
        node = self._registry.get(ae_title)
        if node is None:
            raise ForwardError(f"no node with AE title {ae_title!r} is enrolled")
        if node.port is None:
            raise ForwardError(f"node {ae_title} has no port to send to; enrol it with a port")
        if node.network.num_addresses != 1:
            raise ForwardError(
                f"node {ae_title} is enrolled with a network ({node.network}), not one address"
            )

    def enqueue(self, destination: str, study_uid: str, series_uid: str = "", *, requested_by: str) -> Job:
        """Queue a study (or one series of it) for `destination`; the job is committed on return."""
        self.check_destination(destination)
        with self._database.write() as session:
            study = session.scalars(select(Study).where(Study.study_uid == study_uid)).one_or_none()
            if study is None or study.deleted_at is not None:
                raise ForwardError(f"no study {study_uid}")
            if series_uid and not session.scalar(
                select(Series.id).where(Series.study_fk == study.id, Series.series_uid == series_uid)
            ):
                raise ForwardError(f"study {study_uid} has no series {series_uid}")
            row = self._new_row(destination, study_uid, series_uid, requested_by)
            session.add(row)
            session.flush()
            return _job(row)

    def enqueue_patient(self, destination: str, patient_id: str, *, requested_by: str) -> list[Job]:
        """Queue every study of the patient(s) with `patient_id` for `destination`, one job per study."""
        self.check_destination(destination)
        with self._database.write() as session:
            uids = session.scalars(
                select(Study.study_uid)
                .join(Patient, Study.patient_fk == Patient.id)
                .where(Patient.patient_id == patient_id, Study.deleted_at.is_(None))
                .order_by(Study.study_date, Study.id)
            ).all()
            if not uids:
                raise ForwardError(f"no study of patient {patient_id!r}")
            rows = [self._new_row(destination, uid, "", requested_by) for uid in uids]
            session.add_all(rows)
            session.flush()
            return [_job(row) for row in rows]

    @staticmethod
    def _new_row(destination: str, study_uid: str, series_uid: str, requested_by: str) -> ForwardJob:
        now = datetime.now(UTC)
        return ForwardJob(
            created_at=now,
            destination=destination,
            study_uid=study_uid,
            series_uid=series_uid,
            requested_by=requested_by[:128],
            state=PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            sent=0,
            failed=0,
            commitment="",
        )

    def jobs(self, state: str | None = None, *, limit: int = LIST_LIMIT) -> list[Job]:
        """The jobs in `state` (all if None): pending by when they are due, the others newest first."""
        query = select(ForwardJob)
        if state is not None:
            query = query.where(ForwardJob.state == state)
        if state == PENDING:
            query = query.order_by(ForwardJob.next_attempt_at, ForwardJob.id)
        else:
            query = query.order_by(ForwardJob.id.desc())
        with self._database.read() as session:
            return [_job(row) for row in session.scalars(query.limit(limit))]

    def get(self, job_id: int) -> Job:
        """The job `job_id`; :class:`ForwardError` if there is none."""
        with self._database.read() as session:
            row = session.get(ForwardJob, job_id)
            if row is None:
                raise ForwardError(f"no forwarding job {job_id}")
            return _job(row)

    def claim(self, now: datetime | None = None) -> Job | None:
        """Take the next due job for an attempt (counted, and due again after its back-off), or None."""
        now = now or datetime.now(UTC)
        with self._database.write() as session:
            row = session.scalars(
                select(ForwardJob)
                .where(ForwardJob.state == PENDING, ForwardJob.next_attempt_at <= now)
                .order_by(ForwardJob.next_attempt_at, ForwardJob.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            row.attempts += 1
            row.next_attempt_at = now + self.retry_policy.delay(row.attempts)
            return _job(row)

    def delivered(self, job_id: int) -> set[tuple[str, int]]:
        """The (SOP Instance UID, version) pairs job `job_id` has delivered so far."""
        query = select(ForwardSent.sop_uid, ForwardSent.version).where(ForwardSent.job_id == job_id)
        with self._database.read() as session:
            return {(uid, version) for uid, version in session.execute(query)}

    def mark_delivered(self, job_id: int, sop_uid: str, version: int) -> None:
        """Record that the destination acknowledged `sop_uid` (`version`) of job `job_id`."""
        with self._database.write() as session:
            session.add(ForwardSent(job_id=job_id, sop_uid=sop_uid, version=version))

    def finish(self, job: Job, outcome: Attempt, now: datetime | None = None) -> Job:
        """Record an attempt's `outcome`: sent, failed for good, or pending until its back-off passes."""
        now = now or datetime.now(UTC)
        with self._database.write() as session:
            row = session.get(ForwardJob, job.id)
            if row is None:
                raise ForwardError(f"no forwarding job {job.id}")
            row.sent, row.failed, row.last_error = outcome.sent, outcome.failed, outcome.error[:2000]
            row.commitment = outcome.commitment
            if outcome.failed == 0 and not outcome.error:
                row.state, row.finished_at = SENT, now
            elif outcome.final or self.retry_policy.gives_up(row.attempts, row.created_at, now):
                row.state, row.finished_at = FAILED, now
            elif row.state == PENDING:
                row.next_attempt_at = now + self.retry_policy.delay(row.attempts)
            return _job(row)

    def retry(self, job_id: int) -> Job:
        """Put a failed job back (its attempts start again from 0), or make a pending one due now."""
        with self._database.write() as session:
            row = session.get(ForwardJob, job_id)
            if row is None:
                raise ForwardError(f"no forwarding job {job_id}")
            if row.state == SENT:
                raise ForwardError(f"forwarding job {job_id} was sent already; forward the study again")
            row.state, row.attempts, row.finished_at = PENDING, 0, None
            row.next_attempt_at = datetime.now(UTC)
            return _job(row)

    def cancel(self, job_id: int, *, by: str) -> Job:
        """Stop a pending job: it becomes failed, ``cancelled by`` `by` (and may be retried later)."""
        with self._database.write() as session:
            row = session.get(ForwardJob, job_id)
            if row is None:
                raise ForwardError(f"no forwarding job {job_id}")
            if row.state != PENDING:
                raise ForwardError(f"forwarding job {job_id} is {row.state}, not pending")
            row.state, row.finished_at = FAILED, datetime.now(UTC)
            row.last_error = f"cancelled by {by}"[:2000]
            return _job(row)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        query = select(ForwardJob.state, func.count()).group_by(ForwardJob.state)
        with self._database.read() as session:
            found = {state: count for state, count in session.execute(query)}
        return {state: int(found.get(state, 0)) for state in STATES}
