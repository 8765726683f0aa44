"""Study care pages (admin and physician roles): find studies, look at one, delete, restore, purge, erase.

``/admin/studies`` searches by patient ID, name and study date, the active studies or those in
the trash; ``/admin/studies/<uid>`` shows a study, in the trash or not, with its attributes,
series, state and history, and links to the other care pages (edit, move, forward, anonymize,
merge). Deleting asks for a reason on a confirmation page; purging and erasing a patient (every
study of theirs to the trash) are confirmed too. The actions are those of
:mod:`pacs.ops.study_trash`, audited with the user, the reason and the address; looking is
audited as a query or a study opened. A refused action changes nothing and says why.
"""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for

from pacs.core.access_events import query_run, study_viewed
from pacs.ops import study_trash
from pacs.ops.study_trash import Actor
from storage import study_details, trash
from storage.archive import Archive
from storage.errors import NotFoundError, PacsError
from storage.header import is_valid_uid
from storage.study_details import StudyDetails
from storage.trash import StudyRef
from webviewer import people, studies
from webviewer.auth import me, record, roles_required, source

bp = Blueprint("care", __name__, url_prefix="/admin")
care_required = roles_required("admin", "physician")
LIST_LIMIT = 200


def _archive() -> Archive:
    return current_app.extensions["pacs"].archive


def _actor() -> Actor:
    return Actor(me(), source())


def _reason() -> str:
    return request.form.get("reason", "")[:1000]


def _details(study_uid: str) -> StudyDetails:
    """The study as its page shows it; 404 if the index has none."""
    if not is_valid_uid(study_uid):
        abort(404)
    try:
        with _archive().database.read() as session:
            return study_details.details(session, study_uid)
    except NotFoundError:
        abort(404)


@bp.get("/studies")
@care_required
def index() -> str:
    """The studies found by patient ID, name and date; with ``trash=1`` those in the trash."""
    in_trash = request.args.get("trash") == "1"
    search = replace(studies.read_search(), trash=in_trash, limit=LIST_LIMIT + 1)
    rows = _archive().search_studies(search)
    keys = {**studies.criteria(search), **({"trash": True} if in_trash else {})}
    record(query_run(by=me(), source=source(), what="study care list", keys=keys))
    with _archive().database.read() as session:
        counts = study_details.instance_counts(session, [row.study_uid for row in rows])
    return render_template(
        "care/list.html",
        studies=[studies.listed(row) for row in rows[:LIST_LIMIT]],
        counts=counts,
        search=search,
        in_trash=in_trash,
        more=len(rows) > LIST_LIMIT,
    )


@bp.get("/studies/<study_uid>")
@care_required
def show(study_uid: str) -> str:
    """One study: attributes, series, state, history, and what can be done to it."""
    found = _details(study_uid)
    record(
        study_viewed(
            me(), source=source(), patient_id=found.ref.patient_id, study_uid=study_uid, how="care page"
        )
    )
    shown = {
        "name": people.person_name(found.ref.patient_name).name,
        "born": people.iso_date(found.birth_date) or found.birth_date,
        "date": people.iso_date(found.ref.study_date) or found.ref.study_date,
        "time": people.iso_time(found.study_time)[:5],
    }
    return render_template("care/show.html", study=found, shown=shown)


def _confirm(template: str, found: StudyDetails, error: PacsError | None = None) -> tuple[str, int]:
    """A confirmation page again, with why the action was refused."""
    if error is not None:
        flash(str(error))
    return render_template(template, study=found, reason=_reason()), 400


@bp.get("/studies/<study_uid>/delete")
@care_required
def delete_form(study_uid: str) -> str:
    """Confirm moving the study to the trash, with a reason."""
    return render_template("care/delete.html", study=_details(study_uid), reason="")


@bp.post("/studies/<study_uid>/delete")
@care_required
def delete(study_uid: str) -> Response | tuple[str, int]:
    """Move the study to the trash."""
    found = _details(study_uid)
    try:
        study_trash.delete_study(
            _archive(), current_app.extensions["pacs"].audit, study_uid, _actor(), _reason()
        )
    except PacsError as exc:
        return _confirm("care/delete.html", found, exc)
    flash("The study is in the trash: no query or viewer finds it. It can be restored until it is purged.")
    return redirect(url_for("care.show", study_uid=study_uid))


@bp.post("/studies/<study_uid>/restore")
@care_required
def restore(study_uid: str) -> Response:
    """Bring the study back from the trash."""
    _details(study_uid)
    try:
        study_trash.restore_study(_archive(), current_app.extensions["pacs"].audit, study_uid, _actor())
    except PacsError as exc:
        flash(str(exc))
        return redirect(url_for("care.show", study_uid=study_uid))
    flash("The study is restored: it is found and shown everywhere again.")
    return redirect(url_for("care.show", study_uid=study_uid))


@bp.get("/studies/<study_uid>/purge")
@care_required
def purge_form(study_uid: str) -> str:
    """Confirm destroying the trashed study for good."""
    return render_template("care/purge.html", study=_details(study_uid), reason="")


@bp.post("/studies/<study_uid>/purge")
@care_required
def purge(study_uid: str) -> Response | tuple[str, int]:
    """Destroy the trashed study and every version of its objects."""
    found = _details(study_uid)
    if request.form.get("confirm") != "yes":
        return _confirm(
            "care/purge.html", found, PacsError("Tick the box to confirm: the purge cannot be undone.")
        )
    try:
        study_trash.purge_study(
            _archive(), current_app.extensions["pacs"].audit, study_uid, _actor(), _reason()
        )
    except PacsError as exc:
        return _confirm("care/purge.html", found, exc)
    flash(f"Study {study_uid} is purged: its objects are destroyed.")
    return redirect(url_for("care.index", trash="1"))


def _patient_studies(patient_id: str) -> list[StudyRef]:
    """Every study of the patient (trashed or not); 404 if there is none."""
    try:
        with _archive().database.read() as session:
            return trash.patient_studies(session, patient_id)
    except NotFoundError:
        abort(404)


@bp.get("/patients/erase")
@care_required
def erase_form() -> str:
    """Confirm moving every study of a patient to the trash (an erasure request)."""
    patient_id = request.args.get("patient", "")[:64]
    return render_template(
        "care/erase.html", patient_id=patient_id, studies=_patient_studies(patient_id), reason=""
    )


@bp.post("/patients/erase")
@care_required
def erase() -> Response | tuple[str, int]:
    """Move every study of the patient to the trash, in one action."""
    patient_id = request.form.get("patient", "")[:64]
    found = _patient_studies(patient_id)
    try:
        if request.form.get("confirm") != "yes":
            raise PacsError("Tick the box to confirm that every study of this patient goes to the trash.")
        moved = study_trash.erase_patient(
            _archive(), current_app.extensions["pacs"].audit, patient_id, _actor(), _reason()
        )
    except PacsError as exc:
        flash(str(exc))
        context = {"patient_id": patient_id, "studies": found, "reason": _reason()}
        return render_template("care/erase.html", **context), 400
    flash(f"{len(moved)} studies of patient {patient_id} are in the trash.")
    return redirect(url_for("care.index", trash="1", patient_id=patient_id))
