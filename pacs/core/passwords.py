"""Passwords and user names: the policy, argon2id hashing (at most a few at once), one-time passwords.

Passwords are hashed with argon2id at OWASP's first recommended setting (46 MiB, one
pass). A password is 12 to 256 characters and must not be one of zxcvbn's 30,000 most
common passwords; there are no composition rules.
"""

from __future__ import annotations

import secrets
import string
import threading
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from storage.errors import PacsError

ROLES = ("admin", "physician")
MIN_PASSWORD, MAX_PASSWORD = 12, 256
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


def check_password_policy(password: str, *, user_name: str = "") -> None:
    """Raise :class:`PasswordPolicyError` unless `password` may be used."""
    if len(password) < MIN_PASSWORD:
        raise PasswordPolicyError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordPolicyError(f"a password has at most {MAX_PASSWORD} characters")
    lowered = password.lower()
    if lowered in _common_passwords():
        raise PasswordPolicyError("this password is on the list of common and breached passwords")
    if user_name and user_name.lower() in lowered:
        raise PasswordPolicyError("a password must not contain the user name")


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
