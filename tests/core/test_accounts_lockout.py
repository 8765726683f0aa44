"""User accounts: throttling of failed attempts by account and by address, and lockout.

Time comes from a fake clock handed to :class:`Accounts`, so nothing here sleeps.
"""

from __future__ import annotations

import pytest

from pacs.core import accounts as pacs_accounts
from pacs.core.accounts import (
    ACCOUNT_FREE_FAILURES,
    ADDRESS_FREE_FAILURES,
    LOCKOUT_AFTER,
    MAX_BACKOFF,
    Accounts,
    LoginVerdict,
    PasswordCheck,
)
from tests.core.accounts_helpers import (
    ADDRESS,
    OTHER_ADDRESS,
    OTHER_PASSPHRASE,
    PASSPHRASE,
    PHYSICIAN,
    Clock,
    _account,
    _fail,
)

# Throttling and lockout.


def test_account_does_not_wait_before_its_free_failures_are_used(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for _ in range(ACCOUNT_FREE_FAILURES - 1):
        assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is LoginVerdict.WRONG
    assert accounts.retry_after("doc", ADDRESS) == 0


def test_account_must_wait_at_that_address_after_its_free_failures(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for _ in range(ACCOUNT_FREE_FAILURES):
        assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is LoginVerdict.WRONG
    assert accounts.retry_after("doc", ADDRESS) > 0
    assert accounts.retry_after("doc", OTHER_ADDRESS) == 0


def test_account_back_off_grows_with_each_failure(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES)
    waits = []
    for _ in range(3):
        clock.advance(accounts.retry_after("doc", ADDRESS))
        assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is LoginVerdict.WRONG
        waits.append(accounts.retry_after("doc", ADDRESS))
    assert 0 < waits[0] < waits[1] < waits[2]


def test_back_off_never_exceeds_the_maximum(accounts: Accounts) -> None:
    _fail(accounts, "nobody", 40)
    assert accounts.retry_after("nobody", ADDRESS) == MAX_BACKOFF.total_seconds()
    assert accounts.retry_after("somebody", ADDRESS) == MAX_BACKOFF.total_seconds()


def test_right_password_is_throttled_while_the_account_waits_at_that_address(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES + 1)
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.THROTTLED


def test_right_password_from_another_address_is_accepted_while_the_account_waits(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES + 1)
    assert accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is LoginVerdict.ACCEPTED


def test_account_may_try_again_once_the_wait_is_over(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES + 1)
    clock.advance(accounts.retry_after("doc", ADDRESS))
    assert accounts.retry_after("doc", ADDRESS) == 0
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.ACCEPTED


def test_address_must_wait_after_its_free_failures(accounts: Accounts) -> None:
    for n in range(ADDRESS_FREE_FAILURES):
        accounts.record_failure(f"guess{n}", ADDRESS)
    assert accounts.retry_after("someone-else", ADDRESS) > 0


def test_address_back_off_applies_to_another_user_name(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for n in range(ADDRESS_FREE_FAILURES + 1):
        accounts.record_failure(f"guess{n}", ADDRESS)
    assert accounts.retry_after("doc", ADDRESS) > 0
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.THROTTLED
    assert accounts.retry_after("doc", OTHER_ADDRESS) == 0
    assert accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is LoginVerdict.ACCEPTED


def test_lockout_after_failures_locks_the_account(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    locked = [accounts.record_failure("doc", ADDRESS) for _ in range(LOCKOUT_AFTER)]
    assert locked == [False] * (LOCKOUT_AFTER - 1) + [True]
    assert _account(accounts, "doc").locked


def test_failures_of_an_unknown_user_lock_the_name_like_a_known_one(accounts: Accounts) -> None:
    locked = [accounts.record_failure("nobody", ADDRESS) for _ in range(LOCKOUT_AFTER + 2)]
    assert locked == [False] * (LOCKOUT_AFTER - 1) + [True, False, False]
    assert accounts.check_password("nobody", PASSPHRASE, OTHER_ADDRESS) == PasswordCheck(
        LoginVerdict.WRONG, deferred=True
    )
    assert accounts.all() == []


def test_lift_lockout_unlocks_the_account(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    assert not accounts.lift_lockout("doc").locked
    assert accounts.retry_after("doc", OTHER_ADDRESS) == 0
    assert accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS) == PasswordCheck(
        LoginVerdict.ACCEPTED, _account(accounts, "doc")
    )


def test_lift_lockout_ends_the_back_off_of_the_account_at_every_address(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    accounts.add("dr_who", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES, ADDRESS)
    _fail(accounts, "dr_who", ACCOUNT_FREE_FAILURES, OTHER_ADDRESS)
    accounts.lift_lockout("doc")
    assert accounts.retry_after("doc", ADDRESS) == 0
    assert accounts.retry_after("dr_who", OTHER_ADDRESS) > 0


def test_reset_password_lifts_the_lockout(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    password = accounts.reset_password("doc")
    account = accounts.get("doc")
    assert account is not None and not account.locked and account.must_change_password
    assert accounts.check_password("doc", password, OTHER_ADDRESS).verdict is LoginVerdict.ACCEPTED


def test_reset_password_replaces_the_old_one(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    accounts.reset_password("doc")
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.WRONG


def test_record_success_clears_the_counters(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES + 1)
    for n in range(ADDRESS_FREE_FAILURES - ACCOUNT_FREE_FAILURES):
        accounts.record_failure(f"guess{n}", ADDRESS)
    assert accounts.retry_after("someone-else", ADDRESS) > 0
    assert accounts.retry_after("doc", ADDRESS) > 0
    accounts.record_success("doc", ADDRESS)
    assert accounts.retry_after("doc", ADDRESS) == 0
    accounts.record_failure("doc", ADDRESS)
    assert accounts.retry_after("doc", ADDRESS) == 0


def test_record_success_keeps_the_failures_of_the_account_from_elsewhere(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER, OTHER_ADDRESS)
    accounts.record_success("doc", ADDRESS)
    assert _account(accounts, "doc").locked


def test_a_throttled_attempt_is_refused_without_hashing(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.add("doc", frozenset({"physician"}), "violet kestrel under the quarry")
    for _ in range(ACCOUNT_FREE_FAILURES):
        accounts.check_password("doc", "wrong wrong wrong", "192.0.2.1")
    hashes: list[str] = []
    monkeypatch.setattr(pacs_accounts, "password_matches", lambda stored, pw: hashes.append(pw) or False)
    check = accounts.check_password("doc", "violet kestrel under the quarry", "192.0.2.1")
    assert check.verdict is LoginVerdict.THROTTLED
    assert hashes == []


def test_ipv6_addresses_of_one_network_share_their_back_off(accounts: Accounts) -> None:
    for n in range(ADDRESS_FREE_FAILURES):
        accounts.record_failure(f"guess{n}", f"2001:db8:1:2::{n + 1:x}")
    assert accounts.retry_after("someone", "2001:db8:1:2:ffff::1") > 0
    assert accounts.retry_after("someone", "2001:db8:1:3::1") == 0
