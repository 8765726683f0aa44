"""Server-side sessions: the cookie holds a random token, the index holds the session.

The cookie is ``__Host-pacs``: Secure, HttpOnly, SameSite=Strict, path ``/``, no domain.
Only a SHA-256 of the token is stored, so a copy of the database opens no session. A
session ends after ``idle`` without a request or ``absolute`` after it began, at logout,
or when the user's credentials change (:mod:`pacs.core.accounts` deletes the rows).
:func:`rotate` gives the session a new token (at login), so a token planted before
login is worthless after it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Request, Response, session
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy import delete, select, update
from werkzeug.datastructures import CallbackDict

from storage.db import Database, as_utc
from storage.models import WebSession

COOKIE = "__Host-pacs"
# last_seen is written at most this often, so that frame requests do not each write.
TOUCH_EVERY = timedelta(seconds=30)


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """The session of one browser: a dict, its token, and what to do with it at the end of the request."""

    def __init__(self, token: str | None = None, data: dict[str, Any] | None = None, *, fresh: bool = True):
        def on_update(_: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(data or {}, on_update)
        self.token = token
        self.new = fresh
        self.modified = False
        self.rotate = False
        self.touch = False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def rotate() -> None:
    """Give the current session a new token at the end of this request (call at login)."""
    assert isinstance(session, ServerSession)
    session.rotate = True
    session.modified = True


class DatabaseSessions(SessionInterface):
    """Flask's session interface, backed by the ``web_sessions`` table."""

    def __init__(
        self,
        database: Database,
        *,
        idle: timedelta,
        absolute: timedelta,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.database = database
        self.idle = idle
        self.absolute = absolute
        self.now = now

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 128:
            return ServerSession()
        now = self.now()
        with self.database.read() as db:
            row = db.get(WebSession, _digest(token))
            if row is None:
                return ServerSession()
            started, seen, data = as_utc(row.created_at), as_utc(row.last_seen), row.data
        if now - seen > self.idle or now - started > self.absolute:
            self._delete(token)
            return ServerSession()
        opened = ServerSession(token, json.loads(data), fresh=False)
        opened.touch = now - seen > TOUCH_EVERY
        return opened

    def _delete(self, token: str) -> None:
        with self.database.write() as db:
            db.execute(delete(WebSession).where(WebSession.id == _digest(token)))

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:  # type: ignore[override]
        assert isinstance(session, ServerSession)
        now = self.now()
        if not session:
            if session.token is not None and not session.new:
                self._delete(session.token)
                response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
            return
        if session.rotate and session.token is not None:
            self._delete(session.token)
            session.token = None
        # A session between password and code belongs to its user too, so it ends with theirs.
        user = str(session.get("user") or session.get("pending") or "") or None
        if session.token is None:
            session.token = secrets.token_urlsafe(32)
            with self.database.write() as db:
                # New sessions also sweep out expired ones (abandoned logins leave rows).
                db.execute(
                    delete(WebSession).where(
                        (WebSession.last_seen < now - self.idle)
                        | (WebSession.created_at < now - self.absolute)
                    )
                )
                db.add(
                    WebSession(
                        id=_digest(session.token),
                        user_name=user,
                        data=json.dumps(dict(session)),
                        created_at=now,
                        last_seen=now,
                    )
                )
        elif session.modified or session.touch:
            with self.database.write() as db:
                db.execute(
                    update(WebSession)
                    .where(WebSession.id == _digest(session.token))
                    .values(user_name=user, data=json.dumps(dict(session)), last_seen=now)
                )
        else:
            return
        response.set_cookie(
            COOKIE,
            session.token,
            max_age=int(self.absolute.total_seconds()),
            path="/",
            secure=True,
            httponly=True,
            samesite="Strict",
        )

    def active_users(self) -> dict[str, int]:
        """Users with sessions that have not yet expired, and how many each has."""
        cutoff = self.now() - self.idle
        with self.database.read() as db:
            rows = db.execute(select(WebSession.user_name, WebSession.last_seen)).all()
        counts: dict[str, int] = {}
        for user, seen in rows:
            if user and as_utc(seen) >= cutoff:
                counts[user] = counts.get(user, 0) + 1
        return counts
