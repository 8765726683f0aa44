"""The web viewer: a Flask app that shows nothing before a password and a TOTP code.

:func:`create_app` builds it from what ``pacs serve`` passes in (no settings are read
from the environment here). Blueprints: ``auth`` (login, second factor, password change,
logout), ``studies`` (the study list), ``viewer`` (the viewer page, tags, ZIP download),
``qido`` and ``wado`` (the DICOMweb Studies Service, which the viewer's script reads too), ``documents``
(SR reports, encapsulated PDFs and descriptions of other non-image objects), ``tokens`` (personal
access tokens for DICOMweb clients), ``passkeys`` (WebAuthn second factors) and ``admin``.
Sessions live in the index database (:mod:`webviewer.sessions`), CSRF tokens come from
Flask-WTF (checked by :mod:`webviewer.apiauth`, which exempts Bearer requests),
:mod:`webviewer.security` sets the headers and :mod:`webviewer.cors` lets configured origins
call the DICOMweb root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from pacs.core.accounts import Accounts
from pacs.core.audit import AuditLog
from pacs.core.config_routes import Route
from pacs.core.config_web_networks import WebNetworks
from pacs.core.passkeys import RelyingParty
from pacs.core.tokens import Network, Tokens
from storage.archive import Archive
from storage.db import Database
from webviewer import admin as admin_pages
from webviewer import (
    anonymize,
    auth,
    care,
    corrections,
    cors,
    documents,
    errors,
    forwarding,
    metadata,
    networkgate,
    passkeys,
    qido,
    security,
    stow,
    studies,
    tokens,
    viewer,
    wado,
)
from webviewer.admin import AdminBackend
from webviewer.decodelimits import DecodeLimits
from webviewer.pixels import MemoryCache
from webviewer.sessions import DatabaseSessions


@dataclass(frozen=True)
class WebConfig:
    """What the web viewer is told by its host."""

    secret_key: bytes
    session_idle: timedelta = timedelta(minutes=15)
    session_absolute: timedelta = timedelta(hours=12)
    page_size: int = 50
    # Memory budgets of the caches ([web] object_cache_mb, frame_cache_mb, metadata_cache_mb).
    object_cache_bytes: int = 256 * 2**20
    frame_cache_bytes: int = 512 * 2**20
    metadata_cache_bytes: int = 64 * 2**20
    # The largest frame decoded, and the budget of the frames decoded at once ([web] max_frame_mb);
    # a request waits this long for its share of the budget before a 503.
    max_frame_bytes: int = 256 * 2**20
    decode_wait_seconds: float = 10.0
    # Where access tokens may come from (empty: anywhere), and the origins CORS lets call DICOMweb.
    token_networks: tuple[Network, ...] = ()
    cors_origins: tuple[str, ...] = ()
    # The [[route]] forwarding rules of pacs.toml, shown (read-only) on the forwarding page.
    routes: tuple[Route, ...] = ()
    # Passkeys: the relying party the browser sees, and [web] require_passkey ("none" or "admins").
    relying_party: RelyingParty = field(default_factory=RelyingParty)
    require_passkey: str = "none"
    # [web] allowed_networks and trusted_proxies: who is refused, whose X-Forwarded-For counts.
    networks: WebNetworks = field(default_factory=WebNetworks)


@dataclass(frozen=True)
class Services:
    """The archive, accounts and audit trail the views use (``current_app.extensions["pacs"]``)."""

    archive: Archive
    accounts: Accounts
    audit: AuditLog
    sessions: DatabaseSessions
    config: WebConfig
    objects: MemoryCache
    frames: MemoryCache
    admin: AdminBackend | None
    decoding: DecodeLimits
    tokens: Tokens


def create_app(
    config: WebConfig,
    *,
    archive: Archive,
    accounts: Accounts,
    audit: AuditLog,
    database: Database,
    admin: AdminBackend | None = None,
) -> Flask:
    """The web viewer application for one archive.

    Without `admin` (enrolment and system status), those two admin pages answer 404.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PREFERRED_URL_SCHEME="https",
        WTF_CSRF_TIME_LIMIT=None,
        # Strict mode compares the Referer, which Referrer-Policy: no-referrer withholds;
        # the token and the SameSite=Strict cookie do the work.
        WTF_CSRF_SSL_STRICT=False,
        # webviewer.apiauth checks the token of every change, except a Bearer request's.
        WTF_CSRF_CHECK_DEFAULT=False,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    sessions = DatabaseSessions(database, idle=config.session_idle, absolute=config.session_absolute)
    app.session_interface = sessions
    objects = MemoryCache(config.object_cache_bytes)
    frames = MemoryCache(config.frame_cache_bytes, lambda frame: len(frame.samples))
    decoding = DecodeLimits(config.max_frame_bytes, wait_seconds=config.decode_wait_seconds)
    access_tokens = Tokens(database, accounts, audit, networks=config.token_networks)
    app.extensions["pacs"] = Services(
        archive, accounts, audit, sessions, config, objects, frames, admin, decoding, access_tokens
    )
    CSRFProtect(app)
    security.init_app(app)
    cors.init_app(app, config.cors_origins)
    auth.init_app(app)
    errors.register(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(studies.bp)
    app.register_blueprint(qido.bp)
    app.register_blueprint(metadata.bp)
    app.register_blueprint(wado.bp)
    app.register_blueprint(stow.bp)
    app.register_blueprint(viewer.bp)
    app.register_blueprint(documents.bp)
    app.register_blueprint(admin_pages.bp)
    app.register_blueprint(tokens.bp)
    app.register_blueprint(corrections.bp)
    app.register_blueprint(care.bp)
    app.register_blueprint(anonymize.bp)
    app.register_blueprint(forwarding.bp)
    passkeys.init_app(app, database, audit, config.relying_party)
    gate = networkgate.NetworkGate(app.wsgi_app, config.networks, networkgate.RefusalTrail(audit))
    app.wsgi_app = gate  # type: ignore[method-assign]
    return app
