"""Passkeys in the web UI: the user's own (``/account/passkeys``) and their use at the second-factor step.

The account page lists the user's passkeys (name, created, last used) with rename and remove;
"Add a passkey" is there because the page is behind ``login_required``, which only a
completed login (password and second factor in this session) passes. The browser side is
``static/passkeys.js``: it fetches the options (``…/options``), calls WebAuthn and posts the
answer as form fields with the CSRF token. The challenge of each ceremony is kept in the
server-side session with its purpose and time, used once (popped before verifying) and
refused after :data:`CHALLENGE_SECONDS`.

At login the second-factor page offers "Use a passkey" when the pending user has one
(:func:`passkey_offered`, a template global); an assertion is throttled and counted like a
code, and fails with the same message and audit record (step ``passkey``) as a wrong code.
With ``[web] require_passkey = "admins"`` an admin without a passkey is sent here from every
other page until they register one, and cannot remove their last one.
"""

from __future__ import annotations

import base64
import time

from flask import Blueprint, Flask, flash, jsonify, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from pacs.core import events, security_events
from pacs.core.audit import AuditLog
from pacs.core.passkeys import Challenge, PasskeyError, Passkeys, RelyingParty
from storage.db import Database
from webviewer import auth
from webviewer.auth import FAILED, current_account, login_required, record, source
from webviewer.passkey_policy import required_for_admins, service

bp = Blueprint("passkeys", __name__)
CHALLENGE_SECONDS = 180
MAX_ANSWER = 16 * 1024
REGISTER_FIRST = "Passkeys are required for admins: register one to go on."
_EXEMPT = {"auth.logout", "auth.password", "static"}


def init_app(app: Flask, database: Database, audit: AuditLog, rp: RelyingParty) -> None:
    """Keep the passkeys service for relying party `rp`, register the pages and the admin guard."""
    app.extensions["passkeys"] = Passkeys(database, rp, audit, app.extensions["pacs"].accounts)
    app.register_blueprint(bp)
    app.before_request(_admin_guard)
    app.add_template_global(passkey_offered)


def passkey_offered() -> bool:
    """Whether the second-factor page offers a passkey: the pending user has one."""
    name = session.get("pending")
    return isinstance(name, str) and service().count(name) > 0


def _admin_guard() -> Response | None:
    """Under ``require_passkey = "admins"``: an admin without a passkey may only register one (or log out)."""
    name = session.get("user")
    endpoint = request.endpoint or ""
    if not isinstance(name, str) or session.get("passkey_checked") or not required_for_admins():
        return None
    if endpoint in _EXEMPT or endpoint.startswith("passkeys."):
        return None
    account = auth._accounts().get(name)
    if account is not None and account.is_admin and service().count(name) == 0:
        flash(REGISTER_FIRST)
        return redirect(url_for("passkeys.mine"))
    session["passkey_checked"] = True
    return None


def _issue(purpose: str, challenge: Challenge) -> Response:
    """Keep `challenge` for one `purpose` ceremony and answer the browser its options."""
    session["passkey_challenge"] = {
        "purpose": purpose,
        "value": base64.b64encode(challenge.challenge).decode(),
        "at": time.time(),
    }
    return Response(challenge.options, mimetype="application/json")


def _take(purpose: str) -> bytes | None:
    """The challenge kept for `purpose`, removed from the session; None if missing, another's or expired."""
    kept = session.pop("passkey_challenge", None)
    if not isinstance(kept, dict) or kept.get("purpose") != purpose:
        return None
    if time.time() - float(kept.get("at", 0)) > CHALLENGE_SECONDS:
        return None
    return base64.b64decode(kept["value"])


def _answer() -> str:
    return request.form.get("credential", "")[:MAX_ANSWER]


def _me() -> str:
    account = current_account()
    assert account is not None
    return account.name


@bp.get("/account/passkeys")
@login_required
def mine() -> str:
    """The user's passkeys and the button to add one."""
    rows = service().of_user(_me())
    return render_template("passkeys/account.html", passkeys=rows, required=_required_here())


def _required_here() -> bool:
    account = current_account()
    return required_for_admins() and account is not None and account.is_admin


@bp.post("/account/passkeys/options")
@login_required
def register_options() -> Response:
    """Options for creating a passkey of the logged-in user."""
    return _issue("register", service().registration_options(_me()))


@bp.post("/account/passkeys")
@login_required
def register() -> Response:
    """Verify and keep a new passkey; the answer tells the script where to go."""
    challenge = _take("register")
    try:
        if challenge is None:
            raise PasskeyError("the passkey request ran out: try again")
        info = service().register(_me(), _answer(), challenge, request.form.get("name", ""), source=source())
    except PasskeyError as exc:
        flash(_sentence(str(exc)))
        return jsonify(ok=False, redirect=url_for("passkeys.mine"))
    flash(f"The passkey {info.name!r} is registered.")
    session["passkey_checked"] = True
    return jsonify(ok=True, redirect=url_for("passkeys.mine"))


@bp.post("/account/passkeys/<int:passkey_id>/rename")
@login_required
def rename(passkey_id: int) -> Response:
    """Rename one of the user's passkeys."""
    try:
        info = service().rename(_me(), passkey_id, request.form.get("name", "")[:200], source=source())
    except PasskeyError as exc:
        flash(_sentence(str(exc)))
    else:
        flash(f"The passkey is now called {info.name!r}.")
    return redirect(url_for("passkeys.mine"))


@bp.post("/account/passkeys/<int:passkey_id>/remove")
@login_required
def remove(passkey_id: int) -> Response:
    """Remove one of the user's passkeys (an admin's last one is kept while passkeys are required)."""
    try:
        info = service().remove(_me(), passkey_id, source=source(), keep_one=_required_here())
    except PasskeyError as exc:
        flash(_sentence(str(exc)))
    else:
        flash(f"The passkey {info.name!r} is removed: it no longer logs in.")
    return redirect(url_for("passkeys.mine"))


@bp.post("/login/passkey/options")
def login_options() -> Response:
    """Options for using a passkey of the user between password and second factor."""
    name = auth._pending()
    if name is None:
        return jsonify(redirect=url_for("auth.login"))
    return _issue("login", service().login_options(name))


@bp.post("/login/passkey")
def login() -> Response:
    """The second factor by passkey: throttled and audited like a code; the answer says where to go."""
    name = auth._pending()
    if name is None:
        return jsonify(redirect=url_for("auth.login"))
    challenge = _take("login")
    password_right = session.get("password_ok") is True
    used, reason = None, "no passkey challenge, or it ran out"
    if challenge is not None:
        _, used, reason = service().check_login(
            name, _answer(), challenge, source=source(), password_right=password_right
        )
    account = auth._allowed(name)
    if used is None or account is None:
        reason = reason if used is None else "account disabled"
        record(events.login_failed(name, source=source(), step="passkey", reason=reason))
        flash(FAILED)
        return jsonify(redirect=url_for("auth.login"))
    event = security_events.passkey_login_succeeded(
        name, source=source(), passkey=used.name, passkey_id=used.id
    )
    auth._complete(name, event)
    return jsonify(redirect=auth._landing(account))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
