"""Forwarding pages: the queue (admin role) and the form that sends a study on (admin and physician roles).

``/admin/forwarding`` lists the jobs of :class:`pacs.ops.forward_queue.ForwardQueue`, pending
(with when each is tried next), failed and sent, with buttons to retry and cancel, and the
``[[route]]`` rules of pacs.toml, read-only (they are edited there; a route to a node that
cannot receive is flagged). It shows AE titles, UIDs and counts, never a patient's name, so
the admin role suffices. ``/admin/studies/<uid>/forward`` is reached from the study care page
and shows the patient, so it needs both roles, as study care does: it queues the study, or one
of its series, for a node enrolled with a port. Every action goes through
:class:`pacs.ops.forwarding.Forwarding`, audited with the user and the address.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for

from pacs.core.access_events import study_viewed
from pacs.core.nodes import EnrolledNode, NodeRegistry
from pacs.ops.forward_queue import FAILED, PENDING, SENT
from pacs.ops.forwarding import Forwarding, route_problems
from storage import study_details
from storage.archive import Archive
from storage.errors import NotFoundError, PacsError
from storage.header import is_valid_uid
from storage.study_details import StudyDetails
from webviewer.auth import admin_required, me, record, roles_required, source

bp = Blueprint("forwarding", __name__, url_prefix="/admin")
forward_required = roles_required("admin", "physician")
SHOWN = 200


def _archive() -> Archive:
    return current_app.extensions["pacs"].archive


def _forwarding() -> Forwarding:
    services = current_app.extensions["pacs"]
    return Forwarding(services.archive.database, services.audit, services.config.routes)


def _destinations() -> list[EnrolledNode]:
    """The enrolled nodes a study can be sent to: those with a port and one address."""
    nodes = NodeRegistry(_archive().database).all()
    return [node for node in nodes if node.port is not None and node.network.num_addresses == 1]


@bp.get("/forwarding")
@admin_required
def queue() -> str:
    """The forwarding queue, pending, failed and sent, and the rules."""
    forwarding = _forwarding()
    jobs = {state: forwarding.queue.jobs(state, limit=SHOWN) for state in (PENDING, FAILED, SENT)}
    return render_template(
        "forwarding/queue.html",
        jobs=jobs,
        counts=forwarding.queue.counts(),
        shown=SHOWN,
        policy=forwarding.queue.retry_policy,
        routes=forwarding.routes,
        problems=route_problems(forwarding.database, forwarding.routes),
    )


def _job_action(job_id: int, action: str) -> Response:
    forwarding = _forwarding()
    try:
        if action == "retry":
            job = forwarding.retry(job_id, by=me(), source=source())
            flash(f"Job {job.id} is due now: it is sent within seconds if {job.destination} answers.")
        else:
            job = forwarding.cancel(job_id, by=me(), source=source())
            flash(f"Job {job.id} is cancelled; it is listed with the failed jobs and can be retried.")
    except PacsError as error:
        flash(str(error))
    return redirect(url_for("forwarding.queue"))


@bp.post("/forwarding/<int:job_id>/retry")
@admin_required
def retry(job_id: int) -> Response:
    """Put a failed job back, or make a pending one due now."""
    return _job_action(job_id, "retry")


@bp.post("/forwarding/<int:job_id>/cancel")
@admin_required
def cancel(job_id: int) -> Response:
    """Stop a pending job."""
    return _job_action(job_id, "cancel")


def _study(study_uid: str) -> StudyDetails:
    """The study the form sends, if it is in the archive and not in the trash; else 404."""
    if not is_valid_uid(study_uid):
        abort(404)
    try:
        with _archive().database.read() as session:
            found = study_details.details(session, study_uid)
    except NotFoundError:
        abort(404)
    if found.ref.deleted_at is not None:
        abort(404)
    return found


def _form(found: StudyDetails, status: int = 200) -> tuple[str, int]:
    chosen = {"to": request.form.get("to", ""), "series": request.form.get("series", "")}
    page = render_template("forwarding/form.html", study=found, destinations=_destinations(), chosen=chosen)
    return page, status


@bp.get("/studies/<study_uid>/forward")
@forward_required
def form(study_uid: str) -> tuple[str, int]:
    """Choose where to send the study (and, optionally, which series)."""
    found = _study(study_uid)
    record(
        study_viewed(
            me(), source=source(), patient_id=found.ref.patient_id, study_uid=study_uid, how="forward form"
        )
    )
    return _form(found)


@bp.post("/studies/<study_uid>/forward")
@forward_required
def forward(study_uid: str) -> Response | tuple[str, int]:
    """Queue the study (or the chosen series) for the chosen node."""
    found = _study(study_uid)
    to, series = request.form.get("to", "")[:16], request.form.get("series", "")[:64]
    if not to:
        flash("Destination: choose the node to send the study to.")
        return _form(found, 400)
    try:
        job = _forwarding().forward_study(study_uid, to, by=me(), source=source(), series_uid=series)
    except PacsError as error:
        flash(str(error))
        return _form(found, 400)
    what = "The series" if series else "The study"
    flash(f"{what} is queued for {job.destination} as job {job.id}; it goes out soon if the node answers.")
    return redirect(url_for("forwarding.queue"))
