"""What the login pages confirm on screen: a logout, a login with a recovery code and the codes left.

Through the test client on each index backend, and in a real headless Chromium against
``pacs serve`` (screenshots of both confirmations are kept under the test's temporary directory).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Page, expect

from pacs.core.accounts import RECOVERY_CODES, Accounts
from pacs.core.context import Context
from tests.web.browser import PHYSICIAN, wait_for_path
from tests.web.viewer_live import Live, serve_archive
from tests.web.web_helpers import Browser, User, Web, is_redirect_to, messages
from webviewer.signin_messages import FEW_RECOVERY_CODES, SIGNED_OUT, recovery_code_used

FEW_LEFT = "Ask an administrator to reset your second factor soon"


def _log_in_with_recovery_code(web: Web, user: User, code: str) -> Browser:
    browser = web.browser()
    assert is_redirect_to(browser.enter_password(user.name, user.password), "/login/totp")
    assert is_redirect_to(browser.enter_code(code), "/")
    return browser


def test_logout_says_you_have_been_signed_out_once(web: Web) -> None:
    browser = web.logged_in(web.user("doc"))
    token = browser.cookie
    assert token is not None
    assert is_redirect_to(browser.log_out(), "/login")
    assert not web.session_exists(token)
    assert messages(browser.get("/login").text) == [SIGNED_OUT]
    assert messages(browser.get("/login").text) == []
    assert is_redirect_to(browser.get("/"), "/login")


def test_logout_without_a_login_says_nothing(web: Web) -> None:
    browser = web.browser()
    assert is_redirect_to(browser.post("/logout", {}, form_page="/login"), "/login")
    assert messages(browser.get("/login").text) == []


def test_login_with_a_recovery_code_says_it_was_used_and_how_many_are_left(web: Web) -> None:
    user = web.user("doc")
    browser = _log_in_with_recovery_code(web, user, user.recovery_codes[0])
    page = browser.get("/")
    assert page.status_code == 200
    assert messages(page.text) == [f"Recovery code used; {RECOVERY_CODES - 1} left."]
    assert messages(browser.get("/").text) == []


def test_login_with_a_totp_code_mentions_no_recovery_code(web: Web) -> None:
    browser = web.logged_in(web.user("doc"))
    assert messages(browser.get("/").text) == []


def test_few_recovery_codes_left_are_warned_with_the_way_to_new_ones(web: Web) -> None:
    user = web.user("doc")
    shown = []
    for code in user.recovery_codes:
        browser = _log_in_with_recovery_code(web, user, code)
        (message,) = messages(browser.get("/").text)
        shown.append(message)
    assert shown[0] == "Recovery code used; 9 left."
    assert [FEW_LEFT in message for message in shown] == [
        RECOVERY_CODES - n <= FEW_RECOVERY_CODES for n in range(1, RECOVERY_CODES + 1)
    ]
    assert shown[-4].startswith("Recovery code used; 3 left. ")
    assert shown[-1].startswith("Recovery code used; none left. ")
    assert "ten new recovery codes" in shown[-1]


# -- in Chromium ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """A physician with a password, an authenticator and the recovery codes still unused."""

    name: str
    password: str
    totp: pyotp.TOTP
    codes: list[str]


USED_BEFORE = RECOVERY_CODES - FEW_RECOVERY_CODES - 1  # the browser's login leaves FEW_RECOVERY_CODES


def _holder(pacs: Context) -> Holder:
    """`doc`, enrolled, who has already used all but FEW_RECOVERY_CODES + 1 of the recovery codes."""
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    accounts.add("doc", PHYSICIAN, "seven lanterns drift past")
    accounts.change_password("doc", "violet kestrel under the quarry")
    totp = pyotp.TOTP(accounts.begin_totp_enrolment("doc"))
    codes = accounts.confirm_totp("doc", totp.now())
    assert codes is not None
    for code in codes[:USED_BEFORE]:
        assert accounts.use_recovery_code("doc", code)
    return Holder("doc", "violet kestrel under the quarry", totp, codes[USED_BEFORE:])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Holder]]:
    with serve_archive(tmp_path_factory.mktemp("confirmations"), _holder, []) as running:
        yield running


def test_recovery_code_and_logout_are_confirmed_in_chromium(
    page: Page, live: Live[Holder], tmp_path: Path
) -> None:
    holder = live.seeded
    page.goto("/login")
    page.fill("#username", holder.name)
    page.fill("#password", holder.password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")
    page.fill("#code", holder.codes[0])
    page.click("#submit")
    wait_for_path(page, "/")
    flash = page.locator(".flash")
    expect(flash).to_have_text(recovery_code_used(FEW_RECOVERY_CODES))
    expect(flash).to_contain_text(FEW_LEFT)
    page.screenshot(path=str(tmp_path / "recovery-code-used.png"), full_page=True)
    page.click("#logout")
    wait_for_path(page, "/login")
    expect(page.locator(".flash")).to_have_text(SIGNED_OUT)
    expect(page.locator("#username")).to_be_visible()
    page.screenshot(path=str(tmp_path / "signed-out.png"), full_page=True)
    page.reload()
    expect(page.locator(".flash")).to_have_count(0)
