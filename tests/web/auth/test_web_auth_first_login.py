"""The first login: one-time password, TOTP enrolment, recovery codes, own password, then home.

The enrolment key stays the same while the enrolment is pending; a wrong code shows the
page again (counted by the throttle); every password a user sets is checked for strength.
Time is a fake clock (see :mod:`tests.web.web_helpers`); the QR code is decoded in a real
browser by :mod:`tests.web.auth.test_web_auth_first_login_browser`.
"""

from __future__ import annotations

import re
import time
from base64 import b32decode
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from zxcvbn import zxcvbn

from pacs.core.accounts import ACCOUNT_FREE_FAILURES
from tests.web.auth.auth_helpers import AUTHENTICATION, LOGIN, _first_login
from tests.web.web_helpers import (
    ADDRESS,
    ADMIN,
    FIRST_PASSPHRASE,
    NEW_PASSPHRASE,
    PHYSICIAN,
    Browser,
    Web,
    details,
    is_redirect_to,
    link,
    messages,
)
from webviewer import auth
from webviewer.auth import TOO_MANY_CODES, WRONG_ENROLMENT_CODE

WEAK = "passwordpassword"
_QR = re.compile(r'<img src="([^"]+)" alt="[^"]*" class="qr" id="totp-qr">')


def _at_enrolment(web: Web, name: str = "newdoc", roles: frozenset[str] = PHYSICIAN) -> Browser:
    """A new account, its one-time password entered: the browser is at the enrolment page."""
    web.accounts.add(name, roles, FIRST_PASSPHRASE)
    browser = web.browser()
    assert is_redirect_to(browser.enter_password(name, FIRST_PASSPHRASE), "/login/enrol")
    return browser


def _wrong(totp: pyotp.TOTP, moment: float) -> str:
    valid = {totp.at(moment + offset * 30) for offset in (-1, 0, 1)}
    return next(code for code in (f"{n:06d}" for n in range(10**6)) if code not in valid)


def _submit(browser: Browser, code: str) -> str:
    """Post `code` to the enrolment form; follow the answer back to the page it leads to."""
    response = browser.post("/login/enrol", {"code": code})
    assert is_redirect_to(response, "/login/enrol"), response.status_code
    return browser.get("/login/enrol").text


# The enrolment key.


def test_enrolment_page_shows_the_same_key_on_every_visit(lite: Web) -> None:
    browser = _at_enrolment(lite)
    keys = {browser.enrolment_page()[0].secret for _ in range(3)}
    assert len(keys) == 1
    assert len(b32decode(keys.pop())) >= 16


def test_enrolment_key_is_the_same_after_logging_in_again(lite: Web) -> None:
    first = _at_enrolment(lite).enrolment_page()[0].secret
    again = lite.browser()
    assert is_redirect_to(again.enter_password("newdoc", FIRST_PASSPHRASE), "/login/enrol")
    assert again.enrolment_page()[0].secret == first


def test_enrolment_qr_code_is_an_svg_image_with_its_namespace_holding_the_keys_uri(lite: Web) -> None:
    browser = _at_enrolment(lite)
    match = _QR.search(browser.get("/login/enrol").text)
    assert match, "no QR image on the enrolment page"
    kind, _, body = match.group(1).partition(",")
    assert kind.startswith("data:image/svg+xml")
    svg = unquote(body)
    assert re.match(r"<svg xmlns=['\"]http://www\.w3\.org/2000/svg['\"]", svg), svg[:80]


def test_provisioning_uri_names_the_user_and_the_issuer(lite: Web) -> None:
    browser = _at_enrolment(lite)
    totp, _ = browser.enrolment_page()
    uri = lite.accounts.provisioning_uri("newdoc", totp.secret)
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert parse_qs(parts.query)["secret"] == [totp.secret]
    assert "newdoc" in unquote(parts.path)


# A wrong code.


def test_wrong_enrolment_code_shows_the_page_again_with_an_error_and_the_same_key(lite: Web) -> None:
    browser = _at_enrolment(lite)
    totp, _ = browser.enrolment_page()
    page = _submit(browser, _wrong(totp, lite.clock()))
    assert messages(page) == [WRONG_ENROLMENT_CODE]
    assert browser.enrolment_page()[0].secret == totp.secret
    account = lite.accounts.get("newdoc")
    assert account is not None and not account.totp_enrolled


def test_right_code_after_a_wrong_one_completes_the_enrolment(lite: Web) -> None:
    browser = _at_enrolment(lite)
    totp, _ = browser.enrolment_page()
    _submit(browser, _wrong(totp, lite.clock()))
    response = browser.post("/login/enrol", {"code": totp.at(lite.clock())})
    assert response.status_code == 200 and 'id="recovery-codes"' in response.text
    account = lite.accounts.get("newdoc")
    assert account is not None and account.totp_enrolled


def test_wrong_enrolment_code_is_audited_as_a_failed_login(web: Web) -> None:
    browser = _at_enrolment(web)
    totp, _ = browser.enrolment_page()
    _submit(browser, _wrong(totp, web.clock()))
    failures = [r for r in web.audit(AUTHENTICATION, LOGIN, "newdoc") if r.outcome != 0]
    assert len(failures) == 1 and failures[0].source == ADDRESS
    assert details(failures[0])["step"] == "totp enrolment"


def test_wrong_enrolment_codes_are_throttled_then_the_right_one_is_accepted_after_the_wait(web: Web) -> None:
    browser = _at_enrolment(web)
    totp, _ = browser.enrolment_page()
    for _ in range(ACCOUNT_FREE_FAILURES):
        assert messages(_submit(browser, _wrong(totp, web.clock()))) == [WRONG_ENROLMENT_CODE]
    assert messages(_submit(browser, totp.at(web.clock()))) == [TOO_MANY_CODES]
    account = web.accounts.get("newdoc")
    assert account is not None and not account.totp_enrolled
    web.clock.advance(web.accounts.retry_after("newdoc", ADDRESS))
    response = browser.post("/login/enrol", {"code": totp.at(web.clock())})
    assert response.status_code == 200 and 'id="recovery-codes"' in response.text


# From the recovery codes to home, without a second login.


def test_recovery_codes_lead_to_the_password_change_when_one_is_due(lite: Web) -> None:
    browser = _at_enrolment(lite)
    _, response = browser.enrol()
    assert link(response.text, "continue") == "/account/password"
    assert browser.get("/account/password").status_code == 200


def test_first_login_of_a_physician_ends_on_the_study_list_without_a_second_login(web: Web) -> None:
    browser = _first_login(web)
    response = browser.post("/account/password", {"new": NEW_PASSPHRASE, "again": NEW_PASSPHRASE})
    assert is_redirect_to(response, "/")
    home = browser.get("/")
    assert home.status_code == 200 and 'id="studies"' in home.text


def test_first_login_of_an_admin_ends_on_the_users_page_without_a_second_login(lite: Web) -> None:
    browser = _at_enrolment(lite, "newadmin", ADMIN)
    _, response = browser.enrol()
    assert link(response.text, "continue") == "/account/password"
    answer = browser.post("/account/password", {"new": NEW_PASSPHRASE, "again": NEW_PASSPHRASE})
    assert is_redirect_to(answer, "/admin/users")
    assert browser.get("/admin/users").status_code == 200


# Password strength.


def test_password_page_says_what_it_checks(lite: Web) -> None:
    page = _first_login(lite).get("/account/password").text
    rules = page.split('id="password-rules"', 1)[1].split("</ul>", 1)[0]
    for said in ("12 characters", "common and breached", "user name", "estimated strength", "3 of 4"):
        assert said in rules


def test_weak_password_is_refused_at_the_forced_change_with_the_reason(web: Web) -> None:
    browser = _first_login(web)
    response = browser.post("/account/password", {"new": WEAK, "again": WEAK})
    assert response.status_code == 200
    (message,) = messages(response.text)
    assert message.startswith("This password would be too easy to guess")
    assert zxcvbn(WEAK)["feedback"]["warning"] in message
    account = web.accounts.get("newdoc")
    assert account is not None and account.must_change_password
    assert is_redirect_to(browser.get("/"), "/account/password")


def test_password_containing_the_user_name_is_refused_at_the_forced_change(lite: Web) -> None:
    browser = _first_login(lite)
    response = browser.post("/account/password", {"new": "newdoc2024!!", "again": "newdoc2024!!"})
    assert any("user name" in message for message in messages(response.text))


def test_weak_password_is_refused_at_an_own_change(lite: Web) -> None:
    user = lite.user("doc")
    browser = lite.logged_in(user)
    response = browser.post("/account/password", {"current": user.password, "new": WEAK, "again": WEAK})
    assert any("too easy to guess" in message for message in messages(response.text))
    assert lite.accounts.check_password("doc", user.password, "198.51.100.9").ok


def test_variation_of_the_current_password_is_refused_at_an_own_change(lite: Web) -> None:
    user = lite.user("doc")
    browser = lite.logged_in(user)
    new = user.password + "!"
    response = browser.post("/account/password", {"current": user.password, "new": new, "again": new})
    assert any("too easy to guess" in message for message in messages(response.text))
    assert lite.accounts.check_password("doc", user.password, "198.51.100.9").ok


# How long a pending login lasts.


class _Later:
    """Stands in for :mod:`time` in :mod:`webviewer.auth`: the wall clock, `seconds` ahead."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def time(self) -> float:
        return time.time() + self.seconds


def test_enrolment_page_still_answers_ten_minutes_after_the_password_step(
    lite: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = _at_enrolment(lite)
    key = browser.enrolment_page()[0].secret
    monkeypatch.setattr(auth, "time", _Later(10 * 60))
    assert browser.enrolment_page()[0].secret == key


def test_a_pending_login_that_ran_out_goes_back_to_the_login_page_with_a_message(
    lite: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = _at_enrolment(lite)
    monkeypatch.setattr(auth, "time", _Later(auth.ENROL_SECONDS + 1))
    assert is_redirect_to(browser.get("/login/enrol"), "/login")
    assert auth.EXPIRED in messages(browser.get("/login").text)
