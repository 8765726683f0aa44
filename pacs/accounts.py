"""User accounts: argon2id passwords, the TOTP second factor, recovery codes, throttling and lockout.

Passwords are hashed with argon2id at OWASP's first recommended setting (46 MiB, one
pass) and re-hashed at login when :data:`HASHER`'s parameters change. A password is
12 to 256 characters and must not be one of zxcvbn's 30,000 most common passwords; there
are no composition rules. TOTP follows RFC 6238 (30 s steps, six digits, one step of
drift either way), and each step is accepted once. TOTP secrets are stored encrypted
under a key derived from the key-encryption key; recovery codes are stored as keyed
hashes. Every password and code is admitted, and its failure counted, by
:mod:`pacs.core.throttle` (back-off per account at an address and per address, a lock of
the account that lifts by itself). A locked account still logs in with the right password
and code together; its password step alone tells nothing. Nothing here says whether a user
exists. Lockouts and unlocks are audited here, where they are decided.
A password change or reset, a second-factor reset and disabling end the user's web sessions.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from pacs.audit import Action, AuditEvent, AuditLog, EventID, EventType, Outcome
from pacs.core import throttle
from pacs.core.throttle import ACCOUNT_FREE_FAILURES as ACCOUNT_FREE_FAILURES
from pacs.core.throttle import ADDRESS_FREE_FAILURES as ADDRESS_FREE_FAILURES
from pacs.core.throttle import LOCKOUT_AFTER as LOCKOUT_AFTER
from pacs.core.throttle import LOCKOUT_PERIOD as LOCKOUT_PERIOD
from pacs.core.throttle import MAX_BACKOFF as MAX_BACKOFF
from storage.db import Database, User, WebSession, as_utc
from storage.keys import KeyRing

ROLES = ("admin", "physician")
MIN_PASSWORD, MAX_PASSWORD = 12, 256
HASHER = PasswordHasher(time_cost=1, memory_cost=47104, parallelism=1)
CONCURRENT_HASHES = 2
_HASHING = threading.BoundedSemaphore(CONCURRENT_HASHES)
TOTP_ISSUER = "mini-PACS"
RECOVERY_CODES = 10
_NAME_CHARS = set(string.ascii_letters + string.digits + "._-@")
_TOTP_KEY_PURPOSE = "totp secrets v1"
_RECOVERY_KEY_PURPOSE = "recovery codes v1"


class AccountError(Exception):
    """Bad input to an account operation (the message is safe to show)."""


class PasswordPolicyError(AccountError):
    """A password that is too short, too long or too common."""


class Verdict(enum.Enum):
    """How a password or code check ended. Callers show the same message for every failure."""

    ACCEPTED = "accepted"
    WRONG = "wrong password or unknown user"
    THROTTLED = "too many recent failures"
    DISABLED = "account disabled"


@dataclass(frozen=True)
class Account:
    """What the rest of the application may know about a user."""

    name: str
    roles: frozenset[str]
    must_change_password: bool
    disabled: bool
    locked: bool
    totp_enrolled: bool
    recovery_codes_left: int
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        """Whether the user may manage users, modalities and the audit trail."""
        return "admin" in self.roles

    @property
    def is_physician(self) -> bool:
        """Whether the user may open images."""
        return "physician" in self.roles


@dataclass(frozen=True)
class PasswordCheck:
    """The outcome of :meth:`Accounts.check_password`.

    `deferred`: the account is locked, so the caller must not tell whether the password was
    right: it asks for the code whatever the verdict, and lets in only the right password
    and code together (:meth:`Accounts.check_second_factor`).
    """

    verdict: Verdict
    account: Account | None = None
    deferred: bool = False

    @property
    def ok(self) -> bool:
        """Whether the password was right and the account may go on to the second factor."""
        return self.verdict is Verdict.ACCEPTED


@cache
def _common_passwords() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


@cache
def _dummy_hash() -> str:
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


def _view(user: User, locked: bool) -> Account:
    return Account(
        name=user.name,
        roles=frozenset(r for r in user.roles.split(",") if r),
        must_change_password=user.must_change_password,
        disabled=user.disabled,
        locked=locked,
        totp_enrolled=user.totp_confirmed,
        recovery_codes_left=len(json.loads(user.recovery_codes)),
        created_at=as_utc(user.created_at),
    )


class Accounts:
    """The users of one archive, in its index database.

    With `audit`, lockouts and unlocks are recorded there (every service should pass it).
    """

    def __init__(
        self,
        database: Database,
        keyring: KeyRing,
        *,
        audit: AuditLog | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._database = database
        self._keyring = keyring
        self._audit = audit
        self._now = now

    def _utcnow(self) -> datetime:
        return datetime.fromtimestamp(self._now(), UTC)

    def _view(self, session: Session, user: User) -> Account:
        return _view(user, bool(throttle.locked(session, [user.name], self._utcnow())))

    @staticmethod
    def _get(session: Session, name: str) -> User:
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        if user is None:
            raise AccountError(f"no user {name!r}")
        return user

    def add(self, name: str, roles: frozenset[str], password: str | None = None) -> tuple[Account, str]:
        """Create a user who must change the password at first login; return it and the password.

        Without `password`, a random one-time password is made.
        """
        check_user_name(name)
        if not roles or not roles <= set(ROLES):
            raise AccountError(f"roles must be among {', '.join(ROLES)}")
        if password is None:
            password = one_time_password()
        else:
            check_password_policy(password, user_name=name)
        with self._database.write() as session:
            if session.scalars(select(User.id).where(User.name == name)).first() is not None:
                raise AccountError(f"user {name!r} already exists")
            user = User(
                name=name,
                roles=",".join(r for r in ROLES if r in roles),
                password_hash=HASHER.hash(password),
                must_change_password=True,
                disabled=False,
                totp_secret=None,
                totp_confirmed=False,
                last_totp_step=0,
                recovery_codes="[]",
                created_at=self._utcnow(),
            )
            session.add(user)
            session.flush()
            return self._view(session, user), password

    def get(self, name: str) -> Account | None:
        """The account called `name`, or None."""
        with self._database.read() as session:
            user = session.scalars(select(User).where(User.name == name)).one_or_none()
            return self._view(session, user) if user is not None else None

    def all(self) -> list[Account]:
        """Every account, by name."""
        with self._database.read() as session:
            users = session.scalars(select(User).order_by(User.name)).all()
            locked = throttle.locked(session, [u.name for u in users], self._utcnow())
            return [_view(u, u.name in locked) for u in users]

    def set_disabled(self, name: str, disabled: bool = True) -> Account:
        """Disable (or enable again) an account; the last enabled admin cannot be disabled."""
        with self._database.write() as session:
            user = self._get(session, name)
            if disabled and not user.disabled and "admin" in user.roles.split(","):
                admins = session.scalars(select(User.roles).where(User.disabled.is_(False))).all()
                if sum("admin" in roles.split(",") for roles in admins) == 1:
                    raise AccountError(f"{name} is the last enabled admin; add another admin first")
            user.disabled = disabled
            if disabled:
                _end_sessions(session, name)
            return self._view(session, user)

    def reset_password(self, name: str, *, actor: str = "") -> str:
        """Give the account a new one-time password, lift its lockout; return the password.

        `actor` (who asked) is recorded if a lockout was lifted.
        """
        password = one_time_password()
        with self._database.write() as session:
            user = self._get(session, name)
            user.password_hash = HASHER.hash(password)
            user.must_change_password = True
            was_locked = throttle.unlock(session, name, self._utcnow())
            _end_sessions(session, name)
        if was_locked:
            self._audit_unlock(name, actor, "lockout lifted with a password reset")
        return password

    def reset_totp(self, name: str) -> Account:
        """Remove the second factor and recovery codes; the next login enrols TOTP again."""
        with self._database.write() as session:
            user = self._get(session, name)
            user.totp_secret = None
            user.totp_confirmed = False
            user.recovery_codes = "[]"
            _end_sessions(session, name)
            return self._view(session, user)

    def lift_lockout(self, name: str, *, actor: str = "") -> Account:
        """Unlock the account and forget its recent failures from every address; audited as by `actor`.

        The back-off of an address for all accounts stays (it is that address's own doing).
        """
        with self._database.write() as session:
            user = self._get(session, name)
            was_locked = throttle.unlock(session, name, self._utcnow())
            account = self._view(session, user)
        self._audit_unlock(
            name, actor, "lockout lifted" if was_locked else "login back-off cleared (was not locked)"
        )
        return account

    def end_sessions(self, name: str) -> int:
        """End every web session of `name` (logged in, or between password and code); return how many."""
        with self._database.write() as session:
            return _end_sessions(session, name)

    def change_password(self, name: str, new_password: str) -> None:
        """Set a password the user chose (policy-checked); it no longer must be changed.

        Every web session of the user ends; the caller starts a new one if it should go on.
        """
        check_password_policy(new_password, user_name=name)
        with self._database.write() as session:
            user = self._get(session, name)
            if password_matches(user.password_hash, new_password):
                raise PasswordPolicyError("the new password must differ from the old one")
            user.password_hash = HASHER.hash(new_password)
            user.must_change_password = False
            _end_sessions(session, name)

    # Login: the password step.

    def retry_after(self, name: str, address: str) -> float:
        """Seconds until `name` from `address` may try again (0 when it may now)."""
        with self._database.read() as session:
            return throttle.wait(session, name, address, self._utcnow())

    def _admit(self, name: str, address: str) -> throttle.Admission | None:
        with self._database.write() as session:
            return throttle.admit(session, name, address, self._utcnow())

    def _settle(self, admission: throttle.Admission, name: str, address: str, *, failed: bool) -> None:
        with self._database.write() as session:
            locked_now = throttle.settle(session, admission.keys, self._utcnow(), failed=failed)
        if locked_now:
            self._audit_lock(name, address)

    def check_password(self, name: str, password: str, address: str) -> PasswordCheck:
        """Check a password, honouring back-off, lockout (see :class:`PasswordCheck`) and disabled accounts.

        An unknown user costs the same hash as a known one; a throttled attempt costs none.
        A wrong password counts as a failure of the account, the address and the pair.
        """
        admission = self._admit(name, address)
        if admission is None:
            return PasswordCheck(Verdict.THROTTLED)
        right = False
        try:
            with self._database.read() as session:
                user = session.scalars(select(User).where(User.name == name)).one_or_none()
                stored = user.password_hash if user is not None else _dummy_hash()
                account = self._view(session, user) if user is not None else None
            right = password_matches(stored, password) and account is not None
        finally:
            self._settle(admission, name, address, failed=not right)
        if account is None or not right:
            return PasswordCheck(Verdict.WRONG, deferred=admission.locked)
        if account.disabled:
            return PasswordCheck(Verdict.DISABLED, account, deferred=admission.locked)
        if HASHER.check_needs_rehash(stored):
            with self._database.write() as session:
                self._get(session, name).password_hash = HASHER.hash(password)
        return PasswordCheck(Verdict.ACCEPTED, account, deferred=admission.locked)

    def check_second_factor(
        self, name: str, code: str, address: str, *, password_right: bool = True
    ) -> Verdict:
        """Check a TOTP code (six digits) or a recovery code, throttled like a password.

        With `password_right` False (a deferred wrong password) every code fails, and the code
        is not even looked at, so that it tells nothing; the attempt still counts.
        """
        admission = self._admit(name, address)
        if admission is None:
            return Verdict.THROTTLED
        accepted = False
        try:
            digits = code.replace(" ", "")
            if password_right:
                accepted = (
                    self.verify_totp(name, digits) if digits.isdigit() else self.use_recovery_code(name, code)
                )
        finally:
            self._settle(admission, name, address, failed=not accepted)
        return Verdict.ACCEPTED if accepted else Verdict.WRONG

    def record_failure(self, name: str, address: str) -> bool:
        """Count a failure not admitted here (a wrong enrolment code); True if it locked the account."""
        keys = throttle.Keys.of(name, address)
        with self._database.write() as session:
            locked_now = throttle.settle(session, keys, self._utcnow(), failed=True, admitted=False)
        if locked_now:
            self._audit_lock(name, address)
        return locked_now

    def record_success(self, name: str, address: str) -> None:
        """After a complete login, forget the failures of the account at the address and of the address."""
        with self._database.write() as session:
            throttle.forget(session, name, address, self._utcnow())

    def _audit_lock(self, name: str, address: str) -> None:
        self._record(
            AuditEvent(
                EventID.SECURITY_ALERT,
                Action.EXECUTE,
                outcome=Outcome.MINOR_FAILURE,
                user_id=name,
                source=address,
                event_type=EventType.USER_SECURITY_ATTRIBUTES_CHANGED,
                details={
                    "what": "account locked after repeated login failures",
                    "failures": LOCKOUT_AFTER,
                    "lifts": f"{int(LOCKOUT_PERIOD.total_seconds()) // 60} minutes after the last failure, "
                    "or with pacs user unlock",
                    "meanwhile": "only the right password and code together log in",
                },
            )
        )

    def _audit_unlock(self, name: str, actor: str, what: str) -> None:
        self._record(
            AuditEvent(
                EventID.SECURITY_ALERT,
                Action.UPDATE,
                user_id=actor,
                event_type=EventType.USER_SECURITY_ATTRIBUTES_CHANGED,
                details={"what": what, "user": name},
            )
        )

    def _record(self, event: AuditEvent) -> None:
        if self._audit is not None:
            self._audit.append(event)

    # Login: the second factor.

    def _totp_key(self) -> bytes:
        return self._keyring.derive(_TOTP_KEY_PURPOSE, version=1)

    def _seal_secret(self, name: str, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self._totp_key()).encrypt(nonce, secret.encode(), name.encode())

    def _open_secret(self, name: str, sealed: bytes) -> str:
        return AESGCM(self._totp_key()).decrypt(sealed[:12], sealed[12:], name.encode()).decode()

    def begin_totp_enrolment(self, name: str) -> str:
        """A fresh TOTP secret (base32) for an account without a confirmed one; kept until confirmed."""
        secret = pyotp.random_base32()
        with self._database.write() as session:
            user = self._get(session, name)
            if user.totp_confirmed:
                raise AccountError(f"user {name!r} has already enrolled a second factor")
            user.totp_secret = self._seal_secret(name, secret)
        return secret

    def provisioning_uri(self, name: str, secret: str) -> str:
        """The ``otpauth://`` URI an authenticator app reads from the QR code."""
        return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=TOTP_ISSUER)

    def _accept_code(self, session: Session, user: User, code: str) -> bool:
        if user.totp_secret is None or not (len(code) == 6 and code.isdigit()):
            return False
        totp = pyotp.TOTP(self._open_secret(user.name, user.totp_secret))
        now_step = int(self._now()) // totp.interval
        for step in (now_step - 1, now_step, now_step + 1):
            if step > user.last_totp_step and hmac.compare_digest(totp.at(step * totp.interval), code):
                user.last_totp_step = step
                return True
        return False

    def confirm_totp(self, name: str, code: str) -> list[str] | None:
        """Confirm a pending enrolment with a valid code; return new recovery codes, or None."""
        with self._database.write() as session:
            user = self._get(session, name)
            if user.totp_confirmed or not self._accept_code(session, user, code.strip()):
                return None
            user.totp_confirmed = True
            codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
            user.recovery_codes = json.dumps([self._code_hash(c) for c in codes])
            return codes

    def verify_totp(self, name: str, code: str) -> bool:
        """Whether `code` is a valid, unused TOTP code of the account (it is then used up)."""
        with self._database.write() as session:
            user = session.scalars(select(User).where(User.name == name)).one_or_none()
            if user is None or not user.totp_confirmed:
                return False
            return self._accept_code(session, user, code.strip())

    def _code_hash(self, code: str) -> str:
        key = self._keyring.derive(_RECOVERY_KEY_PURPOSE, version=1)
        normalised = code.replace("-", "").replace(" ", "").lower()
        return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()

    def use_recovery_code(self, name: str, code: str) -> bool:
        """Whether `code` is one of the account's unused recovery codes (it is then used up)."""
        digest = self._code_hash(code)
        with self._database.write() as session:
            user = session.scalars(select(User).where(User.name == name)).one_or_none()
            if user is None or not user.totp_confirmed:
                return False
            left = json.loads(user.recovery_codes)
            matches = [h for h in left if hmac.compare_digest(h, digest)]
            if not matches:
                return False
            user.recovery_codes = json.dumps([h for h in left if h != matches[0]])
            return True


def password_matches(stored: str, password: str) -> bool:
    """Whether `password` matches the argon2 hash `stored` (False for a malformed hash).

    At most :data:`CONCURRENT_HASHES` run at once, so a flood of logins cannot exhaust memory.
    """
    with _HASHING:
        try:
            return HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


def _end_sessions(session: Session, name: str) -> int:
    result = session.execute(delete(WebSession).where(WebSession.user_name == name))
    return int(getattr(result, "rowcount", 0) or 0)


def _recovery_code() -> str:
    raw = secrets.token_hex(5)
    return f"{raw[:5]}-{raw[5:]}"
