"""User accounts: password hashing and policy, TOTP, recovery codes, throttling and lockout.

Time comes from a fake clock handed to :class:`Accounts`, so nothing here sleeps.
"""

from __future__ import annotations

import base64
import itertools
import json
import multiprocessing
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TypeVar

import pyotp
import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from sqlalchemy import select

from pacs.core import accounts as pacs_accounts
from pacs.core.accounts import (
    ACCOUNT_FREE_FAILURES,
    ADDRESS_FREE_FAILURES,
    HASHER,
    LOCKOUT_AFTER,
    LOCKOUT_PERIOD,
    MAX_BACKOFF,
    RECOVERY_CODES,
    Account,
    AccountError,
    Accounts,
    PasswordCheck,
    PasswordPolicyError,
    Verdict,
    check_password_policy,
    check_user_name,
    parse_roles,
)
from pacs.core.audit import EventID
from pacs.core.config import load_settings
from pacs.core.context import Context, open_pacs
from pacs.core.throttle import PENDING_TTL
from storage.db import User

PASSPHRASE = "violet kestrel under the quarry"
OTHER_PASSPHRASE = "seven lanterns drift past"
PHYSICIAN = frozenset({"physician"})
ADDRESS = "192.0.2.10"
OTHER_ADDRESS = "198.51.100.20"
STEP = 30  # RFC 6238 time step, seconds
OWASP_MINIMUM_MEMORY_KIB = 19456
T = TypeVar("T")


class Clock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(pacs: Context, clock: Clock) -> Accounts:
    return Accounts(pacs.database, pacs.keyring, now=clock)


def _account(accounts: Accounts, name: str) -> Account:
    account = accounts.get(name)
    assert account is not None
    return account


def _row(pacs: Context, name: str) -> User:
    with pacs.database.read() as session:
        return session.scalars(select(User).where(User.name == name)).one()


def _row_bytes(pacs: Context, name: str) -> bytes:
    """Every column of the user's row as the database returns it, concatenated."""
    table = User.__table__
    with pacs.database.read() as session:
        values = session.execute(select(table).where(table.c.name == name)).one()
    return b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in values)


def _enrol(accounts: Accounts, clock: Clock, name: str = "doc") -> tuple[pyotp.TOTP, list[str]]:
    """Add `name` and confirm a TOTP enrolment now; then move the clock well past that step."""
    accounts.add(name, PHYSICIAN, PASSPHRASE)
    totp = pyotp.TOTP(accounts.begin_totp_enrolment(name))
    codes = accounts.confirm_totp(name, totp.at(clock()))
    assert codes is not None
    clock.advance(10 * STEP)
    return totp, codes


def _code_outside_window(totp: pyotp.TOTP, moment: float) -> str:
    valid = {totp.at(moment + offset * STEP) for offset in (-1, 0, 1)}
    return next(code for code in (f"{n:06d}" for n in range(10**6)) if code not in valid)


def _fail(accounts: Accounts, name: str, times: int, address: str = ADDRESS) -> None:
    for _ in range(times):
        accounts.record_failure(name, address)


# Password policy (no database).


def test_password_of_eleven_characters_is_refused() -> None:
    with pytest.raises(PasswordPolicyError):
        check_password_policy("kestrelquar")


def test_password_of_257_characters_is_refused() -> None:
    with pytest.raises(PasswordPolicyError):
        check_password_policy("kestrel " * 32 + "q")


@pytest.mark.parametrize("password", ["quarrykestre", "kestrel " * 32], ids=["12 chars", "256 chars"])
def test_passwords_at_the_length_limits_are_accepted(password: str) -> None:
    check_password_policy(password)


@pytest.mark.parametrize("password", ["password1234", "qwerty123456", "leavemealone", "finalfantasy"])
def test_common_password_is_refused(password: str) -> None:
    with pytest.raises(PasswordPolicyError, match="common"):
        check_password_policy(password)


def test_common_password_is_refused_whatever_its_case() -> None:
    with pytest.raises(PasswordPolicyError, match="common"):
        check_password_policy("Password1234")


def test_long_uncommon_passphrase_is_accepted() -> None:
    check_password_policy(PASSPHRASE)


def test_no_composition_rules_apply_to_an_all_lowercase_phrase() -> None:
    check_password_policy("quietmarblelake")
    check_password_policy("quietmarblelakes")


def test_password_containing_the_user_name_is_refused() -> None:
    with pytest.raises(PasswordPolicyError, match="user name"):
        check_password_policy("hello-drsmith-quarry", user_name="DrSmith")


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "semi;colon", "../etc", "émile", "tab\tname"])
def test_bad_user_name_is_refused(name: str) -> None:
    with pytest.raises(AccountError):
        check_user_name(name)


@pytest.mark.parametrize("text", ["root", "admin,root", "", " , "])
def test_unknown_or_missing_roles_are_refused(text: str) -> None:
    with pytest.raises(AccountError):
        parse_roles(text)


def test_roles_are_parsed_from_a_comma_separated_list() -> None:
    assert parse_roles("physician, admin") == frozenset({"admin", "physician"})


# Password hashing.


def test_password_is_hashed_with_argon2id_and_at_least_19_mib(pacs: Context, accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    stored = _row(pacs, "doc").password_hash
    parameters = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert parameters.type is Type.ID
    assert parameters.memory_cost >= OWASP_MINIMUM_MEMORY_KIB
    assert PASSPHRASE not in stored


def test_weaker_hash_is_upgraded_at_the_next_successful_login(pacs: Context, accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSPHRASE)
    with pacs.database.write() as session:
        session.scalars(select(User).where(User.name == "doc")).one().password_hash = weak
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.ACCEPTED
    upgraded = _row(pacs, "doc").password_hash
    assert upgraded != weak
    parameters = extract_parameters(upgraded)
    assert (parameters.type, parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (
        HASHER.type,
        HASHER.memory_cost,
        HASHER.time_cost,
        HASHER.parallelism,
    )
    assert not HASHER.check_needs_rehash(upgraded)
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.ACCEPTED


def test_weaker_hash_is_kept_after_a_wrong_password(pacs: Context, accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSPHRASE)
    with pacs.database.write() as session:
        session.scalars(select(User).where(User.name == "doc")).one().password_hash = weak
    assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is Verdict.WRONG
    assert _row(pacs, "doc").password_hash == weak


# Creating accounts.


def test_new_account_must_change_its_password(accounts: Accounts) -> None:
    account, _ = accounts.add("doc", PHYSICIAN, PASSPHRASE)
    assert account.must_change_password
    check = accounts.check_password("doc", PASSPHRASE, ADDRESS)
    assert check.account is not None and check.account.must_change_password


def test_changing_the_password_lifts_the_obligation_to_change_it(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    accounts.change_password("doc", OTHER_PASSPHRASE)
    check = accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS)
    assert check.verdict is Verdict.ACCEPTED
    assert check.account is not None and not check.account.must_change_password


def test_add_without_password_returns_a_working_one_time_password(accounts: Accounts) -> None:
    account, password = accounts.add("doc", PHYSICIAN)
    assert account.name == "doc" and account.roles == PHYSICIAN
    assert len(password) >= 12
    assert accounts.check_password("doc", password, ADDRESS).verdict is Verdict.ACCEPTED


def test_one_time_passwords_differ_between_accounts(accounts: Accounts) -> None:
    _, first = accounts.add("doc", PHYSICIAN)
    _, second = accounts.add("nurse", PHYSICIAN)
    assert first != second


def test_add_without_password_works_for_a_one_letter_user_name(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A random 20-character password holds any given letter about a quarter of the time;
    # fix the draw so that it holds the user's name, "a".
    drawn = itertools.cycle("Zq7a4Kx9mW2pR8tL3vN6")
    monkeypatch.setattr(secrets, "choice", lambda alphabet: next(drawn))
    account, password = accounts.add("a", PHYSICIAN)
    assert account.name == "a"
    assert accounts.check_password("a", password, ADDRESS).verdict is Verdict.ACCEPTED


def test_duplicate_user_name_is_refused(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    with pytest.raises(AccountError, match="already exists"):
        accounts.add("doc", frozenset({"admin"}), OTHER_PASSPHRASE)
    assert [a.roles for a in accounts.all()] == [PHYSICIAN]


def test_bad_user_names_are_refused_by_add(accounts: Accounts) -> None:
    for name in ("", "has space", "x" * 65, "semi;colon"):
        with pytest.raises(AccountError):
            accounts.add(name, PHYSICIAN, PASSPHRASE)
    assert accounts.all() == []


def test_unknown_and_missing_roles_are_refused_by_add(accounts: Accounts) -> None:
    for roles in (frozenset({"root"}), frozenset({"admin", "root"}), frozenset()):
        with pytest.raises(AccountError):
            accounts.add("doc", roles, PASSPHRASE)
    assert accounts.all() == []


def test_common_password_is_refused_by_add(accounts: Accounts) -> None:
    with pytest.raises(PasswordPolicyError):
        accounts.add("doc", PHYSICIAN, "password1234")
    assert accounts.get("doc") is None


# The password step of a login.


def test_right_password_is_accepted(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    check = accounts.check_password("doc", PASSPHRASE, ADDRESS)
    assert check.ok and check.verdict is Verdict.ACCEPTED
    assert check.account is not None and check.account.name == "doc"


def test_unknown_user_and_wrong_password_give_the_same_verdict(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    wrong = accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS)
    unknown = accounts.check_password("nobody", PASSPHRASE, OTHER_ADDRESS)
    assert wrong == unknown == PasswordCheck(Verdict.WRONG)
    assert not wrong.ok


def test_disabled_user_with_the_right_password_is_not_accepted(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    assert accounts.set_disabled("doc").disabled
    check = accounts.check_password("doc", PASSPHRASE, ADDRESS)
    assert not check.ok and check.verdict is not Verdict.ACCEPTED


def test_locked_account_defers_the_verdict_on_its_password(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    right = accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS)
    wrong = accounts.check_password("doc", OTHER_PASSPHRASE, OTHER_ADDRESS)
    assert right.deferred and right.verdict is Verdict.ACCEPTED
    assert wrong.deferred and wrong.verdict is Verdict.WRONG


def test_unlocked_account_does_not_defer_the_verdict(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER - 1)
    assert not accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).deferred


# The TOTP second factor.


def test_enrolment_gives_a_base32_secret_for_an_authenticator(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    secret = accounts.begin_totp_enrolment("doc")
    assert len(base64.b32decode(secret)) >= 16
    uri = accounts.provisioning_uri("doc", secret)
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert not _account(accounts, "doc").totp_enrolled


def test_confirming_enrolment_with_a_valid_code_returns_ten_recovery_codes(
    accounts: Accounts, clock: Clock
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    secret = accounts.begin_totp_enrolment("doc")
    codes = accounts.confirm_totp("doc", pyotp.TOTP(secret).at(clock()))
    assert codes is not None and len(codes) == RECOVERY_CODES == 10
    assert len(set(codes)) == RECOVERY_CODES
    account = accounts.get("doc")
    assert account is not None and account.totp_enrolled
    assert account.recovery_codes_left == RECOVERY_CODES


def test_confirming_enrolment_with_a_wrong_code_is_refused(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    totp = pyotp.TOTP(accounts.begin_totp_enrolment("doc"))
    assert accounts.confirm_totp("doc", _code_outside_window(totp, clock())) is None
    account = accounts.get("doc")
    assert account is not None and not account.totp_enrolled
    assert account.recovery_codes_left == 0


def test_second_enrolment_is_refused_while_one_is_confirmed(accounts: Accounts, clock: Clock) -> None:
    _enrol(accounts, clock)
    with pytest.raises(AccountError):
        accounts.begin_totp_enrolment("doc")


def test_current_totp_code_is_accepted(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    assert accounts.verify_totp("doc", totp.at(clock()))


def test_wrong_totp_code_is_refused(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    assert not accounts.verify_totp("doc", _code_outside_window(totp, clock()))


def test_malformed_totp_codes_are_refused(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    code = totp.at(clock())
    for malformed in ("", code[:5], code + "0", "abcdef", f"{code[:3]}-{code[3:]}"):
        assert not accounts.verify_totp("doc", malformed)
    assert accounts.verify_totp("doc", code)


def test_totp_code_from_one_step_earlier_is_accepted(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    assert accounts.verify_totp("doc", totp.at(clock() - STEP))


def test_totp_code_from_one_step_later_is_accepted(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    assert accounts.verify_totp("doc", totp.at(clock() + STEP))


def test_totp_code_two_steps_away_is_refused(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    assert not accounts.verify_totp("doc", totp.at(clock() - 2 * STEP))
    assert not accounts.verify_totp("doc", totp.at(clock() + 2 * STEP))


def test_replayed_totp_code_is_refused(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    code = totp.at(clock())
    assert accounts.verify_totp("doc", code)
    assert not accounts.verify_totp("doc", code)


def test_code_of_an_earlier_step_is_refused_after_a_later_one_was_used(
    accounts: Accounts, clock: Clock
) -> None:
    totp, _ = _enrol(accounts, clock)
    assert accounts.verify_totp("doc", totp.at(clock()))
    assert not accounts.verify_totp("doc", totp.at(clock() - STEP))


def test_enrolment_code_cannot_be_replayed_at_login(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    totp = pyotp.TOTP(accounts.begin_totp_enrolment("doc"))
    code = totp.at(clock())
    assert accounts.confirm_totp("doc", code) is not None
    assert not accounts.verify_totp("doc", code)


def test_verify_totp_is_false_for_a_user_who_has_not_enrolled(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    assert not accounts.verify_totp("doc", "123456")
    pending = pyotp.TOTP(accounts.begin_totp_enrolment("doc"))
    assert not accounts.verify_totp("doc", pending.at(clock()))
    assert not accounts.verify_totp("nobody", "123456")


def test_totp_secret_is_not_stored_in_clear(pacs: Context, accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    stored = _row_bytes(pacs, "doc")
    assert _row(pacs, "doc").totp_secret
    assert totp.secret.encode() not in stored
    assert totp.secret.lower().encode() not in stored
    assert base64.b32decode(totp.secret) not in stored


def test_each_recovery_code_works_once(accounts: Accounts, clock: Clock) -> None:
    _, codes = _enrol(accounts, clock)
    assert accounts.use_recovery_code("doc", codes[0])
    assert not accounts.use_recovery_code("doc", codes[0])
    assert accounts.use_recovery_code("doc", codes[1])
    assert _account(accounts, "doc").recovery_codes_left == RECOVERY_CODES - 2


def test_recovery_code_is_accepted_in_capitals_and_without_its_dash(accounts: Accounts, clock: Clock) -> None:
    _, codes = _enrol(accounts, clock)
    assert accounts.use_recovery_code("doc", codes[0].replace("-", "").upper())
    assert not accounts.use_recovery_code("doc", codes[0])


def test_made_up_recovery_code_is_refused(accounts: Accounts, clock: Clock) -> None:
    _, codes = _enrol(accounts, clock)
    made_up = next(c for c in ("00000-00000", "11111-11111") if c not in codes)
    assert not accounts.use_recovery_code("doc", made_up)
    assert _account(accounts, "doc").recovery_codes_left == RECOVERY_CODES


def test_recovery_codes_are_not_stored_in_clear(pacs: Context, accounts: Accounts, clock: Clock) -> None:
    _, codes = _enrol(accounts, clock)
    stored = _row_bytes(pacs, "doc")
    for code in codes:
        assert code.encode() not in stored
        assert code.replace("-", "").encode() not in stored


def test_reset_totp_removes_the_second_factor(accounts: Accounts, clock: Clock) -> None:
    old, codes = _enrol(accounts, clock)
    account = accounts.reset_totp("doc")
    assert not account.totp_enrolled and account.recovery_codes_left == 0
    assert not accounts.verify_totp("doc", old.at(clock()))
    assert not accounts.use_recovery_code("doc", codes[0])


def test_new_enrolment_is_possible_after_reset_totp(accounts: Accounts, clock: Clock) -> None:
    _enrol(accounts, clock)
    accounts.reset_totp("doc")
    new = pyotp.TOTP(accounts.begin_totp_enrolment("doc"))
    assert accounts.confirm_totp("doc", new.at(clock())) is not None
    clock.advance(STEP)
    assert accounts.verify_totp("doc", new.at(clock()))


# Throttling and lockout.


def test_account_does_not_wait_before_its_free_failures_are_used(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for _ in range(ACCOUNT_FREE_FAILURES - 1):
        assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is Verdict.WRONG
    assert accounts.retry_after("doc", ADDRESS) == 0


def test_account_must_wait_at_that_address_after_its_free_failures(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for _ in range(ACCOUNT_FREE_FAILURES):
        assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is Verdict.WRONG
    assert accounts.retry_after("doc", ADDRESS) > 0
    assert accounts.retry_after("doc", OTHER_ADDRESS) == 0


def test_account_back_off_grows_with_each_failure(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES)
    waits = []
    for _ in range(3):
        clock.advance(accounts.retry_after("doc", ADDRESS))
        assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is Verdict.WRONG
        waits.append(accounts.retry_after("doc", ADDRESS))
    assert 0 < waits[0] < waits[1] < waits[2]


def test_back_off_never_exceeds_the_maximum(accounts: Accounts) -> None:
    _fail(accounts, "nobody", 40)
    assert accounts.retry_after("nobody", ADDRESS) == MAX_BACKOFF.total_seconds()
    assert accounts.retry_after("somebody", ADDRESS) == MAX_BACKOFF.total_seconds()


def test_right_password_is_throttled_while_the_account_waits_at_that_address(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES + 1)
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.THROTTLED


def test_right_password_from_another_address_is_accepted_while_the_account_waits(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES + 1)
    assert accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is Verdict.ACCEPTED


def test_account_may_try_again_once_the_wait_is_over(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES + 1)
    clock.advance(accounts.retry_after("doc", ADDRESS))
    assert accounts.retry_after("doc", ADDRESS) == 0
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.ACCEPTED


def test_address_must_wait_after_its_free_failures(accounts: Accounts) -> None:
    for n in range(ADDRESS_FREE_FAILURES):
        accounts.record_failure(f"guess{n}", ADDRESS)
    assert accounts.retry_after("someone-else", ADDRESS) > 0


def test_address_back_off_applies_to_another_user_name(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for n in range(ADDRESS_FREE_FAILURES + 1):
        accounts.record_failure(f"guess{n}", ADDRESS)
    assert accounts.retry_after("doc", ADDRESS) > 0
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.THROTTLED
    assert accounts.retry_after("doc", OTHER_ADDRESS) == 0
    assert accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS).verdict is Verdict.ACCEPTED


def test_lockout_after_failures_locks_the_account(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    locked = [accounts.record_failure("doc", ADDRESS) for _ in range(LOCKOUT_AFTER)]
    assert locked == [False] * (LOCKOUT_AFTER - 1) + [True]
    assert _account(accounts, "doc").locked


def test_failures_of_an_unknown_user_lock_the_name_like_a_known_one(accounts: Accounts) -> None:
    locked = [accounts.record_failure("nobody", ADDRESS) for _ in range(LOCKOUT_AFTER + 2)]
    assert locked == [False] * (LOCKOUT_AFTER - 1) + [True, False, False]
    assert accounts.check_password("nobody", PASSPHRASE, OTHER_ADDRESS) == PasswordCheck(
        Verdict.WRONG, deferred=True
    )
    assert accounts.all() == []


def test_lift_lockout_unlocks_the_account(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    assert not accounts.lift_lockout("doc").locked
    assert accounts.retry_after("doc", OTHER_ADDRESS) == 0
    assert accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS) == PasswordCheck(
        Verdict.ACCEPTED, _account(accounts, "doc")
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
    assert accounts.check_password("doc", password, OTHER_ADDRESS).verdict is Verdict.ACCEPTED


def test_reset_password_replaces_the_old_one(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    accounts.reset_password("doc")
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.WRONG


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
    assert check.verdict is Verdict.THROTTLED
    assert hashes == []


def test_ipv6_addresses_of_one_network_share_their_back_off(accounts: Accounts) -> None:
    for n in range(ADDRESS_FREE_FAILURES):
        accounts.record_failure(f"guess{n}", f"2001:db8:1:2::{n + 1:x}")
    assert accounts.retry_after("someone", "2001:db8:1:2:ffff::1") > 0
    assert accounts.retry_after("someone", "2001:db8:1:3::1") == 0


# Attacks on throttling and lockout (issue #11).

PARALLEL_ATTEMPTS = 20


def _at_once(attempt: Callable[[int], T], count: int = PARALLEL_ATTEMPTS) -> list[T]:
    """`attempt(n)` for n < `count`, all threads released together, in bounded time."""
    barrier = threading.Barrier(count)

    def run(n: int) -> T:
        barrier.wait(timeout=30)
        return attempt(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count), timeout=120))


def test_parallel_wrong_passwords_run_no_more_hashes_than_the_free_failures(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    hashes: list[str] = []
    lock = threading.Lock()
    matches = pacs_accounts.password_matches

    def counting(stored: str, password: str) -> bool:
        with lock:
            hashes.append(password)
        return matches(stored, password)

    monkeypatch.setattr(pacs_accounts, "password_matches", counting)
    verdicts = _at_once(lambda n: accounts.check_password("doc", f"wrong guess {n}", ADDRESS).verdict)
    assert len(hashes) == verdicts.count(Verdict.WRONG) == ACCOUNT_FREE_FAILURES
    assert verdicts.count(Verdict.THROTTLED) == PARALLEL_ATTEMPTS - ACCOUNT_FREE_FAILURES


def test_parallel_wrong_codes_are_checked_no_more_than_the_free_failures(
    accounts: Accounts, clock: Clock
) -> None:
    totp, _ = _enrol(accounts, clock)
    wrong = _code_outside_window(totp, clock())
    verdicts = _at_once(lambda n: accounts.check_second_factor("doc", wrong, ADDRESS))
    assert verdicts.count(Verdict.WRONG) == ACCOUNT_FREE_FAILURES
    assert verdicts.count(Verdict.THROTTLED) == PARALLEL_ATTEMPTS - ACCOUNT_FREE_FAILURES


def test_parallel_attempts_from_many_addresses_reveal_no_more_passwords_than_the_lockout(
    accounts: Accounts,
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    checks = _at_once(lambda n: accounts.check_password("doc", f"wrong guess {n}", f"198.51.100.{n + 1}"))
    assert sum(not check.deferred for check in checks) == LOCKOUT_AFTER
    assert _account(accounts, "doc").locked


def test_an_attempt_in_flight_stops_counting_when_it_is_never_settled(
    accounts: Accounts, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", ACCOUNT_FREE_FAILURES - 1)

    def dies(stored: str, password: str) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(pacs_accounts, "password_matches", dies)
    monkeypatch.setattr(Accounts, "_settle", lambda *args, **kwargs: None)
    with pytest.raises(KeyboardInterrupt):
        accounts.check_password("doc", PASSPHRASE, ADDRESS)
    monkeypatch.undo()
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.THROTTLED
    clock.advance(PENDING_TTL.total_seconds())
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.ACCEPTED


def test_attackers_failures_from_one_address_leave_the_right_password_and_code_from_another(
    accounts: Accounts, clock: Clock
) -> None:
    totp, _ = _enrol(accounts, clock)
    for n in range(LOCKOUT_AFTER + 6):
        clock.advance(MAX_BACKOFF.total_seconds())
        assert accounts.check_password("doc", f"wrong guess {n}", ADDRESS).verdict is Verdict.WRONG
    assert accounts.retry_after("doc", ADDRESS) > 0
    check = accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS)
    assert check.verdict is Verdict.ACCEPTED
    assert accounts.check_second_factor("doc", totp.at(clock()), OTHER_ADDRESS) is Verdict.ACCEPTED


def test_a_deferred_wrong_password_fails_even_with_the_right_code(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    _fail(accounts, "doc", LOCKOUT_AFTER, ADDRESS)
    verdict = accounts.check_second_factor("doc", totp.at(clock()), OTHER_ADDRESS, password_right=False)
    assert verdict is Verdict.WRONG
    assert accounts.check_second_factor("doc", totp.at(clock()), OTHER_ADDRESS) is Verdict.ACCEPTED


def test_failures_from_one_address_are_throttled_for_that_address(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    for n in range(ADDRESS_FREE_FAILURES):
        accounts.check_password(f"guess{n}", "a wrong guess", ADDRESS)
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is Verdict.THROTTLED
    assert accounts.check_second_factor("doc", "123456", ADDRESS) is Verdict.THROTTLED


def test_lockout_expires_by_itself(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    clock.advance(LOCKOUT_PERIOD.total_seconds() - 1)
    assert _account(accounts, "doc").locked
    clock.advance(1)
    assert not _account(accounts, "doc").locked
    check = accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS)
    assert check.verdict is Verdict.ACCEPTED and not check.deferred


def test_further_failures_keep_the_lock_until_the_period_after_the_last(
    accounts: Accounts, clock: Clock
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    clock.advance(LOCKOUT_PERIOD.total_seconds() / 2)
    accounts.record_failure("doc", OTHER_ADDRESS)
    clock.advance(LOCKOUT_PERIOD.total_seconds() / 2)
    assert _account(accounts, "doc").locked


def _security_alerts(pacs: Context) -> list[dict[str, object]]:
    return [
        {"user_id": r.user_id, "source": r.source, **json.loads(r.details)}
        for r in pacs.audit.records()
        if r.event_id == str(EventID.SECURITY_ALERT)
    ]


def test_lockout_is_audited_once_by_the_accounts_service(pacs: Context, clock: Clock) -> None:
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=clock)
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _at_once(lambda n: accounts.check_password("doc", "a wrong guess", f"198.51.100.{n + 1}"))
    locks = [alert for alert in _security_alerts(pacs) if "locked" in str(alert["what"])]
    assert len(locks) == 1
    assert locks[0]["user_id"] == "doc" and str(locks[0]["source"]).startswith("198.51.100.")


def test_unlock_is_audited_by_the_accounts_service_with_its_actor(pacs: Context, clock: Clock) -> None:
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=clock)
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    accounts.lift_lockout("doc", actor="root@cli")
    assert _security_alerts(pacs)[-1] == {
        "user_id": "root@cli",
        "source": "",
        "what": "lockout lifted",
        "user": "doc",
    }


PROCESSES = 5


def _attempt_in_another_process(data_dir: Path, barrier: Barrier, moment: float, results: Queue[str]) -> None:
    """One wrong password for "doc" from a process of its own, at the fixed `moment`."""
    pacs = open_pacs(load_settings(data_dir, {}))
    try:
        accounts = Accounts(pacs.database, pacs.keyring, now=lambda: moment)
        barrier.wait(timeout=60)
        results.put(accounts.check_password("doc", "a wrong guess", ADDRESS).verdict.name)
    finally:
        pacs.close()


def test_parallel_wrong_passwords_from_several_processes_run_no_more_hashes_than_the_free_failures(
    pacs: Context, accounts: Accounts, clock: Clock
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(PROCESSES), spawn.Queue()
    workers = [
        spawn.Process(
            target=_attempt_in_another_process, args=(pacs.settings.data_dir, barrier, clock(), results)
        )
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    verdicts = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert verdicts.count(Verdict.WRONG.name) == ACCOUNT_FREE_FAILURES
    assert verdicts.count(Verdict.THROTTLED.name) == PROCESSES - ACCOUNT_FREE_FAILURES
