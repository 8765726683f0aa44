"""The web viewer's sessions: CSRF, expiry, the forced password change, headers, the audit trail.

Tests where the database matters run on both backends (the ``pacs`` fixture); the rest
use an embedded SQLCipher archive. Time is a fake clock (see :mod:`tests.web.web_helpers`).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pacs.core.context import Context
from storage.models import WebSession
from tests.web.auth.auth_helpers import (
    AUTHENTICATION,
    LOGIN,
    LOGOUT,
    _first_login,
    _wrong_code,
)
from tests.web.web_helpers import (
    ADDRESS,
    FIRST_PASSPHRASE,
    NEW_PASSPHRASE,
    PHYSICIAN,
    STEP,
    Web,
    details,
    is_redirect_to,
    make_web,
    messages,
    minutes,
)
from webviewer.sessions import COOKIE

# CSRF.


def test_login_without_csrf_token_is_refused(lite: Web) -> None:
    user = lite.user("doc")
    browser = lite.browser()
    browser.get("/login")
    response = browser.client.post("/login", data={"username": user.name, "password": user.password})
    assert response.status_code == 400
    assert is_redirect_to(browser.get("/login/totp"), "/login")


def test_totp_without_csrf_token_is_refused(lite: Web) -> None:
    user = lite.user("doc")
    assert user.totp is not None
    browser = lite.browser()
    browser.enter_password(user.name, user.password)
    lite.clock.advance(STEP)
    response = browser.client.post("/login/totp", data={"code": user.totp.at(lite.clock())})
    assert response.status_code == 400
    assert is_redirect_to(browser.get("/"), "/login")


def test_enrolment_without_csrf_token_is_refused(lite: Web) -> None:
    lite.accounts.add("newdoc", PHYSICIAN, FIRST_PASSPHRASE)
    browser = lite.browser()
    assert is_redirect_to(browser.enter_password("newdoc", FIRST_PASSPHRASE), "/login/enrol")
    totp, _ = browser.enrolment_page()
    response = browser.client.post("/login/enrol", data={"code": totp.at(lite.clock())})
    assert response.status_code == 400
    account = lite.accounts.get("newdoc")
    assert account is not None and not account.totp_enrolled


def test_password_change_without_csrf_token_is_refused(lite: Web) -> None:
    browser = _first_login(lite)
    response = browser.client.post("/account/password", data={"new": NEW_PASSPHRASE, "again": NEW_PASSPHRASE})
    assert response.status_code == 400
    account = lite.accounts.get("newdoc")
    assert account is not None and account.must_change_password


def test_logout_without_csrf_token_is_refused(lite: Web) -> None:
    browser = lite.logged_in(lite.user("doc"))
    assert browser.client.post("/logout").status_code == 400
    assert browser.get("/").status_code == 200


# Sessions.


def test_idle_session_expires(pacs: Context) -> None:
    web = make_web(pacs, session_idle=timedelta(minutes=5), session_absolute=timedelta(hours=1))
    browser = web.logged_in(web.user("doc"))
    token = browser.cookie
    assert token is not None and web.session_exists(token)
    web.clock.advance(minutes(5) + 1)
    assert is_redirect_to(browser.get("/"), "/login")
    assert not web.session_exists(token)


def test_activity_within_the_idle_limit_keeps_the_session(pacs: Context) -> None:
    web = make_web(pacs, session_idle=timedelta(minutes=5), session_absolute=timedelta(hours=1))
    browser = web.logged_in(web.user("doc"))
    for _ in range(3):
        web.clock.advance(minutes(4))
        assert browser.get("/").status_code == 200


def test_session_expires_at_the_absolute_limit_despite_activity(pacs: Context) -> None:
    web = make_web(pacs, session_idle=timedelta(minutes=15), session_absolute=timedelta(minutes=30))
    browser = web.logged_in(web.user("doc"))
    token = browser.cookie
    assert token is not None
    for step in (10, 10, 9):
        web.clock.advance(minutes(step))
        assert browser.get("/").status_code == 200
    web.clock.advance(minutes(1) + 1)
    assert is_redirect_to(browser.get("/"), "/login")
    assert not web.session_exists(token)


def test_session_token_changes_at_login(web: Web) -> None:
    user = web.user("doc")
    assert user.totp is not None
    browser = web.browser()
    browser.get("/login")
    before = browser.cookie
    browser.enter_password(user.name, user.password)
    after_password = browser.cookie
    web.clock.advance(STEP)
    assert is_redirect_to(browser.enter_code(user.totp.at(web.clock())), "/")
    after_login = browser.cookie
    assert None not in (before, after_password, after_login)
    assert len({before, after_password, after_login}) == 3


def test_token_from_before_login_opens_no_session_after_it(web: Web) -> None:
    user = web.user("doc")
    browser = web.browser()
    browser.get("/login")
    planted = browser.cookie
    assert planted is not None
    browser.log_in(user)
    assert browser.get("/").status_code == 200
    attacker = web.browser()
    attacker.use_cookie(planted)
    assert is_redirect_to(attacker.get("/"), "/login")


def test_logout_ends_the_session_on_the_server(web: Web) -> None:
    browser = web.logged_in(web.user("doc"))
    token = browser.cookie
    assert token is not None
    assert is_redirect_to(browser.log_out(), "/login")
    assert not web.session_exists(token)
    replay = web.browser()
    replay.use_cookie(token)
    assert is_redirect_to(replay.get("/"), "/login")


def test_admin_can_end_a_users_sessions(web: Web) -> None:
    doc = web.user("doc")
    laptop, workstation = web.logged_in(doc), web.logged_in(doc)
    colleague = web.logged_in(web.user("nurse"))
    assert web.accounts.end_sessions("doc") == 2
    assert is_redirect_to(laptop.get("/"), "/login")
    assert is_redirect_to(workstation.get("/"), "/login")
    assert colleague.get("/").status_code == 200


# The forced password change.


@pytest.mark.parametrize("path", ["/", "/?name=QUIX&page=2"])
def test_new_account_is_sent_to_the_password_change(web: Web, path: str) -> None:
    browser = _first_login(web)
    assert is_redirect_to(browser.get(path), "/account/password")
    page = browser.get("/account/password")
    assert page.status_code == 200
    assert "Choose your own" in page.text


def test_common_password_is_refused_at_the_forced_change(web: Web) -> None:
    browser = _first_login(web)
    response = browser.post("/account/password", {"new": "qwerty123456", "again": "qwerty123456"})
    assert response.status_code == 200
    assert any("common" in message for message in messages(response.text))
    account = web.accounts.get("newdoc")
    assert account is not None and account.must_change_password
    assert is_redirect_to(browser.get("/"), "/account/password")


def test_study_list_opens_after_the_forced_change(web: Web) -> None:
    browser = _first_login(web)
    response = browser.post("/account/password", {"new": NEW_PASSPHRASE, "again": NEW_PASSPHRASE})
    assert is_redirect_to(response, "/")
    assert browser.get("/").status_code == 200
    account = web.accounts.get("newdoc")
    assert account is not None and not account.must_change_password


# Headers and the cookie.


@pytest.mark.parametrize("path", ["/", "/login"])
def test_security_headers(lite: Web, path: str) -> None:
    browser = lite.logged_in(lite.user("doc")) if path == "/" else lite.browser()
    response = browser.get(path)
    assert response.status_code == 200
    hsts = response.headers["Strict-Transport-Security"]
    assert int(hsts.split("max-age=", 1)[1].split(";", 1)[0]) >= 31_536_000
    csp = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in [directive.strip() for directive in csp.split(";")]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]


@pytest.mark.parametrize("stage", ["before login", "after login"])
def test_session_cookie_attributes(lite: Web, stage: str) -> None:
    user = lite.user("doc")
    browser = lite.browser()
    response = browser.get("/login")
    if stage == "after login":
        response = browser.log_in(user)
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 1
    name_value, *attributes = [part.strip() for part in cookies[0].split(";")]
    assert name_value.split("=", 1)[0] == COOKIE and COOKIE.startswith("__Host-")
    lowered = [attribute.lower() for attribute in attributes]
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= set(lowered)
    assert not any(attribute.startswith("domain") for attribute in lowered)


# The audit trail.


def test_login_is_audited_with_the_source_address(web: Web) -> None:
    web.logged_in(web.user("doc"))
    logins = web.audit(AUTHENTICATION, LOGIN, "doc")
    assert [(record.outcome, record.source) for record in logins] == [(0, ADDRESS)]


def test_logout_is_audited_with_the_source_address(web: Web) -> None:
    web.logged_in(web.user("doc")).log_out()
    logouts = web.audit(AUTHENTICATION, LOGOUT, "doc")
    assert [(record.outcome, record.source) for record in logouts] == [(0, ADDRESS)]


def test_totp_failure_is_audited_with_the_source_address(web: Web) -> None:
    user = web.user("doc")
    browser = web.browser()
    browser.enter_password(user.name, user.password)
    browser.enter_code(_wrong_code(user, web.clock()))
    failures = web.audit(AUTHENTICATION, LOGIN, "doc")
    assert len(failures) == 1
    assert failures[0].outcome != 0 and failures[0].source == ADDRESS
    assert details(failures[0])["step"] == "totp"


# Credential changes end sessions.


def test_changing_a_password_asks_for_the_current_one(web: Web) -> None:
    user = web.user("doc")
    browser = web.logged_in(user)
    answer = browser.post(
        "/account/password",
        {
            "current": "not my password at all",
            "new": "amber tide over lanterns",
            "again": "amber tide over lanterns",
        },
    )
    assert answer.status_code == 200
    assert web.accounts.check_password("doc", user.password, "198.51.100.9").ok


def test_changing_a_password_ends_the_users_other_sessions_and_keeps_this_one(web: Web) -> None:
    user = web.user("doc")
    elsewhere = web.logged_in(user, address="198.51.100.20")
    here = web.logged_in(user)
    new = "amber tide over lanterns"
    answer = here.post("/account/password", {"current": user.password, "new": new, "again": new})
    assert is_redirect_to(answer, "/")
    assert here.get("/").status_code == 200
    assert is_redirect_to(elsewhere.get("/"), "/login")


@pytest.mark.parametrize("change", ["reset_password", "reset_totp", "disable"])
def test_resetting_or_disabling_an_account_ends_its_sessions(web: Web, change: str) -> None:
    user = web.user("doc")
    browser = web.logged_in(user)
    pending = web.browser("198.51.100.30")
    assert is_redirect_to(pending.enter_password(user.name, user.password), "/login/totp")
    if change == "disable":
        web.accounts.set_disabled("doc")
    else:
        getattr(web.accounts, change)("doc")
    assert is_redirect_to(browser.get("/"), "/login")
    assert is_redirect_to(pending.get("/login/totp"), "/login"), "the password step is forgotten too"


def test_an_admin_who_is_not_a_physician_starts_on_the_users_page(web: Web) -> None:
    admin = web.user("boss", frozenset({"admin"}))
    response = web.browser().log_in(admin)
    assert is_redirect_to(response, "/admin/users")


def test_expired_sessions_are_swept_when_new_ones_start(lite: Web) -> None:
    for address in ("198.51.100.1", "198.51.100.2"):
        lite.browser(address).get("/login")
    lite.clock.advance(minutes(16))
    lite.browser("198.51.100.3").get("/login")
    with lite.pacs.database.read() as db:
        assert db.scalar(select(func.count()).select_from(WebSession)) == 1
