"""Shared pieces of the admin page tests: the app with the real admin backend, and what its pages show."""

from __future__ import annotations

import html
import io
import re
import zipfile

from cryptography import x509
from werkzeug.test import TestResponse

from pacs.core.accounts import Accounts
from pacs.core.audit import Action, AuditEvent, EventID, EventType, Outcome
from pacs.core.context import CA_CERT, Context
from pacs.serve.webadmin import PacsAdmin
from tests.web.web_helpers import (
    SECRET_KEY,
    Browser,
    Clock,
    Web,
    details,
)
from webviewer import WebConfig, create_app

SECURITY_ALERT = str(EventID.SECURITY_ALERT)
USER_CHANGED = str(EventType.USER_SECURITY_ATTRIBUTES_CHANGED)
NETWORK_CONFIGURATION = str(EventType.NETWORK_CONFIGURATION)
RESTRICTED = str(EventType.USE_OF_RESTRICTED_FUNCTION)
SCRIPT = "<script>alert(1)</script>"
OTHER_ADDRESS = "198.51.100.7"  # for password checks made outside the browser

ADMIN_PAGES = ["/admin/users", "/admin/modalities", "/admin/audit", "/admin/status"]
USER_ACTIONS = ["disable", "enable", "reset-password", "reset-totp", "end-sessions", "lift-lockout"]

_OTP = re.compile(r'id="one-time-password">([^<]+)<')
_AUDIT_TABLE = re.compile(r'<table class="grid audit" id="audit">.*?<tbody>(.*?)</tbody>', re.S)
_ROW = re.compile(r"<tr data-seq[^>]*>(.*?)</tr>", re.S)
_TAG = re.compile(r"<[^>]+>")
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
_STATUS_ROW = re.compile(r"<tr><th>([^<]*)</th><td>([^<]*)</td>")
_CHAIN = re.compile(r'<p id="chain"[^>]*>\s*(.*?)\s*</p>', re.S)


def make_admin_web(pacs: Context) -> Web:
    """The web viewer on `pacs` with the real admin backend (enrolment and status)."""
    clock = Clock()
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=clock)
    app = create_app(
        WebConfig(secret_key=SECRET_KEY),
        archive=pacs.archive,
        accounts=accounts,
        audit=pacs.audit,
        database=pacs.database,
        admin=PacsAdmin(pacs),
    )
    app.session_interface.now = clock.utc  # type: ignore[attr-defined]
    return Web(app, pacs, accounts, clock)


def _act(browser: Browser, name: str, action: str) -> TestResponse:
    """Press the `action` button of user `name` on the users page."""
    return browser.post(f"/admin/users/{name}/{action}", {}, form_page="/admin/users")


def _one_time_password(response: TestResponse) -> str:
    assert response.status_code == 200, response.status_code
    match = _OTP.search(response.text)
    assert match, "no one-time password on the page"
    return html.unescape(match.group(1))


def _user_changes(web: Web, name: str) -> list[str]:
    """What the admin "boss" was audited doing to user `name`, oldest first."""
    return [
        details(record)["what"]
        for record in web.audit(SECURITY_ALERT, USER_CHANGED, user="boss")
        if details(record).get("user") == name
    ]


def _enrol(browser: Browser, **fields: str | list[str]) -> TestResponse:
    token = browser.token("/admin/modalities")
    return browser.client.post("/admin/modalities", data={**fields, "csrf_token": token})


def _bundle(response: TestResponse) -> dict[str, bytes]:
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _ca_certificate(pacs: Context) -> x509.Certificate:
    return x509.load_pem_x509_certificate((pacs.settings.tls_dir / CA_CERT).read_bytes())


def _audit_rows(page: str) -> list[list[str]]:
    """The text of the cells of each row of the audit table, top to bottom (tags removed, unescaped)."""
    table = _AUDIT_TABLE.search(page)
    assert table, "no audit table on the page"
    return [
        [html.unescape(_TAG.sub("", c)).strip() for c in _CELL.findall(row)]
        for row in _ROW.findall(table.group(1))
    ]


def _status(page: str) -> dict[str, str]:
    """The facts of the status page's table: what, and its value."""
    return {html.unescape(what): html.unescape(value) for what, value in _STATUS_ROW.findall(page)}


def _seed_audit(pacs: Context) -> None:
    """A few records of different users, events and outcomes."""
    for event in (
        AuditEvent(EventID.QUERY, Action.EXECUTE, user_id="carol", details={"what": "seed query"}),
        AuditEvent(
            EventID.USER_AUTHENTICATION,
            Action.EXECUTE,
            outcome=Outcome.MINOR_FAILURE,
            user_id="mallory",
            event_type=EventType.LOGIN,
            details={"what": "seed failure"},
        ),
        AuditEvent(EventID.INSTANCES_ACCESSED, Action.READ, user_id="carol", details={"what": "seed read"}),
    ):
        pacs.audit.append(event)
