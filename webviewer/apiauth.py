"""Requests under the DICOMweb root authenticated by a personal access token, never by a URL.

Every path under :data:`API_ROOT` is an API path: unauthenticated, it is answered 401 (with
``WWW-Authenticate: Bearer``), never sent to the login page. There an ``Authorization: Bearer``
header authenticates the request instead of the session (:func:`authenticate`, through
:mod:`pacs.core.tokens`, which audits what it decides); such a request uses no session at all,
so a browser's cookie never lends it anything, and it is exempt from the CSRF check (a page of
another site cannot set that header without a CORS preflight that :mod:`webviewer.cors` grants
to configured origins only). A token in a URL query is refused and audited before any view runs.
"""

from __future__ import annotations

from typing import NoReturn

from flask import Flask, Response, abort, current_app, g, request

from pacs.core.accounts import Account
from pacs.core.tokens import TokenInfo, Tokens, looks_like_token

API_ROOT = "/dicomweb/"
BEARER = "bearer "
# Query parameters that clients use for tokens; a value of a token's form is refused under any name.
URL_TOKEN_PARAMETERS = frozenset(
    {"access_token", "token", "bearer", "api_key", "apikey", "auth", "authorization"}
)
INVALID = "The access token is missing, unknown, expired or revoked, or not allowed from this address."
IN_URL = "An access token must be sent in the Authorization header, never in a URL."


def _tokens() -> Tokens:
    return current_app.extensions["pacs"].tokens


def is_api_path() -> bool:
    """Whether this request is for the DICOMweb Studies Service."""
    return request.path.startswith(API_ROOT)


def bearer_secret() -> str | None:
    """The token of this request's ``Authorization: Bearer`` header, on an API path (else None)."""
    header = request.headers.get("Authorization", "")
    if not is_api_path() or not header.lower().startswith(BEARER):
        return None
    return header[len(BEARER) :].strip()[:256]


def current_token() -> TokenInfo | None:
    """The token that authenticated this request (after :func:`authenticate`), if any."""
    return g.get("token")


def unauthorized(message: str = INVALID, *, error: str = "") -> NoReturn:
    """End the request with 401 and a ``WWW-Authenticate: Bearer`` challenge (RFC 6750)."""
    challenge = 'Bearer realm="dicomweb"' + (f', error="{error}"' if error else "")
    abort(Response(message, status=401, mimetype="text/plain", headers={"WWW-Authenticate": challenge}))


def authenticate(scope: str) -> Account:
    """The account of this request's token, admitted for `scope`; else 401 (403 outside the scope)."""
    secret = bearer_secret() or ""
    check = _tokens().verify(secret, request.remote_addr or "", scope=scope, path=request.path)
    if check.token is not None and check.reason.startswith("scope"):
        challenge = f'Bearer realm="dicomweb", error="insufficient_scope", scope="{scope}"'
        text = f"This access token does not grant the {scope} scope."
        abort(Response(text, status=403, mimetype="text/plain", headers={"WWW-Authenticate": challenge}))
    if not check.ok or check.account is None:
        unauthorized(error="invalid_token")
    g.token = check.token
    return check.account


def _refuse_url_tokens() -> None:
    """Refuse (audited) an API request that carries a token in its URL query."""
    if not is_api_path():
        return
    for name, value in request.args.items(multi=True):
        if name.lower() in URL_TOKEN_PARAMETERS or looks_like_token(value):
            _tokens().refuse_in_url(name, source=request.remote_addr or "", path=request.path)
            unauthorized(IN_URL, error="invalid_request")


def _csrf_unless_bearer() -> None:
    """The CSRF check of every state change, except for a request authenticated by a Bearer token."""
    if bearer_secret() is None:
        current_app.extensions["csrf"].protect(apply_exemptions=True)


def init_app(app: Flask) -> None:
    """Refuse tokens in URLs and check CSRF tokens (``WTF_CSRF_CHECK_DEFAULT`` must be off)."""
    app.before_request(_refuse_url_tokens)
    app.before_request(_csrf_unless_bearer)
