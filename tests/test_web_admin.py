"""The web viewer's admin pages: users, modalities, the audit log and the system status.

Everything here touches the index (accounts, sessions, nodes, the audit chain), so every
test runs on both backends (the ``pacs`` fixture). Time is a fake clock (see
:mod:`tests.web_helpers`); the app gets the real admin backend, :class:`pacs.serve.webadmin.PacsAdmin`.
"""

from __future__ import annotations

import html
import io
import re
import shutil
import zipfile
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import update
from werkzeug.http import parse_options_header
from werkzeug.test import TestResponse

from pacs.core import pki
from pacs.core.accounts import LOCKOUT_AFTER, Accounts, Verdict
from pacs.core.audit import Action, AuditEvent, EventID, EventType, Outcome
from pacs.core.context import CA_CERT, CA_KEY, SERVER_CERT, Context
from pacs.core.nodes import NodeRegistry
from pacs.serve.webadmin import PacsAdmin
from storage.db import AuditRecord
from tests.web_helpers import (
    ADDRESS,
    ADMIN,
    PASSPHRASE,
    PHYSICIAN,
    SECRET_KEY,
    Browser,
    Clock,
    Web,
    details,
    is_redirect_to,
    messages,
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
_AUDIT_TABLE = re.compile(r'<table class="grid" id="audit">.*?<tbody>(.*?)</tbody>', re.S)
_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
_STATUS_ROW = re.compile(r'<tr class="(ok|bad)"><th>([^<]*)</th><td>([^<]*)</td>')
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


@pytest.fixture
def web(pacs: Context) -> Web:
    return make_admin_web(pacs)


@pytest.fixture
def boss(web: Web) -> Browser:
    """An admin (not a physician), logged in."""
    return web.logged_in(web.user("boss", ADMIN))


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
    """The cells of each row of the audit table, top to bottom (unescaped)."""
    table = _AUDIT_TABLE.search(page)
    assert table, "no audit table on the page"
    return [[html.unescape(c).strip() for c in _CELL.findall(row)] for row in _ROW.findall(table.group(1))]


def _status(page: str) -> dict[str, tuple[str, bool]]:
    return {
        html.unescape(what): (html.unescape(value), state == "ok")
        for state, what, value in _STATUS_ROW.findall(page)
    }


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


# Who may see the admin pages.


def test_physician_is_refused_every_admin_page_and_each_refusal_is_audited(web: Web) -> None:
    doc = web.logged_in(web.user("doc", PHYSICIAN))
    for path in ADMIN_PAGES:
        assert doc.get(path).status_code == 403, path
    refusals = web.audit(SECURITY_ALERT, RESTRICTED, user="doc")
    assert [details(r)["path"] for r in refusals] == ADMIN_PAGES
    assert all(r.outcome != Outcome.SUCCESS for r in refusals)


def test_physician_is_refused_every_admin_action_and_each_refusal_is_audited(web: Web) -> None:
    web.user("victim", PHYSICIAN)
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    nodes_before = NodeRegistry(web.pacs.database).all()
    victim_before = web.accounts.get("victim")
    doc = web.logged_in(web.user("doc", PHYSICIAN))
    posts = [
        ("/admin/users", {"name": "mallory", "roles": "admin"}),
        *((f"/admin/users/victim/{action}", {}) for action in USER_ACTIONS),
        ("/admin/modalities", {"ae_title": "EVIL", "host": "10.0.0.9"}),
        ("/admin/modalities/rights", {"ae_title": "CT1", "allow": "find"}),
        ("/admin/modalities/remove", {"ae_title": "CT1"}),
    ]
    for path, data in posts:
        # A valid CSRF token (from a page the physician may see), so that only the role is missing.
        assert doc.post(path, data, form_page="/account/password").status_code == 403, path
    refusals = web.audit(SECURITY_ALERT, RESTRICTED, user="doc")
    assert [details(r)["path"] for r in refusals] == [path for path, _ in posts]
    assert web.accounts.get("mallory") is None
    assert web.accounts.get("victim") == victim_before
    assert NodeRegistry(web.pacs.database).all() == nodes_before


def test_admin_pages_redirect_to_the_login_without_a_session(web: Web) -> None:
    browser = web.browser()
    for path in ADMIN_PAGES:
        assert is_redirect_to(browser.get(path), "/login"), path


# Users.


def test_created_user_gets_a_working_one_time_password(web: Web, boss: Browser) -> None:
    password = _one_time_password(boss.post("/admin/users", {"name": "drwho", "roles": "physician"}))
    assert web.accounts.check_password("drwho", password, OTHER_ADDRESS).verdict is Verdict.ACCEPTED
    account = web.accounts.get("drwho")
    assert account is not None
    assert account.roles == PHYSICIAN and account.must_change_password


def test_user_creation_is_audited_naming_the_admin_and_the_new_user(web: Web, boss: Browser) -> None:
    boss.post("/admin/users", {"name": "drwho", "roles": "physician"})
    assert _user_changes(web, "drwho") == ["user created"]


def test_one_time_password_is_not_shown_on_the_users_page(web: Web, boss: Browser) -> None:
    password = _one_time_password(boss.post("/admin/users", {"name": "drwho", "roles": "physician"}))
    page = boss.get("/admin/users").text
    assert "drwho" in page
    assert password not in page


def test_disabled_user_can_no_longer_log_in_and_loses_their_sessions(web: Web, boss: Browser) -> None:
    doc = web.logged_in(web.user("doc"))
    cookie = doc.cookie
    assert cookie is not None
    assert is_redirect_to(_act(boss, "doc", "disable"), "/admin/users")
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is Verdict.DISABLED
    assert not web.session_exists(cookie)
    assert is_redirect_to(doc.get("/"), "/login")
    assert _user_changes(web, "doc") == ["user disabled"]


def test_enabled_user_can_log_in_again(web: Web, boss: Browser) -> None:
    web.user("doc")
    web.accounts.set_disabled("doc", True)
    assert is_redirect_to(_act(boss, "doc", "enable"), "/admin/users")
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is Verdict.ACCEPTED
    assert _user_changes(web, "doc") == ["user enabled"]


def test_password_reset_replaces_the_password_with_a_one_time_password(web: Web, boss: Browser) -> None:
    web.user("doc")
    password = _one_time_password(_act(boss, "doc", "reset-password"))
    assert web.accounts.check_password("doc", password, OTHER_ADDRESS).verdict is Verdict.ACCEPTED
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is Verdict.WRONG
    account = web.accounts.get("doc")
    assert account is not None and account.must_change_password
    assert _user_changes(web, "doc") == ["password reset, sessions ended"]


def test_two_factor_reset_removes_the_enrolment(web: Web, boss: Browser) -> None:
    web.user("doc")
    assert is_redirect_to(_act(boss, "doc", "reset-totp"), "/admin/users")
    account = web.accounts.get("doc")
    assert account is not None
    assert not account.totp_enrolled and account.recovery_codes_left == 0
    assert _user_changes(web, "doc") == ["second factor reset"]


def test_ending_sessions_sends_the_user_back_to_the_login(web: Web, boss: Browser) -> None:
    doc = web.logged_in(web.user("doc"))
    assert doc.get("/").status_code == 200
    assert is_redirect_to(_act(boss, "doc", "end-sessions"), "/admin/users")
    assert is_redirect_to(doc.get("/"), "/login")
    assert boss.get("/admin/users").status_code == 200  # only doc's sessions ended
    assert _user_changes(web, "doc") == ["sessions ended"]


def test_lifting_the_lockout_lets_the_user_log_in_again(web: Web, boss: Browser) -> None:
    web.user("doc")
    for _ in range(LOCKOUT_AFTER):
        web.accounts.record_failure("doc", "203.0.113.9")
    locked = web.accounts.get("doc")
    assert locked is not None and locked.locked
    assert is_redirect_to(_act(boss, "doc", "lift-lockout"), "/admin/users")
    unlocked = web.accounts.get("doc")
    assert unlocked is not None and not unlocked.locked
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is Verdict.ACCEPTED
    assert _user_changes(web, "doc") == ["lockout lifted"]


def test_last_enabled_admin_cannot_be_disabled(web: Web, boss: Browser) -> None:
    assert is_redirect_to(_act(boss, "boss", "disable"), "/admin/users")
    account = web.accounts.get("boss")
    assert account is not None and not account.disabled
    assert any("last enabled admin" in m for m in messages(boss.get("/admin/users").text))
    assert _user_changes(web, "boss") == []


def test_an_admin_can_be_disabled_while_another_admin_remains(web: Web, boss: Browser) -> None:
    web.user("deputy", ADMIN)
    assert is_redirect_to(_act(boss, "deputy", "disable"), "/admin/users")
    account = web.accounts.get("deputy")
    assert account is not None and account.disabled


# Modalities.


def test_enrolment_answers_a_certificate_issued_by_the_archive_ca(web: Web, boss: Browser) -> None:
    bundle = _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5", allow=["store"]))
    assert set(bundle) == {"client.crt", "client.key", "ca.crt"}
    ca = _ca_certificate(web.pacs)
    cert = x509.load_pem_x509_certificate(bundle["client.crt"])
    assert cert.issuer == ca.subject
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CT1"
    assert x509.load_pem_x509_certificate(bundle["ca.crt"]) == ca


def test_enrolment_private_key_matches_the_certificate(boss: Browser) -> None:
    bundle = _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5"))
    key = serialization.load_pem_private_key(bundle["client.key"], password=None)
    cert = x509.load_pem_x509_certificate(bundle["client.crt"])
    assert key.public_key() == cert.public_key()


def test_enrolled_node_is_registered_with_its_host_port_and_permissions(web: Web) -> None:
    chief = web.logged_in(web.user("chief", ADMIN | PHYSICIAN))  # find and move are PHI grants
    bundle = _bundle(
        _enrol(chief, ae_title="CT1", host="10.0.0.0/24", port="11112", allow=["store", "find", "move"])
    )
    nodes = NodeRegistry(web.pacs.database).all()
    assert [n.ae_title for n in nodes] == ["CT1"]
    node = nodes[0]
    assert node.permissions == frozenset({"store", "find", "move"})
    assert str(node.network) == "10.0.0.0/24" and node.port == 11112
    assert node.cert_issued and not node.plaintext
    assert node.fingerprint == pki.fingerprint(x509.load_pem_x509_certificate(bundle["client.crt"]))
    assert "CT1" in chief.get("/admin/modalities").text


def test_enrolled_node_private_key_is_kept_nowhere(web: Web, boss: Browser) -> None:
    bundle = _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5"))
    key = serialization.load_pem_private_key(bundle["client.key"], password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    settings = web.pacs.settings
    files = [p for root in {settings.data_dir, settings.key_dir} for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in (bundle["client.key"], der, scalar):
            assert secret not in data, path
    node = NodeRegistry(web.pacs.database).get("CT1")
    assert node is not None and "PRIVATE KEY" not in node.cert_pem
    assert all("PRIVATE KEY" not in record.details for record in web.pacs.audit.records())


def test_enrolment_is_audited_naming_the_admin(web: Web, boss: Browser) -> None:
    _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5", allow=["store"], port="11112"))
    records = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION)
    assert len(records) == 1
    record = records[0]
    assert record.user_id == "boss" and record.action == str(Action.CREATE)
    assert details(record)["ae_title"] == "CT1" and details(record)["port"] == 11112
    assert details(record)["permissions"] == ["store"]
    assert details(record)["host"] == "10.0.0.5/32"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ae_title": "CT1", "host": "10.0.0.6"}, "already enrolled"),
        ({"ae_title": "A" * 17, "host": "10.0.0.6"}, "AE title"),
        ({"ae_title": "CT2", "host": "10.0.0.0/33"}, "not an IP address or CIDR network"),
        ({"ae_title": "CT2", "host": "10.0.0.1/24"}, "not an IP address or CIDR network"),
        ({"ae_title": "CT2", "host": "10.0.0.6", "port": "eleven"}, "is not a number"),
    ],
    ids=["duplicate-ae", "ae-too-long", "cidr-prefix", "cidr-host-bits", "port-not-numeric"],
)
def test_bad_enrolment_is_refused_with_a_message_and_enrols_nothing(
    web: Web, boss: Browser, fields: dict[str, str], message: str
) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    before = NodeRegistry(web.pacs.database).all()
    response = _enrol(boss, **fields)
    assert is_redirect_to(response, "/admin/modalities")
    shown = messages(boss.get("/admin/modalities").text)
    assert len(shown) == 1 and shown[0].startswith("Not enrolled:") and message in shown[0], shown
    assert NodeRegistry(web.pacs.database).all() == before
    assert [r.user_id for r in web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION)] == ["setup"]


def test_removing_a_node_unregisters_it_and_is_audited(web: Web, boss: Browser) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    response = boss.post("/admin/modalities/remove", {"ae_title": "CT1"}, form_page="/admin/modalities")
    assert is_redirect_to(response, "/admin/modalities")
    assert NodeRegistry(web.pacs.database).get("CT1") is None
    removals = [r for r in web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION) if r.action == str(Action.DELETE)]
    assert [(r.user_id, details(r)["ae_title"]) for r in removals] == [("boss", "CT1")]


def test_a_node_whose_ae_title_holds_a_slash_can_be_removed(web: Web, boss: Browser) -> None:
    PacsAdmin(web.pacs).enrol("CT/ROOM1", "10.0.0.5", "store", None, user="setup")
    boss.post("/admin/modalities/remove", {"ae_title": "CT/ROOM1"}, form_page="/admin/modalities")
    assert NodeRegistry(web.pacs.database).get("CT/ROOM1") is None


def test_the_certificate_download_name_cannot_carry_header_syntax(web: Web, boss: Browser) -> None:
    form = {"ae_title": 'EV"IL;X', "host": "10.0.0.5", "allow": "store"}
    response = boss.post("/admin/modalities", form, form_page="/admin/modalities")
    assert response.mimetype == "application/zip"
    kind, parameters = parse_options_header(response.headers["Content-Disposition"])
    assert (kind, parameters) == ("attachment", {"filename": 'EV"IL;X-certificate.zip'})


# PHI grants: find, move and get let a node read every patient's data.


def _refusals(web: Web, user: str) -> list[AuditRecord]:
    return [r for r in web.audit(SECURITY_ALERT, RESTRICTED, user=user) if "PHI grant" in details(r)["what"]]


@pytest.mark.parametrize("right", ["find", "move", "get"])
def test_an_admin_who_is_not_a_physician_cannot_enrol_a_node_with_a_phi_grant(
    web: Web, boss: Browser, right: str
) -> None:
    response = _enrol(boss, ae_title="SPY", host="10.0.0.66", allow=["store", right])
    assert response.status_code == 403
    assert response.mimetype == "text/html" and b"PRIVATE KEY" not in response.data
    shown = messages(response.text)
    assert len(shown) == 1 and shown[0].startswith("Not enrolled:"), shown
    assert f"granting {right}" in shown[0] and "admin who is also a physician" in shown[0]
    assert NodeRegistry(web.pacs.database).all() == []
    assert web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION) == []
    (refusal,) = _refusals(web, "boss")
    assert refusal.outcome == int(Outcome.MINOR_FAILURE) and refusal.source == ADDRESS
    assert details(refusal) == {
        "what": "PHI grant refused",
        "ae_title": "SPY",
        "host": "10.0.0.66/32",
        "permissions": sorted({"store", right}),
        "phi_grant": [right],
        "roles": ["admin"],
    }


def test_an_admin_who_is_also_a_physician_may_enrol_a_node_with_a_phi_grant(web: Web) -> None:
    chief = web.logged_in(web.user("chief", ADMIN | PHYSICIAN))
    bundle = _bundle(_enrol(chief, ae_title="WS1", host="10.0.0.8", allow=["store", "find", "get"]))
    node = NodeRegistry(web.pacs.database).get("WS1")
    assert node is not None and node.permissions == frozenset({"store", "find", "get"})
    assert node.fingerprint == pki.fingerprint(x509.load_pem_x509_certificate(bundle["client.crt"]))
    (record,) = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="chief")
    assert details(record)["phi_grant"] == ["find", "get"]
    assert details(record)["authority"] == "admin and physician (web)"
    assert _refusals(web, "chief") == []


def test_a_store_only_enrolment_is_no_phi_grant_and_any_admin_may_make_it(web: Web, boss: Browser) -> None:
    _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5", allow=["store"]))
    (record,) = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="boss")
    assert details(record)["permissions"] == ["store"] and "phi_grant" not in details(record)


def _change_rights(browser: Browser, ae_title: str, allow: list[str]) -> TestResponse:
    token = browser.token("/admin/modalities")
    form = {"ae_title": ae_title, "allow": allow, "csrf_token": token}
    return browser.client.post("/admin/modalities/rights", data=form)


def test_an_admin_who_is_not_a_physician_cannot_widen_a_node_to_a_phi_grant(web: Web, boss: Browser) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    before = NodeRegistry(web.pacs.database).all()
    response = _change_rights(boss, "CT1", ["store", "find"])
    assert response.status_code == 403
    shown = messages(response.text)
    assert len(shown) == 1 and shown[0].startswith("CT1 unchanged:") and "granting find" in shown[0]
    assert NodeRegistry(web.pacs.database).all() == before
    (refusal,) = _refusals(web, "boss")
    assert details(refusal)["ae_title"] == "CT1" and details(refusal)["phi_grant"] == ["find"]


def test_an_admin_who_is_also_a_physician_may_widen_a_node_to_a_phi_grant(web: Web) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    chief = web.logged_in(web.user("chief", ADMIN | PHYSICIAN))
    assert is_redirect_to(_change_rights(chief, "CT1", ["store", "move"]), "/admin/modalities")
    node = NodeRegistry(web.pacs.database).get("CT1")
    assert node is not None and node.permissions == frozenset({"store", "move"})
    (record,) = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="chief")
    assert record.action == str(Action.UPDATE)
    assert details(record)["before"] == ["store"] and details(record)["permissions"] == ["move", "store"]
    assert details(record)["phi_grant"] == ["move"]


def test_any_admin_may_narrow_a_node_and_take_its_phi_grant_away(web: Web, boss: Browser) -> None:
    admin = PacsAdmin(web.pacs)
    admin.enrol("WS1", "10.0.0.8", "store,find,get", None, user="chief", roles=ADMIN | PHYSICIAN)
    assert is_redirect_to(_change_rights(boss, "WS1", ["store", "find"]), "/admin/modalities")
    assert is_redirect_to(_change_rights(boss, "WS1", ["store"]), "/admin/modalities")
    node = NodeRegistry(web.pacs.database).get("WS1")
    assert node is not None and node.permissions == frozenset({"store"})
    assert _refusals(web, "boss") == []
    changes = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="boss")
    assert [details(r)["permissions"] for r in changes] == [["find", "store"], ["store"]]


@pytest.mark.parametrize(
    ("ae_title", "allow", "message"),
    [
        ("CT9", ["store"], "CT9 unchanged: no node with AE title 'CT9' is enrolled"),
        ("CT1", [], "CT1 unchanged: tick at least one right (Remove takes every right away)"),
    ],
    ids=["unknown-node", "no-rights"],
)
def test_a_change_of_rights_that_cannot_be_made_is_refused_with_a_message(
    web: Web, boss: Browser, ae_title: str, allow: list[str], message: str
) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    before = NodeRegistry(web.pacs.database).all()
    assert is_redirect_to(_change_rights(boss, ae_title, allow), "/admin/modalities")
    assert messages(boss.get("/admin/modalities").text) == [message]
    assert NodeRegistry(web.pacs.database).all() == before
    assert web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="boss") == []


def test_the_modalities_page_marks_phi_grants(web: Web, boss: Browser) -> None:
    admin = PacsAdmin(web.pacs)
    admin.enrol("CT1", "10.0.0.5", "store", None, user="setup")
    admin.enrol("WS1", "10.0.0.8", "store,find", None, user="setup", roles=ADMIN | PHYSICIAN)
    page = boss.get("/admin/modalities").text
    marked = dict(re.findall(r'<tr data-ae="([^"]+)" class="(phi|plain)">', page))
    assert marked == {"CT1": "plain", "WS1": "phi"}


# The audit log.


def test_audit_log_lists_records_newest_first(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    expected = sorted((r.seq for r in web.pacs.audit.records()), reverse=True)
    rows = _audit_rows(boss.get("/admin/audit").text)
    assert [int(row[0]) for row in rows] == expected
    assert rows[0][5] == "carol"  # the last seeded record


def test_audit_log_filters_by_event_id(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    rows = _audit_rows(boss.get("/admin/audit?event_id=110112").text)
    assert [(row[2], row[5]) for row in rows] == [("110112", "carol")]


def test_audit_log_filters_by_user(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    rows = _audit_rows(boss.get("/admin/audit?user=carol").text)
    assert [(row[2], row[5]) for row in rows] == [("110103", "carol"), ("110112", "carol")]


def test_audit_log_shows_only_failures_when_asked(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    rows = _audit_rows(boss.get("/admin/audit?failures=1").text)
    assert [(row[2], row[4], row[5]) for row in rows] == [("110114 / 110122", "4", "mallory")]


def test_audit_log_reports_an_intact_chain(boss: Browser) -> None:
    chain = _CHAIN.search(boss.get("/admin/audit").text)
    assert chain and chain.group(1).startswith("Hash chain intact")


def test_audit_log_reports_a_broken_chain(web: Web, boss: Browser) -> None:
    with web.pacs.database.write() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 1).values(details='{"what": "edited"}'))
    chain = _CHAIN.search(boss.get("/admin/audit").text)
    assert chain and chain.group(1).startswith("HASH CHAIN BROKEN")


def test_viewing_the_audit_log_is_audited(web: Web, boss: Browser) -> None:
    boss.get("/admin/audit?user=carol")
    views = web.audit(str(EventID.AUDIT_LOG_USED), user="boss")
    assert len(views) == 1
    assert details(views[0])["filters"] == {"user_id": "carol"}


def test_audit_log_escapes_recorded_values(web: Web, boss: Browser) -> None:
    web.pacs.audit.append(
        AuditEvent(
            EventID.INSTANCES_ACCESSED,
            Action.READ,
            user_id="doc",
            patient_id=SCRIPT,
            details={"what": SCRIPT},
        )
    )
    page = boss.get("/admin/audit").text
    assert SCRIPT not in page
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2


# The system status.


def test_status_page_lists_disk_certificates_index_and_plaintext_dicom(web: Web, boss: Browser) -> None:
    settings = web.pacs.settings
    rows = _status(boss.get("/admin/status").text)
    assert list(rows) == [
        "free disk (blobs)",
        "server certificate",
        "CA certificate",
        "index",
        "PHI grants (find, move, get)",
        "plaintext DICOM",
    ]
    free = re.match(r"([\d,]+) MiB", rows["free disk (blobs)"][0])
    assert free is not None
    actual_free = shutil.disk_usage(settings.blob_dir).free // 2**20
    assert abs(int(free.group(1).replace(",", "")) - actual_free) < 1024
    now = datetime.now(UTC)
    for label, name in (("server certificate", SERVER_CERT), ("CA certificate", CA_CERT)):
        cert = pki.load_certificate(settings.tls_dir / name)
        days = (cert.not_valid_after_utc - now).total_seconds() / 86400
        shown = re.fullmatch(r"expires in (\d+) days", rows[label][0])
        assert shown is not None and abs(int(shown.group(1)) - days) <= 1, rows[label]
        assert rows[label][1]
    index = rows["index"][0]
    assert index.startswith("SQLCipher") if web.pacs.database.is_sqlite else index.startswith("PostgreSQL")
    assert rows["PHI grants (find, move, get)"] == ("none", True)
    assert rows["plaintext DICOM"] == ("closed", True)


def test_status_page_lists_phi_grants_and_flags_one_to_a_network(web: Web, boss: Browser) -> None:
    admin = PacsAdmin(web.pacs)
    admin.enrol("CT1", "10.0.0.5", "store", None, user="setup")
    admin.enrol("WS1", "10.0.0.8", "store,find,get", None, user="setup", roles=ADMIN | PHYSICIAN)
    assert _status(boss.get("/admin/status").text)["PHI grants (find, move, get)"] == (
        "WS1 at 10.0.0.8/32 (find,get)",
        True,
    )
    admin.enrol("WARD", "10.0.1.0/24", "move", None, user="setup", roles=ADMIN | PHYSICIAN)
    assert _status(boss.get("/admin/status").text)["PHI grants (find, move, get)"] == (
        "WARD at 10.0.1.0/24 (move); WS1 at 10.0.0.8/32 (find,get)",
        False,
    )


def test_status_page_reports_open_plaintext_dicom(web: Web, boss: Browser) -> None:
    settings = web.pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    NodeRegistry(web.pacs.database).add(
        "LEGACY",
        host="10.0.0.7",
        certificate=pki.issue_client_cert(ca, "LEGACY").cert,
        cert_issued=True,
        plaintext=True,
    )
    rows = _status(boss.get("/admin/status").text)
    assert rows["plaintext DICOM"] == (f"open on port {settings.dicom.plaintext_port} for LEGACY", False)


# CSRF.


def test_admin_posts_without_a_csrf_token_are_refused(web: Web, boss: Browser) -> None:
    web.user("doc")
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    doc_before = web.accounts.get("doc")
    nodes_before = NodeRegistry(web.pacs.database).all()
    posts = [
        ("/admin/users", {"name": "mallory", "roles": "admin"}),
        *((f"/admin/users/doc/{action}", {}) for action in USER_ACTIONS),
        ("/admin/modalities", {"ae_title": "EVIL", "host": "10.0.0.9"}),
        ("/admin/modalities/rights", {"ae_title": "CT1", "allow": "find"}),
        ("/admin/modalities/remove", {"ae_title": "CT1"}),
    ]
    for path, data in posts:
        assert boss.client.post(path, data=data).status_code == 400, path
        assert boss.client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    assert web.accounts.get("mallory") is None
    assert web.accounts.get("doc") == doc_before
    assert NodeRegistry(web.pacs.database).all() == nodes_before
    assert _user_changes(web, "doc") == [] and _user_changes(web, "mallory") == []
