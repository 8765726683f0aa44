"""Shared pieces of the web login tests: what they send and ways to fail a login on purpose."""

from __future__ import annotations

from pacs.core.accounts import LOCKOUT_AFTER, MAX_BACKOFF
from pacs.core.audit import EventID, EventType
from tests.web.web_helpers import (
    FIRST_PASSPHRASE,
    PHYSICIAN,
    STEP,
    Browser,
    User,
    Web,
    is_redirect_to,
)

PATIENT = "QUIXOTE, Dulcinea"  # the ct_dir fixture's QUIXOTE^DULCINEA, as the study list shows it
AUTHENTICATION = str(EventID.USER_AUTHENTICATION)
LOGIN = str(EventType.LOGIN)
LOGOUT = str(EventType.LOGOUT)
ATTACKER = "203.0.113.66"
PARALLEL_ATTEMPTS = 20


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
