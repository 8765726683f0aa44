"""The web viewer's admin pages: who may see them, and managing users.

Everything here touches the index (accounts, sessions, nodes, the audit chain), so every
test runs on both backends (the ``pacs`` fixture). Time is a fake clock (see
:mod:`tests.web.web_helpers`); the app gets the real admin backend, :class:`pacs.serve.webadmin.PacsAdmin`.
"""

from __future__ import annotations

from pacs.core.accounts import LOCKOUT_AFTER, LoginVerdict
from pacs.core.audit import Outcome
from pacs.core.nodes import NodeRegistry
from pacs.serve.webadmin import PacsAdmin
from tests.web.admin.admin_helpers import (
    ADMIN_PAGES,
    OTHER_ADDRESS,
    RESTRICTED,
    SECURITY_ALERT,
    USER_ACTIONS,
    _act,
    _one_time_password,
    _user_changes,
)
from tests.web.web_helpers import (
    ADMIN,
    PASSPHRASE,
    PHYSICIAN,
    Browser,
    Web,
    details,
    is_redirect_to,
    messages,
)

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
    assert web.accounts.check_password("drwho", password, OTHER_ADDRESS).verdict is LoginVerdict.ACCEPTED
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
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is LoginVerdict.DISABLED
    assert not web.session_exists(cookie)
    assert is_redirect_to(doc.get("/"), "/login")
    assert _user_changes(web, "doc") == ["user disabled"]


def test_enabled_user_can_log_in_again(web: Web, boss: Browser) -> None:
    web.user("doc")
    web.accounts.set_disabled("doc", True)
    assert is_redirect_to(_act(boss, "doc", "enable"), "/admin/users")
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is LoginVerdict.ACCEPTED
    assert _user_changes(web, "doc") == ["user enabled"]


def test_password_reset_replaces_the_password_with_a_one_time_password(web: Web, boss: Browser) -> None:
    web.user("doc")
    password = _one_time_password(_act(boss, "doc", "reset-password"))
    assert web.accounts.check_password("doc", password, OTHER_ADDRESS).verdict is LoginVerdict.ACCEPTED
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is LoginVerdict.WRONG
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
    assert web.accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is LoginVerdict.ACCEPTED
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
