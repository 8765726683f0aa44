"""Login throttling: failure counters of accounts and addresses, each decision taken in the index database.

Three counters see every failed password or second-factor code: the account's (``user:NAME``, from
anywhere), the address's (``addr:IP``, for any account; IPv6 by /64) and the account's at that
address (``pair:NAME|IP``).

- The pair waits after :data:`ACCOUNT_FREE_FAILURES`, the address after :data:`ADDRESS_FREE_FAILURES`:
  1 s, then twice as long after each further failure, up to :data:`MAX_BACKOFF`. An attempt from a
  waiting pair or address is refused at once, without a hash.
- The account locks at :data:`LOCKOUT_AFTER` failures. The account counter never makes anyone wait, so
  an attacker cannot lock the clinic out: while the account is locked, a password step no longer says
  whether the password was right, and only the right password *and* code together log in
  (:class:`pacs.core.accounts.PasswordCheck`).
- A counter is forgotten :data:`LOCKOUT_PERIOD` after its last failure's wait ends (the lock with
  it), at a completed login (the pair's and the address's), or at an unlock (the account's and its pairs').

An attempt is admitted in one write transaction holding the rows of its three counters (``SELECT ...
FOR UPDATE`` on PostgreSQL; on SQLite the writer lock and ``BEGIN IMMEDIATE``), and is counted there as
in flight. Until settled, an attempt in flight counts as a failure, so parallel attempts in any thread or
process cannot all pass a check that none of them has counted yet. One never settled (its process died)
stops counting after :data:`PENDING_TTL`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.db import as_utc
from storage.models import LoginThrottle

ACCOUNT_FREE_FAILURES, ADDRESS_FREE_FAILURES = 3, 10
LOCKOUT_AFTER = 10
MAX_BACKOFF = timedelta(minutes=15)
LOCKOUT_PERIOD = timedelta(hours=1)
PENDING_TTL = timedelta(minutes=1)


def _address_key(address: str) -> str:
    """The address as counted: IPv4 as it is, IPv6 by its /64 (one subscriber's whole network)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Keys:
    """The three counters an attempt of `name` from `address` touches."""

    account: str
    address: str
    pair: str

    @classmethod
    def of(cls, name: str, address: str) -> Keys:
        """The counters of `name` (any text, existing or not) trying from `address`."""
        where = _address_key(address)
        return cls(f"user:{name}", f"addr:{where}", f"pair:{name}|{where}")

    def all(self) -> list[str]:
        """Every key, in the order their rows are locked."""
        return sorted((self.account, self.address, self.pair))

    def free(self, key: str) -> int | None:
        """How many failures of `key` pass before it waits (None: it never waits)."""
        if key == self.pair:
            return ACCOUNT_FREE_FAILURES
        return ADDRESS_FREE_FAILURES if key == self.address else None


@dataclass(frozen=True)
class Admission:
    """An attempt let through: it is in flight until :func:`settle`."""

    keys: Keys
    locked: bool


def backoff(failures: int, free: int | None) -> timedelta:
    """No wait for the first `free` - 1 failures; then 1 s, doubling up to :data:`MAX_BACKOFF`."""
    if free is None or failures < free:
        return timedelta(0)
    return min(timedelta(seconds=2 ** min(failures - free, 20)), MAX_BACKOFF)


def _forgotten(row: LoginThrottle, now: datetime) -> bool:
    return as_utc(row.retry_at) + LOCKOUT_PERIOD <= now


def _lock_rows(session: Session, keys: list[str], now: datetime) -> dict[str, LoginThrottle]:
    """The rows of `keys`, created if missing, locked until the transaction ends, stale parts dropped."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    new = [{"key": key, "failures": 0, "pending": 0, "retry_at": now} for key in keys]
    session.execute(insert(LoginThrottle).values(new).on_conflict_do_nothing(index_elements=["key"]))
    rows = session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.key.in_(keys))
        .order_by(LoginThrottle.key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for row in rows:
        if row.pending and (row.pending_until is None or as_utc(row.pending_until) <= now):
            row.pending, row.pending_until = 0, None
        if row.failures and _forgotten(row, now):
            row.failures = 0
    return {row.key: row for row in rows}


def admit(session: Session, name: str, address: str, now: datetime) -> Admission | None:
    """Let an attempt of `name` from `address` through and count it in flight, or None: it must wait.

    The admission says whether the account is locked, counting the attempts in flight as failures.
    """
    keys = Keys.of(name, address)
    rows = _lock_rows(session, keys.all(), now)
    for key, free in ((keys.pair, ACCOUNT_FREE_FAILURES), (keys.address, ADDRESS_FREE_FAILURES)):
        row = rows[key]
        if now < as_utc(row.retry_at) or (row.pending and row.failures + row.pending >= free):
            return None
    account = rows[keys.account]
    locked = account.failures + account.pending >= LOCKOUT_AFTER
    for row in rows.values():
        row.pending += 1
        row.pending_until = now + PENDING_TTL
    return Admission(keys, locked)


def settle(session: Session, keys: Keys, now: datetime, *, failed: bool, admitted: bool = True) -> bool:
    """End an attempt (`admitted`: one in flight); return True if its failure locked the account."""
    rows = _lock_rows(session, keys.all(), now)
    for key, row in rows.items():
        if admitted and row.pending:
            row.pending -= 1
        if failed:
            row.failures += 1
            row.retry_at = now + backoff(row.failures, keys.free(key))
    return failed and rows[keys.account].failures == LOCKOUT_AFTER


def wait(session: Session, name: str, address: str, now: datetime) -> float:
    """Seconds until `name` may try again from `address` (0: now)."""
    keys = Keys.of(name, address)
    rows = session.scalars(
        select(LoginThrottle).where(LoginThrottle.key.in_([keys.pair, keys.address]))
    ).all()
    return max([0.0, *((as_utc(row.retry_at) - now).total_seconds() for row in rows)])


def locked(session: Session, names: list[str], now: datetime) -> set[str]:
    """Those of `names` whose account is locked now."""
    rows = session.scalars(
        select(LoginThrottle).where(
            LoginThrottle.key.in_([f"user:{name}" for name in names]),
            LoginThrottle.failures >= LOCKOUT_AFTER,
        )
    ).all()
    return {row.key.removeprefix("user:") for row in rows if not _forgotten(row, now)}


def unlock(session: Session, name: str, now: datetime) -> bool:
    """Forget the failures of account `name` from anywhere; return whether it was locked."""
    was_locked = bool(locked(session, [name], now))
    session.execute(
        delete(LoginThrottle).where(
            or_(
                LoginThrottle.key == f"user:{name}",
                LoginThrottle.key.startswith(f"pair:{name}|", autoescape=True),
            )
        )
    )
    return was_locked


def forget(session: Session, name: str, address: str, now: datetime) -> None:
    """After a completed login: forget the failures of `name` at `address` and of `address`.

    The account's own count stays (an attacker's failures from elsewhere are not undone by the
    user's login), and counters nobody used for :data:`LOCKOUT_PERIOD` are pruned.
    """
    keys = Keys.of(name, address)
    session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_([keys.pair, keys.address])))
    session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.retry_at <= now - LOCKOUT_PERIOD, LoginThrottle.pending == 0
        )
    )
