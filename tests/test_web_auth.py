"""The web viewer's login: password then TOTP, sessions, CSRF, lockout, headers and the audit trail.

Tests where the database matters run on both backends (the ``pacs`` fixture); the rest
use an embedded SQLCipher archive. Time is a fake clock (see :mod:`tests.web_helpers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from pacs.core import accounts as pacs_accounts
from pacs.core.accounts import ACCOUNT_FREE_FAILURES, ADDRESS_FREE_FAILURES, LOCKOUT_AFTER, MAX_BACKOFF
from pacs.core.audit import EventID, EventType
from pacs.core.context import Context
from storage.db import WebSession
from tests.web_helpers import (
    ADDRESS,
    ADMIN,
    FIRST_PASSPHRASE,
    NEW_PASSPHRASE,
    PASSPHRASE,
    PHYSICIAN,
    STEP,
    Browser,
    User,
    Web,
    details,
    is_redirect_to,
    make_web,
    messages,
    minutes,
    sqlite_pacs,
    store,
)
from webviewer.auth import FAILED
from webviewer.sessions import COOKIE

PATIENT = "QUIXOTE^DULCINEA"
AUTHENTICATION = str(EventID.USER_AUTHENTICATION)
LOGIN = str(EventType.LOGIN)
LOGOUT = str(EventType.LOGOUT)
ATTACKER = "203.0.113.66"
PARALLEL_ATTEMPTS = 20


@pytest.fixture
def web(pacs: Context) -> Web:
    """The web viewer on each database backend."""
    return make_web(pacs)


@pytest.fixture
def lite_pacs(tmp_path: Path) -> Iterator[Context]:
    yield from sqlite_pacs(tmp_path)


@pytest.fixture
def lite(lite_pacs: Context) -> Web:
    """The web viewer on the embedded index only."""
    return make_web(lite_pacs)


def _wrong_code(user: User, moment: float) -> str:
    """A six-digit code valid at no step around `moment`."""
    assert user.totp is not None
    valid = {user.totp.at(moment + offset * STEP) for offset in (-1, 0, 1)}
    return next(code for code in (f"{n:06d}" for n in range(10**6)) if code not in valid)


def _lock(web: Web, user: User, browser: Browser) -> None:
    """Fail the password LOCKOUT_AFTER times, waiting out every back-off."""
    for attempt in range(LOCKOUT_AFTER):
        assert is_redirect_to(browser.enter_password(user.name, f"not the password {attempt}"), "/login")
        web.clock.advance(MAX_BACKOFF.total_seconds() + 1)


def _first_login(web: Web) -> Browser:
    """A new account (one-time password, no second factor) through password and TOTP enrolment."""
    web.accounts.add("newdoc", PHYSICIAN, FIRST_PASSPHRASE)
    browser = web.browser()
    assert is_redirect_to(browser.enter_password("newdoc", FIRST_PASSPHRASE), "/login/enrol")
    _, response = browser.enrol()
    assert response.status_code == 200 and 'id="recovery-codes"' in response.text
    return browser


# Nothing without a session.


@pytest.mark.parametrize("path", ["/", "/?name=QUIX", "/login/totp", "/login/enrol", "/account/password"])
def test_page_without_a_session_redirects_to_login(lite: Web, path: str) -> None:
    assert is_redirect_to(lite.browser().get(path), "/login")


def test_logout_without_a_session_redirects_to_login(lite: Web) -> None:
    browser = lite.browser()
    assert is_redirect_to(browser.post("/logout", {}, form_page="/login"), "/login")


def test_login_page_opens_without_a_session(lite: Web) -> None:
    response = lite.browser().get("/login")
    assert response.status_code == 200
    assert 'name="password"' in response.text


def test_password_alone_shows_no_patient_data(web: Web, ct_dir: Path) -> None:
    store(web.pacs, sorted(ct_dir.glob("*.dcm")))
    user = web.user("doc")
    browser = web.browser()
    after_password = browser.enter_password(user.name, user.password)
    assert is_redirect_to(after_password, "/login/totp")
    second_factor = browser.get("/login/totp")
    assert second_factor.status_code == 200
    study_list = browser.get("/")
    assert study_list.status_code == 302
    for page in (after_password, second_factor, study_list, browser.get("/login")):
        assert "QUIXOTE" not in page.text
    # With the second factor the same study list does show the name.
    assert PATIENT in web.logged_in(user).get("/").text


# The second factor.


def test_wrong_totp_code_is_refused_with_the_generic_message(lite: Web) -> None:
    user = lite.user("doc")
    browser = lite.browser()
    browser.enter_password(user.name, user.password)
    lite.clock.advance(STEP)
    assert is_redirect_to(browser.enter_code(_wrong_code(user, lite.clock())), "/login")
    assert browser.messages() == [FAILED]
    assert is_redirect_to(browser.get("/"), "/login")


def test_wrong_totp_code_gets_the_same_message_as_a_wrong_password(lite: Web) -> None:
    user = lite.user("doc")
    by_code = lite.browser()
    by_code.enter_password(user.name, user.password)
    by_code.enter_code(_wrong_code(user, lite.clock()))
    by_password = lite.browser()
    by_password.enter_password(user.name, "not the password at all")
    assert by_code.messages() == by_password.messages() == [FAILED]


def test_replayed_totp_code_is_refused(web: Web) -> None:
    user = web.user("doc")
    assert user.totp is not None
    web.clock.advance(STEP)
    code = user.totp.at(web.clock())
    first = web.browser()
    first.enter_password(user.name, user.password)
    assert is_redirect_to(first.enter_code(code), "/")
    second = web.browser()
    assert is_redirect_to(second.enter_password(user.name, user.password), "/login/totp")
    assert is_redirect_to(second.enter_code(code), "/login")
    assert second.messages() == [FAILED]
    assert is_redirect_to(second.get("/"), "/login")


def test_recovery_code_logs_in_once(web: Web) -> None:
    user = web.user("doc")
    code = user.recovery_codes[0]
    first = web.browser()
    first.enter_password(user.name, user.password)
    assert is_redirect_to(first.enter_code(code), "/")
    assert first.get("/").status_code == 200


def test_recovery_code_does_not_log_in_twice(web: Web) -> None:
    user = web.user("doc")
    code = user.recovery_codes[0]
    first = web.browser()
    first.enter_password(user.name, user.password)
    assert is_redirect_to(first.enter_code(code), "/")
    second = web.browser()
    second.enter_password(user.name, user.password)
    assert is_redirect_to(second.enter_code(code), "/login")
    assert second.messages() == [FAILED]
    assert is_redirect_to(second.get("/"), "/login")


# The password step.


def test_unknown_user_gets_the_same_message_as_a_wrong_password(lite: Web) -> None:
    lite.user("doc")
    unknown, wrong = lite.browser(), lite.browser()
    unknown_response = unknown.enter_password("nobody", PASSPHRASE)
    wrong_response = wrong.enter_password("doc", "not the password at all")
    assert is_redirect_to(unknown_response, "/login") and is_redirect_to(wrong_response, "/login")
    assert unknown.messages() == wrong.messages() == [FAILED]


def test_repeated_wrong_passwords_lock_the_account(web: Web) -> None:
    user = web.user("doc")
    _lock(web, user, web.browser())
    account = web.accounts.get("doc")
    assert account is not None and account.locked


def test_locked_account_logs_in_with_the_right_password_and_code_together(web: Web) -> None:
    user = web.user("doc")
    _lock(web, user, web.browser(ATTACKER))
    web.browser().log_in(user)


def test_locked_account_asks_for_the_code_after_a_wrong_password_and_then_fails(web: Web) -> None:
    user = web.user("doc")
    _lock(web, user, web.browser(ATTACKER))
    assert user.totp is not None
    browser = web.browser()
    assert is_redirect_to(browser.enter_password(user.name, "not the password at all"), "/login/totp")
    web.clock.advance(STEP)
    assert is_redirect_to(browser.enter_code(user.totp.at(web.clock())), "/login")
    assert browser.messages() == [FAILED]
    assert is_redirect_to(browser.get("/"), "/login")


def test_locked_account_refuses_the_right_password_with_a_wrong_code(web: Web) -> None:
    user = web.user("doc")
    _lock(web, user, web.browser(ATTACKER))
    browser = web.browser()
    assert is_redirect_to(browser.enter_password(user.name, user.password), "/login/totp")
    assert is_redirect_to(browser.enter_code(_wrong_code(user, web.clock())), "/login")
    assert browser.messages() == [FAILED]
    assert is_redirect_to(browser.get("/"), "/login")


def test_locked_known_and_unknown_names_answer_alike(lite: Web) -> None:
    user = lite.user("doc")
    for name in (user.name, "nobody"):
        for _ in range(LOCKOUT_AFTER):
            lite.accounts.record_failure(name, ATTACKER)
    known, unknown = lite.browser(), lite.browser()
    known_response = known.enter_password(user.name, "a wrong guess")
    unknown_response = unknown.enter_password("nobody", "a wrong guess")
    assert is_redirect_to(known_response, "/login/totp") and is_redirect_to(unknown_response, "/login/totp")
    assert is_redirect_to(known.enter_code("123456"), "/login")
    assert is_redirect_to(unknown.enter_code("123456"), "/login")
    assert known.messages() == unknown.messages() == [FAILED]


def test_locked_account_cannot_start_an_enrolment(lite: Web) -> None:
    lite.accounts.add("newdoc", PHYSICIAN, FIRST_PASSPHRASE)
    for _ in range(LOCKOUT_AFTER):
        lite.accounts.record_failure("newdoc", ATTACKER)
    browser = lite.browser()
    assert is_redirect_to(browser.enter_password("newdoc", FIRST_PASSPHRASE), "/login/totp")
    assert is_redirect_to(browser.get("/login/enrol"), "/login")


def test_lock_during_the_second_factor_does_not_keep_out_the_right_code(pacs: Context) -> None:
    web = make_web(pacs, session_idle=timedelta(hours=1))
    user = web.user("doc")
    assert user.totp is not None
    browser = web.browser()
    assert is_redirect_to(browser.enter_password(user.name, user.password), "/login/totp")
    for _ in range(LOCKOUT_AFTER):
        web.accounts.record_failure(user.name, ATTACKER)
    web.clock.advance(STEP)
    assert is_redirect_to(browser.enter_code(user.totp.at(web.clock())), "/")


def test_lockout_ends_no_session(web: Web) -> None:
    user = web.user("doc")
    browser = web.logged_in(user)
    for _ in range(LOCKOUT_AFTER):
        web.accounts.record_failure(user.name, ATTACKER)
    account = web.accounts.get(user.name)
    assert account is not None and account.locked
    assert browser.get("/").status_code == 200


def test_lockout_is_audited_as_a_security_alert(web: Web) -> None:
    user = web.user("doc")
    _lock(web, user, web.browser())
    alerts = web.audit(str(EventID.SECURITY_ALERT), str(EventType.USER_SECURITY_ATTRIBUTES_CHANGED), "doc")
    assert len(alerts) == 1
    assert alerts[0].outcome != 0
    assert alerts[0].source == ADDRESS
    assert "locked" in details(alerts[0])["what"]


def test_failed_passwords_are_audited_as_failed_logins(web: Web) -> None:
    user = web.user("doc")
    _lock(web, user, web.browser())
    failures = web.audit(AUTHENTICATION, LOGIN, "doc")
    assert len(failures) == LOCKOUT_AFTER
    assert all(record.outcome != 0 and record.source == ADDRESS for record in failures)
    assert {details(record)["step"] for record in failures} == {"password"}


def test_disabled_user_cannot_log_in(web: Web) -> None:
    user = web.user("doc")
    web.accounts.set_disabled("doc")
    browser = web.browser()
    assert is_redirect_to(browser.enter_password(user.name, user.password), "/login")
    assert browser.messages() == [FAILED]
    assert is_redirect_to(browser.get("/login/totp"), "/login")
    assert is_redirect_to(browser.get("/"), "/login")


def test_disabling_a_logged_in_user_ends_their_access(web: Web) -> None:
    user = web.user("doc")
    browser = web.logged_in(user)
    assert browser.get("/").status_code == 200
    web.accounts.set_disabled("doc")
    assert is_redirect_to(browser.get("/"), "/login")


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


# Attacks on throttling and lockout (issue #11).


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 verification actually run, counted across threads."""
    counted: list[str] = []
    lock = threading.Lock()
    verify = PasswordHasher.verify

    def counting(self: PasswordHasher, stored: str | bytes, password: str | bytes) -> bool:
        with lock:
            counted.append(str(password))
        return verify(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return counted


def _in_parallel(browsers: list[Browser], post: Callable[[Browser], TestResponse]) -> list[TestResponse]:
    """`post` from every browser at once (each has fetched its form first), in bounded time."""
    barrier = threading.Barrier(len(browsers))

    def attempt(browser: Browser) -> TestResponse:
        barrier.wait(timeout=30)
        return post(browser)

    with ThreadPoolExecutor(len(browsers)) as pool:
        return list(pool.map(attempt, browsers, timeout=120))


def test_parallel_wrong_passwords_run_no_more_hashes_than_the_free_failures(
    web: Web, verifications: list[str]
) -> None:
    user = web.user("doc")
    browsers = [web.browser(ATTACKER) for _ in range(PARALLEL_ATTEMPTS)]
    tokens = {id(browser): browser.token("/login") for browser in browsers}
    verifications.clear()
    responses = _in_parallel(
        browsers,
        lambda b: b.client.post(
            "/login", data={"username": user.name, "password": "a wrong guess", "csrf_token": tokens[id(b)]}
        ),
    )
    assert all(is_redirect_to(response, "/login") for response in responses)
    assert len(verifications) <= ACCOUNT_FREE_FAILURES, f"{len(verifications)} argon2 hashes"


def test_attackers_failures_do_not_stop_the_right_password_and_code_from_another_address(web: Web) -> None:
    admin = web.user("admin", ADMIN)
    attacker = web.browser(ATTACKER)
    for attempt in range(LOCKOUT_AFTER + 6):
        attacker.enter_password(admin.name, f"not the password {attempt}")
        web.clock.advance(MAX_BACKOFF.total_seconds() + 1)
    web.browser().log_in(admin)


def test_failures_from_one_address_are_throttled_for_that_address(web: Web) -> None:
    user = web.user("doc")
    attacker = web.browser(ATTACKER)
    for attempt in range(ADDRESS_FREE_FAILURES):
        attacker.enter_password(f"guess{attempt}", "a wrong guess")
    assert user.totp is not None
    assert is_redirect_to(attacker.enter_password(user.name, user.password), "/login")
    assert attacker.messages() == [FAILED]
    web.browser().log_in(user)


def test_lockout_expires_by_itself(web: Web) -> None:
    user = web.user("doc")
    _lock(web, user, web.browser(ATTACKER))
    web.clock.advance(pacs_accounts.LOCKOUT_PERIOD.total_seconds())
    account = web.accounts.get("doc")
    assert account is not None and not account.locked
