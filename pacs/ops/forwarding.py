"""Forwarding requests: by hand (a study, a series, a patient) and by the ``[[route]]`` rules, each audited.

Every request becomes jobs of :class:`pacs.ops.forward_queue.ForwardQueue`, committed before
the request is answered; :mod:`pacs.dicom.forwarder` sends them. A request by hand is audited
(:func:`pacs.core.care_events.study_forwarded`, stage ``queued``) before its answer: a request
whose record cannot be written is not answered as done. When an association that stored objects
ends, :meth:`Forwarding.delivered` queues each study that got new objects from it, once per
study and route, for every route that matches (``requested_by`` ``route:NAME``); a study is
never routed back to the node that sent it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select

from pacs.core import care_events
from pacs.core.audit import AuditLog
from pacs.core.config_routes import Route, unknown_destinations
from pacs.core.nodes import NodeRegistry
from pacs.ops.forward_queue import ForwardError, ForwardQueue, Job
from storage.db import Database
from storage.errors import PacsError
from storage.models import Patient, Series, Study

LOG = logging.getLogger(__name__)


class RouteCheckError(PacsError):
    """A ``[[route]]`` names a destination that is not an enrolled node with a port."""


def route_problems(database: Database, routes: Iterable[Route]) -> list[str]:
    """One line per route whose destination is not an enrolled node with a port."""
    ports = {node.ae_title: node.port for node in NodeRegistry(database).all()}
    return unknown_destinations(routes, ports)


def check_routes(database: Database, routes: Iterable[Route]) -> None:
    """Raise :class:`RouteCheckError` (the first problem, and how many more) if a route is invalid."""
    problems = route_problems(database, routes)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RouteCheckError(f"pacs.toml: {problems[0]}{more}; enrol the node or fix the [[route]]")


class Forwarding:
    """Forwarding requests of one archive: its queue, its routes and its audit trail."""

    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        routes: tuple[Route, ...],
        queue: ForwardQueue | None = None,
    ) -> None:
        self.database = database
        self.audit = audit
        self.routes = routes
        self.queue = queue or ForwardQueue(database)

    def _patient_id(self, study_uid: str) -> str:
        query = (
            select(Patient.patient_id)
            .join(Study, Study.patient_fk == Patient.id)
            .where(Study.study_uid == study_uid)
        )
        with self.database.read() as session:
            return session.scalar(query) or ""

    def _audit_queued(
        self, job: Job, *, source: str, after: bool = False, by: str = "", stage: str = "queued"
    ) -> None:
        event = care_events.study_forwarded(
            by=by or job.requested_by,
            source=source,
            patient_id=self._patient_id(job.study_uid),
            study_uid=job.study_uid,
            destination=job.destination,
            stage=stage,
            job=job.id,
            series_uid=job.series_uid,
        )
        if after:
            self.audit.append_after(event)
        else:
            self.audit.append(event)

    def forward_study(self, study_uid: str, to: str, *, by: str, source: str, series_uid: str = "") -> Job:
        """Queue a study (or one of its series) for node `to`, audited; :class:`ForwardError` if not."""
        job = self.queue.enqueue(to, study_uid.strip(), series_uid.strip(), requested_by=by)
        self._audit_queued(job, source=source)
        return job

    def forward_patient(self, patient_id: str, to: str, *, by: str, source: str) -> list[Job]:
        """Queue every study of a patient for node `to`, one job per study, each audited."""
        jobs = self.queue.enqueue_patient(to, patient_id, requested_by=by)
        for job in jobs:
            self._audit_queued(job, source=source)
        return jobs

    def retry(self, job_id: int, *, by: str, source: str) -> Job:
        """Put a failed job back (or make a pending one due now), audited (stage ``retry``)."""
        job = self.queue.retry(job_id)
        self._audit_queued(job, source=source, after=True, by=by, stage="retry")
        return job

    def cancel(self, job_id: int, *, by: str, source: str) -> Job:
        """Stop a pending job, audited (stage ``cancelled``)."""
        job = self.queue.cancel(job_id, by=by)
        self._audit_queued(job, source=source, after=True, by=by, stage="cancelled")
        return job

    def _modalities(self, study_uids: list[str]) -> dict[str, set[str]]:
        """The modalities of the series of each study in `study_uids`."""
        query = (
            select(Study.study_uid, Series.modality)
            .join(Series, Series.study_fk == Study.id)
            .where(Study.study_uid.in_(study_uids))
        )
        found: dict[str, set[str]] = {uid: set() for uid in study_uids}
        with self.database.read() as session:
            for uid, modality in session.execute(query):
                found[uid].add(str(modality or "").upper())
        return found

    def delivered(self, from_ae: str, study_uids: Iterable[str], source: str = "") -> list[Job]:
        """Queue, for every matching route, each study an association from `from_ae` delivered.

        Called when the association ends; a route's destination that cannot be sent to is
        logged and skipped (``pacs selfcheck`` reports it), never an error for the sender.
        """
        uids = sorted(set(study_uids))
        if not self.routes or not uids:
            return []
        modalities = self._modalities(uids)
        jobs = []
        for route in self.routes:
            for uid in uids:
                if route.to == from_ae or not route.matches(from_ae, modalities.get(uid, ())):
                    continue
                try:
                    job = self.queue.enqueue(route.to, uid, requested_by=f"route:{route.name}")
                except ForwardError as error:
                    LOG.warning("route %s did not queue study %s: %s", route.name, uid, error)
                    continue
                self._audit_queued(job, source=source, after=True)
                jobs.append(job)
        return jobs
