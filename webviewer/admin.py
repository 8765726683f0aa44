"""Admin pages (admin role only): users, modalities, the audit log and the system status.

Enrolment and the system's status come from an :class:`AdminBackend` that ``pacs``
passes in, so this package does not reach into the DICOM side. Every action is audited,
and so is every look at the audit log. One-time passwords and issued private keys are
shown or downloaded once, in the answer to the POST, and kept nowhere.

Granting a node find, move or get lets it read every patient's data: the backend refuses
such a PHI grant (:class:`GrantRefusedError`) unless the admin is also a physician, and the
refusal is answered 403 and audited as a use of a restricted function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for

from pacs.core import events
from pacs.core.accounts import AccountError, Accounts, parse_roles
from pacs.core.audit import Action
from storage.errors import PacsError
from webviewer.audit_view import EVENT_CHOICES, audit_row, read_filters
from webviewer.auth import admin_required, current_account, record, source
from webviewer.paging import current_page, neighbours

bp = Blueprint("admin", __name__, url_prefix="/admin")
AUDIT_PAGE = 50


@dataclass(frozen=True)
class ModalityRow:
    """An enrolled node as the modalities page lists it."""

    ae_title: str
    host: str
    port: int | None
    permissions: str
    certificate: str
    plaintext: bool
    phi: bool = False


@dataclass(frozen=True)
class StatusRow:
    """One fact of the system status (what and its value); judging it is the findings' job."""

    what: str
    value: str


@dataclass(frozen=True)
class StatusFinding:
    """A finding of ``pacs selfcheck``: the check, what is wrong, and the fix."""

    check: str
    message: str
    fix: str


@dataclass(frozen=True)
class Posture:
    """What ``pacs selfcheck`` reports: the checks run, the findings, and the notes (check, message)."""

    checked: tuple[str, ...]
    findings: tuple[StatusFinding, ...]
    notes: tuple[tuple[str, str], ...]


class GrantRefusedError(PacsError, ValueError):
    """A PHI grant (find, move, get) the account may not make; `details` go to the audit record."""

    def __init__(self, message: str, details: dict[str, object]) -> None:
        super().__init__(message)
        self.details = details


class AdminBackend(Protocol):
    """What the admin pages need from the rest of the application."""

    def modalities(self) -> list[ModalityRow]:
        """The enrolled nodes."""
        ...

    def enrol(
        self, ae_title: str, host: str, allow: str, port: int | None, *, user: str, roles: frozenset[str]
    ) -> bytes:
        """Enrol a node with a certificate from our CA (audited); return the ZIP of its PEM files.

        Raises :class:`GrantRefusedError` for a PHI grant that `roles` may not make, and ValueError
        with a message for the admin when the input cannot be accepted.
        """
        ...

    def change_rights(self, ae_title: str, allow: str, *, user: str, roles: frozenset[str]) -> bool:
        """Give a node exactly the rights in `allow` (audited); False if it had them already.

        Raises as :meth:`enrol` does.
        """
        ...

    def remove(self, ae_title: str, *, user: str) -> None:
        """Remove an enrolled node (audited)."""
        ...

    def status(self) -> list[StatusRow]:
        """Disk, certificates and the like."""
        ...

    def posture(self, *, user: str) -> Posture:
        """Run every check of ``pacs selfcheck`` (audited as run by `user`) and return its report."""
        ...


def _backend() -> AdminBackend:
    backend = current_app.extensions["pacs"].admin
    if backend is None:
        abort(404)
    return backend


def _accounts() -> Accounts:
    return current_app.extensions["pacs"].accounts


def _me() -> str:
    account = current_account()
    assert account is not None
    return account.name


def _my_roles() -> frozenset[str]:
    account = current_account()
    assert account is not None
    return account.roles


def _refuse_grant(exc: GrantRefusedError, message: str) -> tuple[str, int]:
    """Audit a refused PHI grant and answer the modalities page with `message`, 403."""
    details = {**exc.details, "roles": sorted(_my_roles())}
    record(events.restricted_function_refused(_me(), "PHI grant refused", source=source(), **details))
    flash(message)
    return render_template("admin/modalities.html", nodes=_backend().modalities()), 403


def _audit_change(what: str, user: str) -> None:
    record(events.user_changed(Action.UPDATE, user, what, by=_me(), source=source()))


@bp.get("/users")
@admin_required
def users() -> str:
    """The users, with their state and open sessions."""
    sessions = current_app.extensions["pacs"].sessions.active_users()
    return render_template("admin/users.html", accounts=_accounts().all(), sessions=sessions)


@bp.post("/users")
@admin_required
def create_user() -> Response | str:
    """Create a user; the answer shows the one-time password, once."""
    name = request.form.get("name", "").strip()
    try:
        roles = parse_roles(",".join(request.form.getlist("roles")))
        account, password = _accounts().add(name, roles)
    except AccountError as exc:
        flash(str(exc))
        return redirect(url_for("admin.users"))
    _audit_change("user created", account.name)
    return render_template("admin/password.html", name=account.name, password=password)


_USER_ACTIONS = {
    "disable": "user disabled",
    "enable": "user enabled",
    "reset-totp": "second factor reset",
    "lift-lockout": "lockout lifted",
    "end-sessions": "sessions ended",
}


@bp.post("/users/<name>/<action>")
@admin_required
def user_action(name: str, action: str) -> Response | str:
    """Disable, enable, reset the password or 2FA of, unlock, or log out a user."""
    accounts = _accounts()
    target = accounts.get(name)
    if target is None or action not in (*_USER_ACTIONS, "reset-password"):
        flash("No such user or action.")
        return redirect(url_for("admin.users"))
    if action == "reset-password":
        password = accounts.reset_password(name, actor=_me())  # audits a lifted lockout
        _audit_change("password reset, sessions ended", name)
        return render_template("admin/password.html", name=name, password=password)
    if action == "lift-lockout":
        accounts.lift_lockout(name, actor=_me())  # the accounts service audits it
        flash(f"{name}: {_USER_ACTIONS[action]}.")
        return redirect(url_for("admin.users"))
    if action in ("disable", "enable"):
        try:
            accounts.set_disabled(name, action == "disable")
        except AccountError as exc:
            flash(f"{exc}.")
            return redirect(url_for("admin.users"))
    elif action == "reset-totp":
        accounts.reset_totp(name)
    else:
        accounts.end_sessions(name)
    _audit_change(_USER_ACTIONS[action], name)
    flash(f"{name}: {_USER_ACTIONS[action]}.")
    return redirect(url_for("admin.users"))


@bp.get("/modalities")
@admin_required
def modalities() -> str:
    """The enrolled nodes and the enrolment form."""
    return render_template("admin/modalities.html", nodes=_backend().modalities())


@bp.post("/modalities")
@admin_required
def enrol() -> Response | tuple[str, int]:
    """Enrol a node; the answer is the ZIP of its certificate, key and our CA."""
    port_text = request.form.get("port", "").strip()
    ae_title = request.form.get("ae_title", "").strip()
    host, allow = request.form.get("host", "").strip(), ",".join(request.form.getlist("allow")) or "store"
    if port_text and not port_text.isdigit():
        flash(f"Not enrolled: Port for retrieves: {port_text!r} is not a number (1 to 65535)")
        return redirect(url_for("admin.modalities"))
    port = int(port_text) if port_text else None
    try:
        bundle = _backend().enrol(ae_title, host, allow, port, user=_me(), roles=_my_roles())
    except GrantRefusedError as exc:
        return _refuse_grant(exc, f"Not enrolled: {exc}")
    except ValueError as exc:
        flash(f"Not enrolled: {exc}")
        return redirect(url_for("admin.modalities"))
    response = Response(bundle, mimetype="application/zip")
    response.headers.set("Content-Disposition", "attachment", filename=f"{ae_title}-certificate.zip")
    return response


@bp.post("/modalities/rights")
@admin_required
def change_rights() -> Response | tuple[str, int]:
    """Change what an enrolled node may do; adding find, move or get is a PHI grant."""
    ae_title = request.form.get("ae_title", "")
    allow = ",".join(request.form.getlist("allow"))
    if not allow:
        flash(f"{ae_title} unchanged: tick at least one right (Remove takes every right away)")
        return redirect(url_for("admin.modalities"))
    try:
        changed = _backend().change_rights(ae_title, allow, user=_me(), roles=_my_roles())
    except GrantRefusedError as exc:
        return _refuse_grant(exc, f"{ae_title} unchanged: {exc}")
    except ValueError as exc:
        flash(f"{ae_title} unchanged: {exc}")
    else:
        flash(f"{ae_title} may now {allow}." if changed else f"{ae_title} already may {allow}.")
    return redirect(url_for("admin.modalities"))


@bp.post("/modalities/remove")
@admin_required
def remove() -> Response:
    """Remove an enrolled node (its AE title comes in the form: AE titles may hold a slash)."""
    ae_title = request.form.get("ae_title", "")
    try:
        _backend().remove(ae_title, user=_me())
    except ValueError as exc:
        flash(str(exc))
    else:
        flash(f"{ae_title} removed.")
    return redirect(url_for("admin.modalities"))


@bp.get("/audit")
@admin_required
def audit_log() -> str:
    """The audit log, newest first, in words, with filters and the chain's verification (itself audited)."""
    log = current_app.extensions["pacs"].audit
    filters = read_filters(request.args)
    for problem in filters.problems:
        flash(problem)
    searched = filters.search_arguments()
    page = current_page()
    records = log.search(
        **searched,
        failures_only=filters.failures_only,
        limit=AUDIT_PAGE + 1,
        offset=(page - 1) * AUDIT_PAGE,
    )
    chain = log.verify()
    viewed = {**searched, **({"failures_only": True} if filters.failures_only else {})}
    record(events.audit_log_used("audit log viewed", by=_me(), source=source(), filters=viewed))
    return render_template(
        "admin/audit.html",
        rows=[audit_row(r) for r in records[:AUDIT_PAGE]],
        chain=chain,
        filters=filters,
        events=EVENT_CHOICES,
        **neighbours("admin.audit_log", page, more=len(records) > AUDIT_PAGE),
    )


@bp.get("/status")
@admin_required
def status() -> str:
    """The findings of ``pacs selfcheck``, each with its fix, then disk, certificates and the like."""
    backend = _backend()
    posture = backend.posture(user=_me())
    return render_template("admin/status.html", posture=posture, rows=backend.status())
