"""Login: password, then TOTP (enrolled at the first login), then a password change if due.

A first login goes: one-time password, TOTP enrolment (the QR code and key of a secret that
stays the same until it is confirmed; a wrong code shows the page again, counted by the
throttle), recovery codes, the forced password change, then the user's home, without a
second login. Every failure of the password and code steps shows :data:`FAILED`, whatever
went wrong. While an account is locked (:mod:`pacs.core.throttle`), the password step goes
on to the code whatever the password, and only the right password and code together log in:
the lock tells an attacker nothing and keeps no one with both factors out. The session is
rotated when the password is accepted and again when the login completes.
``login_required`` guards every other page: it needs a completed login of an enabled
account (a lockout ends no session), and sends an account that must change its password to
the change form first. ``physician_required`` and ``admin_required`` add the role, ``roles_required(*roles)``
every one of several (study care: admin and physician). Under the
DICOMweb root (:mod:`webviewer.apiauth`) a request is answered 401 instead of a redirect, and
``physician_required`` admits a Bearer token with the ``read`` scope instead of the session;
``store_required`` (STOW-RS) wants a physician's session (its CSRF token checked as for every
change) or a token with the ``store`` scope.

Every step is audited (:func:`record`); a request whose record cannot be written is answered
503 with :data:`UNAVAILABLE` and gains nothing (no login, no page), as the audit policy of
:mod:`pacs.core.audit` says; only logging out goes on without its record.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import segno
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Response

from pacs.core import events
from pacs.core.accounts import Account, Accounts, LoginVerdict, PasswordPolicyError
from pacs.core.audit import AuditEvent, AuditLog, AuditUnavailableError
from webviewer import apiauth, passkey_policy
from webviewer.sessions import rotate
from webviewer.signin_messages import SIGNED_OUT, recovery_code_used

bp = Blueprint("auth", __name__)
FAILED = "Wrong user name, password or code, or too many attempts. Wait a moment and try again."
UNAVAILABLE = (
    "The audit trail cannot be written, so this request was not carried out. "
    "Try again later, and tell the administrator if it goes on."
)
WRONG_ENROLMENT_CODE = (
    "That is not the code the authenticator shows now. Check that the key was entered in full "
    "and that the phone's clock is right, then enter the current six-digit code."
)
TOO_MANY_CODES = "Too many wrong codes. Wait a moment and try again."
PENDING_SECONDS = 300
# The first login's enrolment allows time to install an authenticator app.
ENROL_SECONDS = 900
EXPIRED = "The login took too long. Log in again: an authenticator being set up keeps its key."
View = TypeVar("View", bound=Callable[..., Any])


def _accounts() -> Accounts:
    return current_app.extensions["pacs"].accounts


def _audit_log() -> AuditLog:
    return current_app.extensions["pacs"].audit


def source() -> str:
    """The client address of this request (decided by :mod:`webviewer.networkgate`) for audit, throttle."""
    return request.remote_addr or ""


def me() -> str:
    """The name of the logged-in user ("" before the login completes)."""
    account = current_account()
    return account.name if account is not None else ""


def record(event: AuditEvent) -> None:
    """Write the audit record of this request; if it cannot be written, answer 503 and go no further."""
    try:
        _audit_log().append(event)
    except Exception:
        current_app.logger.exception("audit record not written; answered 503")
        abort(503, UNAVAILABLE)


def _unavailable(_: AuditUnavailableError) -> Response:
    """A service (accounts, enrolment) could not write the record of what it decided: 503."""
    return ServiceUnavailable(UNAVAILABLE).get_response()


def init_app(app: Flask) -> None:
    """Answer a request whose audit record cannot be written with 503; check tokens in URLs and CSRF."""
    app.register_error_handler(AuditUnavailableError, _unavailable)
    apiauth.init_app(app)


def _pending(window: int = PENDING_SECONDS) -> str | None:
    """The user who passed the password step of this session in the last `window` seconds, if any.

    A pending login that has run out is dropped with a message on the login page.
    """
    name = session.get("pending")
    if not isinstance(name, str):
        return None
    if time.time() - float(session.get("pending_since", 0)) > window:
        session.pop("pending", None)
        flash(EXPIRED)
        return None
    return name


def _fail(user: str, step: str, reason: str) -> Response:
    """Audit a failed step; answer with the one failure message."""
    record(events.login_failed(user, source=source(), step=step, reason=reason))
    flash(FAILED)
    return redirect(url_for("auth.login"))


def _allowed(name: str) -> Account | None:
    """The account, if it may still log in (it may have been disabled meanwhile)."""
    account = _accounts().get(name)
    return account if account is not None and not account.disabled else None


def _complete(name: str, event: AuditEvent | None = None) -> None:
    """Both factors passed and the login is audited (`event`, by default a plain login): a new session."""
    record(event or events.login_succeeded(name, source=source()))
    session.clear()
    session["user"] = name
    rotate()
    _accounts().record_success(name, source())


def current_account() -> Account | None:
    """The logged-in account of this request (after ``login_required``)."""
    return g.get("account")


# Fetched by the viewer's script, like everything under the DICOMweb root.
_API_ENDPOINTS = {"viewer.tags", "viewer.related", "documents.panel"}


def _is_api() -> bool:
    """Whether this request comes from a script or a client (answered 401, not sent to login)."""
    return apiauth.is_api_path() or request.endpoint in _API_ENDPOINTS


def is_api_request() -> bool:
    """Whether this request comes from a script or a DICOMweb client (answered in text, not a page)."""
    return _is_api()


def login_required(view: View) -> View:
    """Let only a completed login of an enabled account through."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        name = session.get("user")
        account = _accounts().get(name) if isinstance(name, str) else None
        if account is None or account.disabled:
            if name is not None:  # a stale login; a password step in progress is kept
                session.clear()
            if apiauth.is_api_path():
                apiauth.unauthorized("Log in, or send an access token.")
            if _is_api():
                abort(401)
            return redirect(url_for("auth.login"))
        g.account = account
        if account.must_change_password and request.endpoint not in ("auth.password", "auth.logout"):
            return redirect(url_for("auth.password"))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _session_or_token(view: View, scope: str) -> View:
    """`view` behind a completed login, or (under the DICOMweb root) a Bearer token with `scope`."""
    by_session = login_required(view)

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if apiauth.bearer_secret() is None:
            return by_session(*args, **kwargs)
        g.account = apiauth.authenticate(scope)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _role_required(role: str, scope: str | None = None) -> Callable[[View], View]:
    """A login with `role`; with a `scope`, a Bearer token with it does too (on API paths)."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            account = current_account()
            if account is None or role not in account.roles:
                what = f"page for the {role} role refused"
                record(events.restricted_function_refused(me(), what, source=source(), path=request.path))
                if account is not None and request.endpoint == "studies.index" and not account.is_physician:
                    return redirect(_landing(account))  # "/" is everyone's start; an admin's is elsewhere
                abort(403)
            return view(*args, **kwargs)

        if scope is None:
            return login_required(wrapped)  # type: ignore[return-value]
        return _session_or_token(wrapped, scope)  # type: ignore[arg-type]

    return decorator


def roles_required(*roles: str) -> Callable[[View], View]:
    """A login with every one of `roles` (study care shows patient data and changes the archive)."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            account = current_account()
            if account is None or not set(roles) <= set(account.roles):
                what = f"page for the {' and '.join(roles)} roles refused"
                record(events.restricted_function_refused(me(), what, source=source(), path=request.path))
                abort(403)
            return view(*args, **kwargs)

        return login_required(wrapped)  # type: ignore[return-value]

    return decorator


physician_required = _role_required("physician", "read")
store_required = _role_required("physician", "store")
admin_required = _role_required("admin")


@bp.get("/login")
def login() -> str:
    """The password form."""
    return render_template("login.html")


@bp.post("/login")
def login_password() -> Response:
    """Check the password, then go on to the second factor."""
    name = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")[:1024]
    check = _accounts().check_password(name, password, source())
    if check.verdict is LoginVerdict.THROTTLED or not (check.ok or check.deferred):
        return _fail(name, "password", check.verdict.value)
    if not check.ok:
        reason = f"{check.verdict.value} (account locked: answered after the code)"
        record(events.login_failed(name, source=source(), step="password", reason=reason))
    session.clear()
    session["pending"] = name
    session["pending_since"] = time.time()
    session["password_ok"] = check.ok
    rotate()
    if check.ok and not check.deferred and check.account is not None and not check.account.totp_enrolled:
        session["may_enrol"] = True
        return redirect(url_for("auth.enrol"))
    return redirect(url_for("auth.totp"))


@bp.route("/login/totp", methods=["GET", "POST"])
def totp() -> Response | str:
    """The second factor: a TOTP code, or a recovery code."""
    name = _pending()
    if name is None:
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("totp.html")
    code = request.form.get("code", "").strip()[:32]
    password_right = session.get("password_ok") is True
    step = "totp" if code.replace(" ", "").isdigit() else "recovery code"
    if step == "totp" and passkey_policy.totp_refused(name):  # an admin who must use their passkey
        _accounts().record_failure(name, source())
        return _fail(name, step, "a passkey is required for admins")
    verdict = _accounts().check_second_factor(name, code, source(), password_right=password_right)
    if verdict is not LoginVerdict.ACCEPTED:
        reason = verdict.value if verdict is LoginVerdict.THROTTLED else "wrong code"
        return _fail(name, step, reason if password_right else "wrong password, told after the code")
    account = _allowed(name)
    if account is None:
        return _fail(name, step, "account disabled")
    _complete(name)
    if step == "recovery code":
        flash(recovery_code_used(account.recovery_codes_left))
    return redirect(_landing(account))


def _qr_data_uri(uri: str) -> str:
    """The QR code of `uri` as an SVG data URI (with its namespace, without which no browser draws it)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, dark="#000", light="#fff")


@bp.route("/login/enrol", methods=["GET", "POST"])
def enrol() -> Response | str:
    """First login: the pending TOTP secret (QR code and text); a valid code confirms it.

    A wrong code is audited, counted by the throttle, and shows the same page and key again.
    """
    name = _pending(ENROL_SECONDS)
    if name is None or session.get("may_enrol") is not True:
        return redirect(url_for("auth.login"))
    accounts = _accounts()
    account = accounts.get(name)
    if account is None or account.totp_enrolled:
        return redirect(url_for("auth.totp"))
    if request.method == "GET":
        secret = accounts.begin_totp_enrolment(name)
        uri = accounts.provisioning_uri(name, secret)
        grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        return render_template("enrol.html", secret=grouped, qr=_qr_data_uri(uri))
    if account.disabled:
        return _fail(name, "totp enrolment", "account disabled")
    code = request.form.get("code", "").replace(" ", "")[:16]
    verdict, codes = accounts.confirm_enrolment(name, code, source())
    if verdict is not LoginVerdict.ACCEPTED:
        record(events.login_failed(name, source=source(), step="totp enrolment", reason=verdict.value))
        flash(TOO_MANY_CODES if verdict is LoginVerdict.THROTTLED else WRONG_ENROLMENT_CODE)
        return redirect(url_for("auth.enrol"))
    record(events.second_factor_enrolled(name, source=source(), recovery_codes=len(codes)))
    _complete(name)
    forced = account.must_change_password
    then = url_for("auth.password") if forced else _landing(account)
    return render_template("recovery.html", codes=codes, continue_url=then, password_next=forced)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> Response | str:
    """Change the password: required after a one-time password, else the current one is asked for.

    Every session of the user ends with the change; this one goes on under a new token.
    """
    account = current_account()
    assert account is not None
    forced = account.must_change_password
    if request.method == "POST":
        new, again = request.form.get("new", "")[:1024], request.form.get("again", "")[:1024]
        current = request.form.get("current", "")[:1024]
        if not forced and not _accounts().check_password(account.name, current, source()).ok:
            flash("The current password is wrong, or there were too many attempts.")
        elif new != again:
            flash("The two passwords differ.")
        else:
            try:
                _accounts().change_password(account.name, new, user_inputs=(current,) if current else ())
            except PasswordPolicyError as exc:
                flash(_sentence(str(exc)))
            else:
                record(events.password_changed(account.name, source=source()))
                session.clear()
                session["user"] = account.name
                rotate()
                return redirect(_landing(account))
    return render_template("password.html", forced=forced)


def _sentence(text: str) -> str:
    """`text` (a policy message, lower case and without its full stop) as a sentence."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _landing(account: Account) -> str:
    """Where a logged-in user starts: the study list for physicians, the users page for admins."""
    return url_for("studies.index") if account.is_physician else url_for("admin.users")


@bp.post("/logout")
def logout() -> Response:
    """End the session here and on the server; that goes on even if it cannot be audited."""
    name = session.get("user")
    session.clear()
    if isinstance(name, str):
        _audit_log().append_after(events.logout(name, source=source()))
        rotate()  # the message below rides on a new, anonymous session
        flash(SIGNED_OUT)
    return redirect(url_for("auth.login"))
