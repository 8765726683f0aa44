"""Personal access tokens in the web UI: a user's own (``/account/tokens``) and everyone's for admins.

A logged-in user (both factors passed) creates a token with a name, a scope and an expiry in
days; the answer to that POST shows its secret once, and nothing keeps it. The lists show
name, prefix, scope, dates and the last use, and every row can be revoked. The service
(:class:`pacs.core.tokens.Tokens`) checks the request and audits creation and revocation.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for

from pacs.core.tokens import DEFAULT_DAYS, MAX_DAYS, TokenError, TokenInfo, Tokens
from webviewer.auth import admin_required, current_account, login_required, source
from webviewer.urls import service_root

bp = Blueprint("tokens", __name__)
SCOPE_CHOICES = {"read": ("read",), "read-store": ("read", "store")}


def _tokens() -> Tokens:
    return current_app.extensions["pacs"].tokens


def _me() -> str:
    account = current_account()
    assert account is not None
    return account.name


def _page(template: str, rows: list[TokenInfo], **context: object) -> str:
    """`template` with the token rows, their state now, and the DICOMweb root to point clients at."""
    now = _tokens().now()
    return render_template(
        template,
        tokens=[(token, token.state(now)) for token in rows],
        root=service_root(),
        default_days=DEFAULT_DAYS,
        max_days=MAX_DAYS,
        **context,
    )


def _sentence(exc: TokenError) -> str:
    """The service's message as a sentence for the page."""
    text = str(exc)
    return text[:1].upper() + text[1:] + "."


@bp.get("/account/tokens")
@login_required
def mine() -> str:
    """The user's tokens and the form for a new one."""
    return _page("tokens.html", _tokens().of_user(_me()))


@bp.post("/account/tokens")
@login_required
def create() -> Response | str:
    """Create a token; the answer shows its secret, once."""
    scopes = SCOPE_CHOICES.get(request.form.get("scope", ""), ())
    try:
        days = int(request.form.get("days", "") or DEFAULT_DAYS)
        info, secret = _tokens().create(
            _me(), request.form.get("name", "")[:200], scopes, days, source=source()
        )
    except ValueError:
        flash("The expiry is a number of days.")
        return redirect(url_for("tokens.mine"))
    except TokenError as exc:
        flash(_sentence(exc))
        return redirect(url_for("tokens.mine"))
    return _page("tokens.html", _tokens().of_user(_me()), created=info, secret=secret)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke(token_id: int) -> Response:
    """Revoke one of the user's tokens."""
    return _revoke(token_id, as_admin=False, back="tokens.mine")


@bp.get("/admin/tokens")
@admin_required
def everyone() -> str:
    """Every user's tokens, for admins."""
    return _page("admin/tokens.html", _tokens().all(), networks=[str(n) for n in _tokens().networks])


@bp.post("/admin/tokens/<int:token_id>/revoke")
@admin_required
def admin_revoke(token_id: int) -> Response:
    """Revoke anyone's token."""
    return _revoke(token_id, as_admin=True, back="tokens.everyone")


def _revoke(token_id: int, *, as_admin: bool, back: str) -> Response:
    try:
        info = _tokens().revoke(token_id, by=_me(), source=source(), as_admin=as_admin)
    except TokenError as exc:
        flash(_sentence(exc))
    else:
        flash(f"Token {info.name!r} ({info.prefix}…) of {info.user} is revoked.")
    return redirect(url_for(back))
