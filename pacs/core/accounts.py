"""User accounts: argon2id passwords, the TOTP second factor, recovery codes, throttling and lockout.

Passwords follow :mod:`pacs.core.passwords` (policy and argon2id; its names are also
importable from here) and are re-hashed at login when :data:`HASHER`'s parameters change;
the second factor follows :mod:`pacs.core.second_factor`. Every password and code is
admitted, and its failure counted, by :mod:`pacs.core.throttle` (back-off per account at an
address and per address, a lock of the account that lifts by itself). A locked account
still logs in with the right password and code together; its password step alone tells
nothing. Nothing here says whether a user exists. Lockouts and unlocks are audited here,
where they are decided: a lockout stands even if its record cannot be written (it protects;
the failure is logged), an unlock is not acknowledged without its record
(:class:`~pacs.core.audit.AuditUnavailableError`). A password change or reset, a second-factor
reset and disabling end the user's web sessions.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pacs.core import events, throttle
from pacs.core.audit import Action, AuditLog
from pacs.core.passwords import CONCURRENT_HASHES as CONCURRENT_HASHES
from pacs.core.passwords import (
    HASHER,
    ROLES,
    AccountError,
    PasswordPolicyError,
    check_password_policy,
    check_user_name,
    dummy_hash,
    one_time_password,
    password_matches,
)
from pacs.core.passwords import MAX_PASSWORD as MAX_PASSWORD
from pacs.core.passwords import MIN_PASSWORD as MIN_PASSWORD
from pacs.core.passwords import parse_roles as parse_roles
from pacs.core.second_factor import RECOVERY_CODES as RECOVERY_CODES
from pacs.core.second_factor import TOTP_ISSUER as TOTP_ISSUER
from pacs.core.second_factor import SecondFactor
from pacs.core.throttle import ACCOUNT_FREE_FAILURES as ACCOUNT_FREE_FAILURES
from pacs.core.throttle import ADDRESS_FREE_FAILURES as ADDRESS_FREE_FAILURES
from pacs.core.throttle import LOCKOUT_AFTER, LOCKOUT_PERIOD
from pacs.core.throttle import MAX_BACKOFF as MAX_BACKOFF
from storage.db import Database, as_utc
from storage.keys import KeyRing
from storage.models import User, WebSession


class LoginVerdict(enum.Enum):
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

    verdict: LoginVerdict
    account: Account | None = None
    deferred: bool = False

    @property
    def ok(self) -> bool:
        """Whether the password was right and the account may go on to the second factor."""
        return self.verdict is LoginVerdict.ACCEPTED


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


class Accounts(SecondFactor):
    """The users of one archive, in its index database; its lockouts and unlocks go to `audit`."""

    def __init__(
        self,
        database: Database,
        keyring: KeyRing,
        *,
        audit: AuditLog,
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

        A pending (unconfirmed) TOTP enrolment is dropped: whoever saw its key had the old
        password. `actor` (who asked) is recorded if a lockout was lifted.
        """
        password = one_time_password()
        with self._database.write() as session:
            user = self._get(session, name)
            user.password_hash = HASHER.hash(password)
            user.must_change_password = True
            if not user.totp_confirmed:
                user.totp_secret = None
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

    def change_password(self, name: str, new_password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
        """Set a password the user chose (policy-checked); it no longer must be changed.

        `user_inputs` (what else the user typed, such as the current password) count as weak
        words in the strength estimate. Every web session of the user ends; the caller starts a
        new one if it should go on.
        """
        check_password_policy(new_password, user_name=name, user_inputs=user_inputs)
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
            return PasswordCheck(LoginVerdict.THROTTLED)
        right = False
        try:
            with self._database.read() as session:
                user = session.scalars(select(User).where(User.name == name)).one_or_none()
                stored = user.password_hash if user is not None else dummy_hash()
                account = self._view(session, user) if user is not None else None
            right = password_matches(stored, password) and account is not None
        finally:
            self._settle(admission, name, address, failed=not right)
        if account is None or not right:
            return PasswordCheck(LoginVerdict.WRONG, deferred=admission.locked)
        if account.disabled:
            return PasswordCheck(LoginVerdict.DISABLED, account, deferred=admission.locked)
        if HASHER.check_needs_rehash(stored):
            with self._database.write() as session:
                self._get(session, name).password_hash = HASHER.hash(password)
        return PasswordCheck(LoginVerdict.ACCEPTED, account, deferred=admission.locked)

    def check_second_factor(
        self, name: str, code: str, address: str, *, password_right: bool = True
    ) -> LoginVerdict:
        """Check a TOTP code (six digits) or a recovery code, throttled like a password.

        With `password_right` False (a deferred wrong password) every code fails, and the code
        is not even looked at, so that it tells nothing; the attempt still counts.
        """
        admission = self._admit(name, address)
        if admission is None:
            return LoginVerdict.THROTTLED
        accepted = False
        try:
            digits = code.replace(" ", "")
            if password_right:
                accepted = (
                    self.verify_totp(name, digits) if digits.isdigit() else self.use_recovery_code(name, code)
                )
        finally:
            self._settle(admission, name, address, failed=not accepted)
        return LoginVerdict.ACCEPTED if accepted else LoginVerdict.WRONG

    def check_other_factor(self, name: str, address: str, check: Callable[[], bool]) -> LoginVerdict:
        """A second factor that is not a code (a passkey), decided by `check`, counted like a code."""
        admission = self._admit(name, address)
        if admission is None:
            return LoginVerdict.THROTTLED
        accepted = False
        try:
            accepted = check()
        finally:
            self._settle(admission, name, address, failed=not accepted)
        return LoginVerdict.ACCEPTED if accepted else LoginVerdict.WRONG

    def confirm_enrolment(self, name: str, code: str, address: str) -> tuple[LoginVerdict, list[str]]:
        """Confirm the pending TOTP enrolment with a code, throttled like a login code.

        Returns the verdict and, when accepted, the new recovery codes.
        """
        admission = self._admit(name, address)
        if admission is None:
            return LoginVerdict.THROTTLED, []
        codes: list[str] | None = None
        try:
            codes = self.confirm_totp(name, code)
        finally:
            self._settle(admission, name, address, failed=codes is None)
        return (LoginVerdict.WRONG, []) if codes is None else (LoginVerdict.ACCEPTED, codes)

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
        minutes = int(LOCKOUT_PERIOD.total_seconds()) // 60
        locked = events.account_locked(
            name, source=address, failures=LOCKOUT_AFTER, lifts_after_minutes=minutes
        )
        self._audit.append_after(locked)

    def _audit_unlock(self, name: str, actor: str, what: str) -> None:
        self._audit.append(events.user_changed(Action.UPDATE, name, what, by=actor))


def _end_sessions(session: Session, name: str) -> int:
    result = session.execute(delete(WebSession).where(WebSession.user_name == name))
    return int(getattr(result, "rowcount", 0) or 0)
