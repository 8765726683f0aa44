"""The web viewer's login under attack (issue #11): parallel attempts, throttling by address.

Tests where the database matters run on both backends (the ``pacs`` fixture); the rest
use an embedded SQLCipher archive. Time is a fake clock (see :mod:`tests.web.web_helpers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher
from werkzeug.test import TestResponse

from pacs.core import accounts as pacs_accounts
from pacs.core.accounts import ACCOUNT_FREE_FAILURES, ADDRESS_FREE_FAILURES, LOCKOUT_AFTER, MAX_BACKOFF
from tests.web.auth.auth_helpers import (
    ATTACKER,
    PARALLEL_ATTEMPTS,
    _lock,
)
from tests.web.web_helpers import (
    ADMIN,
    Browser,
    Web,
    is_redirect_to,
)
from webviewer.auth import FAILED

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
