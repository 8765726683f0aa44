"""Shared pieces of the accounts tests: a fake clock, known secrets, and ways to look at an account.

Time comes from a fake clock handed to :class:`Accounts`, so nothing here sleeps.
"""

from __future__ import annotations

import pyotp
from sqlalchemy import select

from pacs.core.accounts import (
    Account,
    Accounts,
)
from pacs.core.context import Context
from storage.models import User

PASSPHRASE = "violet kestrel under the quarry"
OTHER_PASSPHRASE = "seven lanterns drift past"
PHYSICIAN = frozenset({"physician"})
ADDRESS = "192.0.2.10"
OTHER_ADDRESS = "198.51.100.20"
STEP = 30  # RFC 6238 time step, seconds
OWASP_MINIMUM_MEMORY_KIB = 19456


class Clock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds


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
