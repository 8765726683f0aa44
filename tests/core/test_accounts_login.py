"""User accounts at login: the password step, the TOTP second factor and recovery codes.

Time comes from a fake clock handed to :class:`Accounts`, so nothing here sleeps.
"""

from __future__ import annotations

import base64

import pyotp
import pytest

from pacs.core.accounts import (
    ACCOUNT_FREE_FAILURES,
    LOCKOUT_AFTER,
    RECOVERY_CODES,
    AccountError,
    Accounts,
    LoginVerdict,
    PasswordCheck,
)
from pacs.core.context import Context
from tests.core.accounts_helpers import (
    ADDRESS,
    OTHER_ADDRESS,
    OTHER_PASSPHRASE,
    PASSPHRASE,
    PHYSICIAN,
    STEP,
    Clock,
    _account,
    _code_outside_window,
    _enrol,
    _fail,
    _row,
    _row_bytes,
)

# The password step of a login.


def test_right_password_is_accepted(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    check = accounts.check_password("doc", PASSPHRASE, ADDRESS)
    assert check.ok and check.verdict is LoginVerdict.ACCEPTED
    assert check.account is not None and check.account.name == "doc"


def test_unknown_user_and_wrong_password_give_the_same_verdict(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    wrong = accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS)
    unknown = accounts.check_password("nobody", PASSPHRASE, OTHER_ADDRESS)
    assert wrong == unknown == PasswordCheck(LoginVerdict.WRONG)
    assert not wrong.ok


def test_disabled_user_with_the_right_password_is_not_accepted(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    assert accounts.set_disabled("doc").disabled
    check = accounts.check_password("doc", PASSPHRASE, ADDRESS)
    assert not check.ok and check.verdict is not LoginVerdict.ACCEPTED


def test_locked_account_defers_the_verdict_on_its_password(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    _fail(accounts, "doc", LOCKOUT_AFTER)
    right = accounts.check_password("doc", PASSPHRASE, OTHER_ADDRESS)
    wrong = accounts.check_password("doc", OTHER_PASSPHRASE, OTHER_ADDRESS)
    assert right.deferred and right.verdict is LoginVerdict.ACCEPTED
    assert wrong.deferred and wrong.verdict is LoginVerdict.WRONG


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


def test_pending_enrolment_keeps_its_secret_until_confirmed(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    first = accounts.begin_totp_enrolment("doc")
    assert accounts.begin_totp_enrolment("doc") == first
    assert accounts.confirm_totp("doc", _code_outside_window(pyotp.TOTP(first), clock())) is None
    assert accounts.begin_totp_enrolment("doc") == first
    assert accounts.confirm_totp("doc", pyotp.TOTP(first).at(clock())) is not None


def test_password_reset_drops_a_pending_enrolment(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    seen = accounts.begin_totp_enrolment("doc")
    accounts.reset_password("doc")
    assert accounts.begin_totp_enrolment("doc") != seen


def test_password_reset_keeps_a_confirmed_second_factor(accounts: Accounts, clock: Clock) -> None:
    totp, _ = _enrol(accounts, clock)
    accounts.reset_password("doc")
    assert accounts.verify_totp("doc", totp.at(clock()))


def test_confirm_enrolment_with_the_right_code_returns_recovery_codes(
    accounts: Accounts, clock: Clock
) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    totp = pyotp.TOTP(accounts.begin_totp_enrolment("doc"))
    verdict, codes = accounts.confirm_enrolment("doc", totp.at(clock()), ADDRESS)
    assert verdict is LoginVerdict.ACCEPTED and len(codes) == RECOVERY_CODES
    assert _account(accounts, "doc").totp_enrolled


def test_wrong_enrolment_codes_are_throttled_like_login_codes(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    totp = pyotp.TOTP(accounts.begin_totp_enrolment("doc"))
    wrong = _code_outside_window(totp, clock())
    for _ in range(ACCOUNT_FREE_FAILURES):
        assert accounts.confirm_enrolment("doc", wrong, ADDRESS) == (LoginVerdict.WRONG, [])
    assert accounts.retry_after("doc", ADDRESS) > 0
    assert accounts.confirm_enrolment("doc", totp.at(clock()), ADDRESS) == (LoginVerdict.THROTTLED, [])
    assert not _account(accounts, "doc").totp_enrolled
    clock.advance(accounts.retry_after("doc", ADDRESS))
    assert accounts.confirm_enrolment("doc", totp.at(clock()), ADDRESS)[0] is LoginVerdict.ACCEPTED


def test_wrong_enrolment_codes_lock_the_account(accounts: Accounts, clock: Clock) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    wrong = _code_outside_window(pyotp.TOTP(accounts.begin_totp_enrolment("doc")), clock())
    for _ in range(LOCKOUT_AFTER):
        clock.advance(accounts.retry_after("doc", ADDRESS))
        assert accounts.confirm_enrolment("doc", wrong, ADDRESS)[0] is LoginVerdict.WRONG
    assert _account(accounts, "doc").locked


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
