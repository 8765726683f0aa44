"""Passwords and user names: the policy, argon2id hashing (at most a few at once), one-time passwords.

Passwords are hashed with argon2id at OWASP's first recommended setting (46 MiB, one
pass). A password is 12 to 256 characters, must not be one of zxcvbn's 30,000 most
common passwords nor contain the user name, and must be estimated hard to guess: a zxcvbn
score of at least :data:`MIN_STRENGTH` (of 4), told the user's name, its parts and the
product's words so that variations of them count as weak. There are no composition rules.
The estimate covers the first :data:`ESTIMATED_CHARACTERS` characters (zxcvbn's own limit:
its cost grows quickly with length), so a long password must not open with a weak run.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
from collections.abc import Iterable
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from storage.errors import PacsError

ROLES = ("admin", "physician")
MIN_PASSWORD, MAX_PASSWORD = 12, 256
MIN_STRENGTH, ESTIMATED_CHARACTERS = 3, 72
# Words a guesser tries first against this system, whoever the user is.
PRODUCT_WORDS = ("mini-PACS", "minipacs", "pacs", "dicom", "radiology", *ROLES)
HASHER = PasswordHasher(time_cost=1, memory_cost=47104, parallelism=1)
CONCURRENT_HASHES = 2
_HASHING = threading.BoundedSemaphore(CONCURRENT_HASHES)
_NAME_CHARS = set(string.ascii_letters + string.digits + "._-@")


class AccountError(PacsError):
    """Bad input to an account operation (the message is safe to show)."""


class PasswordPolicyError(AccountError):
    """A password that is too short, too long or too common."""


@cache
def _common_passwords() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


@cache
def dummy_hash() -> str:
    """The hash an unknown user's password is checked against, so that it costs the same."""
    return HASHER.hash(secrets.token_hex(16))


def check_password_policy(password: str, *, user_name: str = "", user_inputs: Iterable[str] = ()) -> None:
    """Raise :class:`PasswordPolicyError` unless `password` may be used.

    `user_inputs` are further words the user is known by or has typed (the current password),
    which zxcvbn treats like dictionary words. The message says what to change.
    """
    if len(password) < MIN_PASSWORD:
        raise PasswordPolicyError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordPolicyError(f"a password has at most {MAX_PASSWORD} characters")
    lowered = password.lower()
    if lowered in _common_passwords():
        raise PasswordPolicyError("this password is on the list of common and breached passwords")
    if user_name and user_name.lower() in lowered:
        raise PasswordPolicyError("a password must not contain the user name")
    _check_strength(password, [*_name_words(user_name), *PRODUCT_WORDS, *user_inputs])


def _name_words(user_name: str) -> list[str]:
    """The user name, joined and in parts ("dr.jane-doe" also gives "drjanedoe", "dr", "jane", "doe")."""
    parts = [part for part in re.split(r"[._@-]+", user_name) if part]
    return [user_name, "".join(parts), *parts] if user_name else []


def _check_strength(password: str, user_inputs: list[str]) -> None:
    """Raise :class:`PasswordPolicyError` with zxcvbn's advice if it scores `password` below the minimum."""
    estimate = zxcvbn(password[:ESTIMATED_CHARACTERS], user_inputs=[w for w in user_inputs if w])
    if estimate["score"] >= MIN_STRENGTH:
        return
    feedback = estimate["feedback"]
    advice = [text for text in (feedback["warning"], *feedback["suggestions"]) if text]
    raise PasswordPolicyError(
        "this password would be too easy to guess (estimated strength "
        f"{estimate['score']} of 4, at least {MIN_STRENGTH} needed). "
        + " ".join(advice or ["Add another word or two. Uncommon words are better."])
    )


def check_user_name(name: str) -> None:
    """Raise :class:`AccountError` unless `name` is 1-64 letters, digits or ``._-@``."""
    if not 0 < len(name) <= 64 or not set(name) <= _NAME_CHARS:
        raise AccountError(f"user name {name!r} must be 1-64 letters, digits or . _ - @")


def parse_roles(text: str) -> frozenset[str]:
    """Roles from a comma-separated list; raise :class:`AccountError` for an unknown one."""
    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = roles - set(ROLES)
    if not roles or unknown:
        raise AccountError(f"roles must be among {', '.join(ROLES)}; got {text!r}")
    return roles


def one_time_password() -> str:
    """A random password for a new or reset account (20 characters, about 119 bits)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def password_matches(stored: str, password: str) -> bool:
    """Whether `password` matches the argon2 hash `stored` (False for a malformed hash).

    At most :data:`CONCURRENT_HASHES` run at once, so a flood of logins cannot exhaust memory.
    """
    with _HASHING:
        try:
            return HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
