"""User accounts: the password and user name policy, password hashing, and creating accounts."""

from __future__ import annotations

import itertools
import secrets

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from sqlalchemy import select
from zxcvbn import zxcvbn

from pacs.core.accounts import (
    HASHER,
    AccountError,
    Accounts,
    LoginVerdict,
    PasswordPolicyError,
    check_password_policy,
    check_user_name,
    parse_roles,
)
from pacs.core.context import Context
from pacs.core.passwords import ESTIMATED_CHARACTERS, MIN_STRENGTH, one_time_password
from storage.models import User
from tests.core.accounts_helpers import (
    ADDRESS,
    OTHER_PASSPHRASE,
    OWASP_MINIMUM_MEMORY_KIB,
    PASSPHRASE,
    PHYSICIAN,
    _row,
)

# Password policy (no database).


def test_password_of_eleven_characters_is_refused() -> None:
    with pytest.raises(PasswordPolicyError):
        check_password_policy("kestrelquar")


def test_password_of_257_characters_is_refused() -> None:
    with pytest.raises(PasswordPolicyError):
        check_password_policy("kestrel " * 32 + "q")


# 256 characters of words that do not repeat.
LONGEST = (
    "violet kestrel under the quarry while amber herons drift past seven lanterns copper otters "
    "guard the sluice nine quiet moths circle a pier plum orchards bloom in the marsh beyond old "
    "mill wheels turning slowly as foxes cross frozen meadows at dawn as owls!"
)


@pytest.mark.parametrize("password", ["quarrykestre", LONGEST], ids=["12 chars", "256 chars"])
def test_passwords_at_the_length_limits_are_accepted(password: str) -> None:
    assert len(password) in (12, 256)
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


@pytest.mark.parametrize(
    "password", ["passwordpassword", "abcdefghijklmnop", "qwertyuiopasdfgh", "iloveyou2024!"]
)
def test_password_estimated_easy_to_guess_is_refused(password: str) -> None:
    assert zxcvbn(password)["score"] < MIN_STRENGTH
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        check_password_policy(password)


def test_refusal_for_strength_gives_zxcvbns_reason_and_advice() -> None:
    feedback = zxcvbn("passwordpassword")["feedback"]
    with pytest.raises(PasswordPolicyError) as refused:
        check_password_policy("passwordpassword")
    message = str(refused.value)
    assert feedback["warning"] and feedback["warning"] in message
    assert feedback["suggestions"] and all(advice in message for advice in feedback["suggestions"])
    assert f"at least {MIN_STRENGTH}" in message and "\n" not in message


def test_variation_of_the_user_name_is_refused_as_easy_to_guess() -> None:
    check_password_policy("drjanedoe2024", user_name="nurse")  # strong for anyone else
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        check_password_policy("drjanedoe2024", user_name="dr.jane-doe")


def test_variation_of_the_products_name_is_refused_as_easy_to_guess() -> None:
    assert zxcvbn("minipacs2024")["score"] >= MIN_STRENGTH
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        check_password_policy("minipacs2024")


def test_variation_of_a_given_user_input_is_refused_as_easy_to_guess() -> None:
    check_password_policy(PASSPHRASE + "!")
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        check_password_policy(PASSPHRASE + "!", user_inputs=[PASSPHRASE])


def test_strength_is_estimated_on_the_first_characters_of_a_long_password() -> None:
    weak_opening = "password" * (ESTIMATED_CHARACTERS // 8) + " then some uncommon words follow here"
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        check_password_policy(weak_opening)


def test_one_time_passwords_pass_the_policy() -> None:
    for _ in range(200):
        check_password_policy(one_time_password())


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
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.ACCEPTED
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
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.ACCEPTED


def test_weaker_hash_is_kept_after_a_wrong_password(pacs: Context, accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSPHRASE)
    with pacs.database.write() as session:
        session.scalars(select(User).where(User.name == "doc")).one().password_hash = weak
    assert accounts.check_password("doc", OTHER_PASSPHRASE, ADDRESS).verdict is LoginVerdict.WRONG
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
    assert check.verdict is LoginVerdict.ACCEPTED
    assert check.account is not None and not check.account.must_change_password


def test_add_without_password_returns_a_working_one_time_password(accounts: Accounts) -> None:
    account, password = accounts.add("doc", PHYSICIAN)
    assert account.name == "doc" and account.roles == PHYSICIAN
    assert len(password) >= 12
    assert accounts.check_password("doc", password, ADDRESS).verdict is LoginVerdict.ACCEPTED


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
    assert accounts.check_password("a", password, ADDRESS).verdict is LoginVerdict.ACCEPTED


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


def test_weak_password_is_refused_by_add(accounts: Accounts) -> None:
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        accounts.add("doc", PHYSICIAN, "passwordpassword")
    assert accounts.get("doc") is None


def test_variation_of_the_user_name_is_refused_by_add(accounts: Accounts) -> None:
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        accounts.add("dr.jane-doe", PHYSICIAN, "drjanedoe2024")


def test_weak_password_is_refused_by_change(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        accounts.change_password("doc", "passwordpassword")
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.ACCEPTED


def test_variation_of_the_current_password_is_refused_by_change(accounts: Accounts) -> None:
    accounts.add("doc", PHYSICIAN, PASSPHRASE)
    with pytest.raises(PasswordPolicyError, match="too easy to guess"):
        accounts.change_password("doc", PASSPHRASE + "!", user_inputs=(PASSPHRASE,))
    assert accounts.check_password("doc", PASSPHRASE, ADDRESS).verdict is LoginVerdict.ACCEPTED
