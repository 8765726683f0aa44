"""The web viewer's login: nothing without a session, the password step, then TOTP; lockout.

Tests where the database matters run on both backends (the ``pacs`` fixture); the rest
use an embedded SQLCipher archive. Time is a fake clock (see :mod:`tests.web.web_helpers`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pacs.core.accounts import LOCKOUT_AFTER
from pacs.core.audit import EventID, EventType
from pacs.core.context import Context
from tests.web.auth.auth_helpers import (
    ATTACKER,
    AUTHENTICATION,
    LOGIN,
    PATIENT,
    _lock,
    _wrong_code,
)
from tests.web.web_helpers import (
    ADDRESS,
    FIRST_PASSPHRASE,
    PASSPHRASE,
    PHYSICIAN,
    STEP,
    Web,
    details,
    is_redirect_to,
    make_web,
    store,
)
from webviewer.auth import FAILED

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
