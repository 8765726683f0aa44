"""Correction pages (admin and physician roles): edit a study, move it, merge patients, its history, undo.

They call :mod:`pacs.ops.corrections`, which writes new versions of the objects and audits each
action with the user, the reason and the address it came from. The forms carry the limits
of the attributes' Value Representations (:data:`pacs.ops.correction_values.FIELDS`) and say
them; the server checks them again. A refused action is shown on the page it came from, in
one line naming the field, and nothing is changed.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for

from pacs.ops import corrections
from pacs.ops.correction_values import FIELDS
from storage import changes
from storage.errors import NotFoundError, PacsError
from storage.header import is_valid_uid
from storage.versions import PATIENT_KEYWORDS, value_of
from webviewer.auth import me, roles_required, source

bp = Blueprint("corrections", __name__, url_prefix="/admin")
care_required = roles_required("admin", "physician")


def _care() -> corrections.Care:
    return current_app.extensions["pacs"]


def _actor() -> corrections.Actor:
    return corrections.Actor(by=me(), source=source(), reason=request.form.get("reason", ""))


def _current_values(study_uid: str) -> dict[str, str]:
    """The editable attributes of the study as its first current object holds them; 404 if unknown."""
    if not is_valid_uid(study_uid):
        abort(404)
    archive = _care().archive
    try:
        first = archive.study_instances(study_uid)[0]
    except NotFoundError:
        abort(404)
    head = archive.dataset_without_pixels(first)
    return {keyword: value_of(head, keyword) for keyword in FIELDS}


def _refused(template: str, exc: PacsError, **context: object) -> tuple[str, int]:
    """The form again, with why the action was refused."""
    flash(str(exc))
    return render_template(template, **context), 400


@bp.get("/studies/<study_uid>/edit")
@care_required
def edit_form(study_uid: str) -> str:
    """The study's patient and study attributes in a form, with a reason to give."""
    values = _current_values(study_uid)
    return render_template(
        "corrections/edit.html", study_uid=study_uid, values=values, fields=FIELDS, reason=""
    )


@bp.post("/studies/<study_uid>/edit")
@care_required
def edit(study_uid: str) -> Response | tuple[str, int]:
    """Correct the attributes that differ from the current ones."""
    current = _current_values(study_uid)
    submitted = {keyword: request.form.get(keyword, current[keyword]) for keyword in FIELDS}
    wanted = {key: value.strip() for key, value in submitted.items() if value.strip() != current[key]}
    try:
        change = corrections.edit(_care(), study_uid, wanted, _actor())
    except PacsError as exc:
        context = {"study_uid": study_uid, "values": submitted, "fields": FIELDS}
        return _refused("corrections/edit.html", exc, reason=request.form.get("reason", ""), **context)
    flash(f"Change {change.id}: {change.instances} objects now carry the corrected values.")
    return redirect(url_for("corrections.history", study_uid=study_uid))


@bp.get("/studies/<study_uid>/move")
@care_required
def move_form(study_uid: str) -> str:
    """Which patient the study belongs to, and a form to file it under another."""
    values = _current_values(study_uid)
    return render_template("corrections/move.html", study_uid=study_uid, values=values, form={})


@bp.post("/studies/<study_uid>/move")
@care_required
def move(study_uid: str) -> Response | tuple[str, int]:
    """File the study under the patient record with the Patient ID (and issuer) given."""
    values = _current_values(study_uid)
    target = request.form.get("patient_id", "").strip()
    issuer = request.form.get("issuer", "").strip() or None
    try:
        change = corrections.move(_care(), study_uid, target, issuer, _actor())
    except PacsError as exc:
        return _refused("corrections/move.html", exc, study_uid=study_uid, values=values, form=request.form)
    flash(f"Change {change.id}: the study is now filed under Patient ID {target}.")
    return redirect(url_for("corrections.history", study_uid=study_uid))


@bp.get("/patients/merge")
@care_required
def merge_form() -> str:
    """A form naming the patient record merged away and the one kept."""
    return render_template("corrections/merge.html", form=request.args)


@bp.post("/patients/merge")
@care_required
def merge() -> Response | tuple[str, int]:
    """Move every study of one patient record to another."""
    form = request.form
    database = _care().archive.database
    try:
        from_record = changes.one_patient(
            database, form.get("from_patient", "").strip(), form.get("from_issuer", "").strip() or None
        )
        into = changes.one_patient(
            database, form.get("into_patient", "").strip(), form.get("into_issuer", "").strip() or None
        )
        change = corrections.merge(_care(), from_record, into, _actor())
    except PacsError as exc:
        return _refused("corrections/merge.html", exc, form=form)
    flash(f"Change {change.id}: {len(change.studies)} studies moved to Patient ID {into.patient_id}.")
    return redirect(url_for("corrections.history", study_uid=change.studies[0].study_uid))


@bp.get("/studies/<study_uid>/history")
@care_required
def history(study_uid: str) -> str:
    """The study's changes, newest first, each correction with an undo form."""
    values = _current_values(study_uid)
    entries = corrections.study_history(_care(), study_uid)
    return render_template(
        "corrections/history.html",
        study_uid=study_uid,
        values=values,
        entries=list(reversed(entries)),
        fields=FIELDS,
        patient_keywords=PATIENT_KEYWORDS,
        undoable=changes.CORRECTIONS,
    )


@bp.post("/changes/<int:change_id>/undo")
@care_required
def undo(change_id: int) -> Response:
    """Give the studies of a change their values before it; back to the history page."""
    back = request.form.get("study_uid", "")
    if not is_valid_uid(back):
        abort(400)
    try:
        change = corrections.undo(_care(), change_id, _actor())
    except PacsError as exc:
        flash(str(exc))
    else:
        flash(f"Change {change.id} undid change {change_id}: {change.instances} objects restored.")
    return redirect(url_for("corrections.history", study_uid=back))
