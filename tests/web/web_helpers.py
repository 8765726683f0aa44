"""Shared pieces of the web viewer tests: an app on an archive, a browser, users with known secrets.

Time is a fake clock shared by :class:`~pacs.core.accounts.Accounts` (TOTP steps, back-off)
and the session store (idle and absolute limits), so nothing here sleeps.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from pacs.core.accounts import Accounts
from pacs.core.context import Context, initialise, open_pacs
from storage.models import AuditRecord, WebSession
from webviewer import WebConfig, create_app
from webviewer.sessions import COOKIE

SECRET_KEY = b"web-viewer-tests-secret-key-0123"
PASSPHRASE = "violet kestrel under the quarry"
FIRST_PASSPHRASE = "seven lanterns drift past"
NEW_PASSPHRASE = "amber heron above the weir"
PHYSICIAN = frozenset({"physician"})
ADMIN = frozenset({"admin"})
ADDRESS = "192.0.2.10"
STEP = 30  # RFC 6238 time step, seconds

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_TOTP_KEY = re.compile(r'id="totp-key">([^<]+)<')
_FLASH = re.compile(r'<p class="flash" role="alert">(.*?)</p>', re.S)
_ROW = re.compile(r'<tr data-study="([^"]+)">(.*?)</tr>', re.S)
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


class Clock:
    """A clock that only moves when told to: seconds for the accounts, datetimes for the sessions."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.time, UTC)

    def advance(self, seconds: float) -> None:
        self.time += seconds


@dataclass
class User:
    """An account and the secrets its owner holds."""

    name: str
    password: str
    totp: pyotp.TOTP | None = None
    recovery_codes: list[str] = field(default_factory=list)
    roles: frozenset[str] = frozenset({"physician"})


def location(response: TestResponse) -> str:
    """The path a redirect points to."""
    assert response.location is not None, f"{response.status_code} is not a redirect"
    return urlsplit(response.location).path


def is_redirect_to(response: TestResponse, path: str) -> bool:
    return response.status_code == 302 and location(response) == path


def messages(page: str) -> list[str]:
    """The flashed messages shown on `page`."""
    return [html.unescape(m).strip() for m in _FLASH.findall(page)]


def study_rows(page: str) -> list[list[str]]:
    """The cells of each row of the study list on `page`, top to bottom."""
    return [[html.unescape(c).strip() for c in _CELL.findall(body)] for _, body in _ROW.findall(page)]


def listed_patient_ids(page: str) -> list[str]:
    """The Patient ID column of the study list on `page`, top to bottom."""
    return [row[1] for row in study_rows(page)]


def link(page: str, element_id: str) -> str | None:
    """The href of the element with `element_id` on `page`, unescaped, or None."""
    match = re.search(rf'<a href="([^"]+)" id="{re.escape(element_id)}">', page)
    return html.unescape(match.group(1)) if match else None


class Browser:
    """A test client that speaks HTTPS from one address and fills in CSRF tokens like a browser."""

    def __init__(self, web: Web, address: str = ADDRESS) -> None:
        self.web = web
        self.client: FlaskClient = web.app.test_client()
        self.client.environ_base["wsgi.url_scheme"] = "https"
        self.client.environ_base["REMOTE_ADDR"] = address

    def get(self, path: str) -> TestResponse:
        return self.client.get(path)

    def token(self, page: str) -> str:
        """The CSRF token of the form on `page`."""
        response = self.get(page)
        match = _CSRF.search(response.text)
        assert match, f"no CSRF token on {page} ({response.status_code})"
        return match.group(1)

    def post(self, path: str, data: dict[str, str], *, form_page: str | None = None) -> TestResponse:
        """Submit `data` to `path` with the CSRF token of the form on `form_page` (default `path`)."""
        return self.client.post(path, data={**data, "csrf_token": self.token(form_page or path)})

    @property
    def cookie(self) -> str | None:
        """The session token this browser holds."""
        cookie = self.client.get_cookie(COOKIE)
        return cookie.value if cookie is not None else None

    def use_cookie(self, token: str) -> None:
        self.client.set_cookie(COOKIE, token, secure=True, httponly=True, samesite="Strict")

    def messages(self) -> list[str]:
        """The messages flashed to this browser (shown on the next page)."""
        return messages(self.get("/login").text)

    def enter_password(self, name: str, password: str) -> TestResponse:
        return self.post("/login", {"username": name, "password": password})

    def enter_code(self, code: str) -> TestResponse:
        return self.post("/login/totp", {"code": code})

    def enrolment_page(self) -> tuple[pyotp.TOTP, str]:
        """The TOTP key shown at the first login (after the password), and the form's CSRF token.

        The key stays the same on every visit until the enrolment is confirmed.
        """
        page = self.get("/login/enrol").text
        key, token = _TOTP_KEY.search(page), _CSRF.search(page)
        assert key and token, "no TOTP key or CSRF token on /login/enrol"
        return pyotp.TOTP(key.group(1).replace(" ", "")), token.group(1)

    def enrol(self) -> tuple[pyotp.TOTP, TestResponse]:
        """Set up the second factor at the first login (after the password)."""
        totp, token = self.enrolment_page()
        code = totp.at(self.web.clock())
        return totp, self.client.post("/login/enrol", data={"code": code, "csrf_token": token})

    def log_in(self, user: User) -> TestResponse:
        """Password, then a code of the next TOTP step; assert that the login completed."""
        assert user.totp is not None
        assert is_redirect_to(self.enter_password(user.name, user.password), "/login/totp")
        self.web.clock.advance(STEP)
        response = self.enter_code(user.totp.at(self.web.clock()))
        landing = "/" if "physician" in user.roles else "/admin/users"
        assert is_redirect_to(response, landing), response.status_code
        return response

    def log_out(self) -> TestResponse:
        return self.post("/logout", {}, form_page="/account/password")


@dataclass
class Web:
    """The web viewer on one archive, with a fake clock."""

    app: Flask
    pacs: Context
    accounts: Accounts
    clock: Clock

    def browser(self, address: str = ADDRESS) -> Browser:
        return Browser(self, address)

    def user(self, name: str, roles: frozenset[str] = PHYSICIAN) -> User:
        """An account that has chosen its password and enrolled TOTP (at the current step)."""
        self.accounts.add(name, roles, FIRST_PASSPHRASE)
        self.accounts.change_password(name, PASSPHRASE)
        totp = pyotp.TOTP(self.accounts.begin_totp_enrolment(name))
        codes = self.accounts.confirm_totp(name, totp.at(self.clock()))
        assert codes is not None
        return User(name, PASSPHRASE, totp, codes, roles)

    def logged_in(self, user: User, address: str = ADDRESS) -> Browser:
        browser = self.browser(address)
        browser.log_in(user)
        return browser

    def session_exists(self, token: str) -> bool:
        with self.pacs.database.read() as db:
            return db.get(WebSession, hashlib.sha256(token.encode()).hexdigest()) is not None

    def audit(
        self, event_id: str, event_type: str | None = None, user: str | None = None
    ) -> list[AuditRecord]:
        """The audit records with `event_id` (and `event_type`, of `user`), oldest first."""
        return [
            record
            for record in self.pacs.audit.records()
            if record.event_id == event_id
            and (event_type is None or record.event_type == event_type)
            and (user is None or record.user_id == user)
        ]


def details(record: AuditRecord) -> dict[str, Any]:
    return dict(json.loads(record.details))


def make_web(pacs: Context, **config: Any) -> Web:
    """The web viewer on `pacs`; `config` goes to :class:`WebConfig`."""
    clock = Clock()
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=clock)
    app = create_app(
        WebConfig(secret_key=SECRET_KEY, **config),
        archive=pacs.archive,
        accounts=accounts,
        audit=pacs.audit,
        database=pacs.database,
    )
    app.session_interface.now = clock.utc  # type: ignore[attr-defined]
    return Web(app, pacs, accounts, clock)


def sqlite_pacs(root: Path) -> Iterator[Context]:
    """A fresh archive on the embedded SQLCipher index (for tests where the backend does not matter)."""
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    opened = open_pacs(settings)
    yield opened
    opened.close()


def store(pacs: Context, files: list[Path]) -> None:
    for path in files:
        pacs.archive.store(path)


def minutes(n: float) -> float:
    return timedelta(minutes=n).total_seconds()
