"""Personal access tokens for DICOMweb clients: scoped, expiring, stored as hashes, revocable, audited.

A user who completed a login creates a token (:meth:`Tokens.create`): a name, the scopes
``read`` or ``read`` and ``store``, an expiry of :data:`DEFAULT_DAYS` (at most :data:`MAX_DAYS`).
Its secret (:data:`PREFIX` and 32 random bytes) is returned once; the index keeps its SHA-256
and the first :data:`SHOWN` characters, to tell tokens apart in lists. :meth:`Tokens.verify`
admits a secret from an address for a scope, or refuses it with a reason: unknown, expired,
revoked, a disabled or locked account, one without the physician role, an address outside the
configured networks, a scope not granted. Everything is audited here, where it is decided:
creation and revocation, every refusal (a Security Alert), and the use of a token as a
User Authentication record the first time it comes from an address and then at most every
:data:`USE_RECORD_EVERY` (its last use and address are kept in the index as often). The study
accesses of a token are audited by the web front-end, the first of each token and study
within :data:`STUDY_RECORD_EVERY` (:meth:`Tokens.accessed_recently`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs.core.access_events import token_changed, token_refused, token_used
from pacs.core.accounts import Account, Accounts
from pacs.core.audit import Action, AuditLog
from storage.db import Database, as_utc
from storage.errors import PacsError
from storage.models import AccessToken, User

PREFIX = "pacs_"
SCOPES = ("read", "store")
DEFAULT_DAYS = 90
MAX_DAYS = 365
SHOWN = 12
USE_RECORD_EVERY = timedelta(minutes=5)
STUDY_RECORD_EVERY = timedelta(minutes=15)
_REMEMBERED_ACCESSES = 10_000
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenError(PacsError):
    """A token request that cannot be carried out (bad name, scopes or expiry; not the caller's token)."""


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown of a token: never its secret."""

    id: int
    user: str
    name: str
    scopes: frozenset[str]
    prefix: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    last_used_from: str | None
    revoked_at: datetime | None
    revoked_by: str | None

    def state(self, now: datetime) -> str:
        """``revoked``, ``expired`` or ``active`` at `now`."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"

    def summary(self) -> dict[str, Any]:
        """The token as its audit records name it."""
        return _summary(self.prefix, self.name, self.scopes, self.expires_at)


def _summary(prefix: str, name: str, scopes: frozenset[str], expires: datetime) -> dict[str, Any]:
    granted = ",".join(s for s in SCOPES if s in scopes)
    return {"token": prefix, "token name": name, "scopes": granted, "expires": expires.isoformat()}


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of :meth:`Tokens.verify`: the account and token, or the reason of a refusal."""

    account: Account | None = None
    token: TokenInfo | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether the token was admitted."""
        return not self.reason and self.account is not None


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which the index keeps `secret`."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    """Whether `value` has the form of a token secret (to refuse one that arrives in a URL)."""
    return value.startswith(PREFIX) and len(value) >= len(PREFIX) + 32


def _info(row: AccessToken, user: str) -> TokenInfo:
    def maybe(moment: datetime | None) -> datetime | None:
        return as_utc(moment) if moment is not None else None

    return TokenInfo(
        id=row.id,
        user=user,
        name=row.name,
        scopes=frozenset(s for s in row.scopes.split(",") if s),
        prefix=row.prefix,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at),
        last_used_at=maybe(row.last_used_at),
        last_used_from=row.last_used_from,
        revoked_at=maybe(row.revoked_at),
        revoked_by=row.revoked_by,
    )


def check_request(name: str, scopes: Iterable[str], days: int) -> tuple[str, frozenset[str]]:
    """The cleaned name and scopes of a new token; :class:`TokenError` naming what is wrong."""
    name = name.strip()
    if not 1 <= len(name) <= 64 or not name.isprintable():
        raise TokenError("a token's name is 1 to 64 printable characters")
    granted = frozenset(scopes)
    if granted not in ({"read"}, {"read", "store"}):
        raise TokenError("a token's scopes are read, or read and store")
    if not 1 <= days <= MAX_DAYS:
        raise TokenError(f"a token expires after 1 to {MAX_DAYS} days")
    return name, granted


class Tokens:
    """The personal access tokens of one archive; `networks` (empty: any) are where tokens may come from."""

    def __init__(
        self,
        database: Database,
        accounts: Accounts,
        audit: AuditLog,
        *,
        networks: tuple[Network, ...] = (),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self._accounts = accounts
        self._audit = audit
        self._networks = networks
        self._now = now
        self._accessed: OrderedDict[tuple[int, str], datetime] = OrderedDict()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The service's clock (what expiry is measured against)."""
        return self._now()

    @property
    def networks(self) -> tuple[Network, ...]:
        """The networks tokens are admitted from (empty: any address)."""
        return self._networks

    def create(
        self, user: str, name: str, scopes: Iterable[str], days: int = DEFAULT_DAYS, *, source: str = ""
    ) -> tuple[TokenInfo, str]:
        """A new token of `user` and its secret, which is not kept and cannot be shown again."""
        name, granted = check_request(name, scopes, days)
        account = self._accounts.get(user)
        if account is None or account.disabled or not account.is_physician:
            raise TokenError("only an enabled physician's account can have tokens: they read images")
        secret = PREFIX + secrets.token_urlsafe(32)
        now = self._now()
        row = AccessToken(
            name=name,
            scopes=",".join(s for s in SCOPES if s in granted),
            secret_sha256=digest(secret),
            prefix=secret[:SHOWN],
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
        summary = _summary(row.prefix, name, granted, row.expires_at)
        # No token without its record: the record comes first.
        what = "access token created"
        self._audit.append(
            token_changed(Action.CREATE, what, by=user, source=source, owner=user, token=summary)
        )
        with self._database.write() as session:
            row.user_fk = session.scalars(select(User.id).where(User.name == user)).one()
            session.add(row)
            session.flush()
            return _info(row, user), secret

    def _select(self, session: Session, *where: Any) -> list[TokenInfo]:
        query = select(AccessToken, User.name).join(User, AccessToken.user_fk == User.id).where(*where)
        rows = session.execute(query.order_by(AccessToken.created_at.desc(), AccessToken.id.desc())).all()
        return [_info(row, user) for row, user in rows]

    def of_user(self, user: str) -> list[TokenInfo]:
        """The tokens of `user`, newest first (revoked and expired ones too)."""
        with self._database.read() as session:
            return self._select(session, User.name == user)

    def all(self) -> list[TokenInfo]:
        """Every user's tokens, newest first (for admins)."""
        with self._database.read() as session:
            return self._select(session)

    def revoke(self, token_id: int, *, by: str, source: str = "", as_admin: bool = False) -> TokenInfo:
        """Revoke a token of `by` (or anyone's, `as_admin`); revoking a revoked token changes nothing."""
        with self._database.write() as session:
            found = self._select(session, AccessToken.id == token_id)
            if not found or not (as_admin or found[0].user == by):
                raise TokenError(f"no token {token_id} of yours")
            if found[0].revoked_at is not None:
                return found[0]
            row = session.get(AccessToken, token_id)
            assert row is not None
            row.revoked_at, row.revoked_by = self._now(), by
            info = _info(row, found[0].user)
        # A revocation protects, so it stands even if its record cannot be written (that is logged).
        what = "access token revoked"
        self._audit.append_after(
            token_changed(Action.DELETE, what, by=by, source=source, owner=info.user, token=info.summary())
        )
        return info

    def verify(self, secret: str, address: str, *, scope: str = "read", path: str = "") -> TokenCheck:
        """Admit `secret` from `address` for `scope`, or refuse it (audited) with the reason."""
        now = self._now()
        with self._database.read() as session:
            found = self._select(session, AccessToken.secret_sha256 == digest(secret))
        if not found:
            return self._refuse("", address, "unknown token", path=path)
        token = found[0]
        account = self._accounts.get(token.user)
        reason = self._reason(token, account, address, now)
        if reason:
            return self._refuse(token.user, address, reason, token=token, path=path)
        if scope not in token.scopes:
            return self._refuse(
                token.user, address, f"scope {scope} not granted", token=token, path=path, restricted=True
            )
        self._note_use(token, address, now)
        return TokenCheck(account, token)

    def _reason(self, token: TokenInfo, account: Account | None, address: str, now: datetime) -> str:
        """Why `token` may not be used now from `address` ("" if it may)."""
        state = token.state(now)
        if state != "active":
            return f"token {state}"
        if account is None or account.disabled:
            return "account disabled"
        if account.locked:
            return "account locked"
        if not account.is_physician:
            return "account without the physician role"
        if not self.admits(address):
            return "address outside the networks tokens may come from"
        return ""

    def admits(self, address: str) -> bool:
        """Whether tokens may come from `address`."""
        if not self._networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def _refuse(
        self, user: str, address: str, reason: str, *, token: TokenInfo | None = None, **details: Any
    ) -> TokenCheck:
        about = token.summary() if token is not None else {}
        self._audit.append_after(token_refused(user, source=address, reason=reason, **about, **details))
        return TokenCheck(token=token, reason=reason)

    def refuse_in_url(self, parameter: str, *, source: str, path: str) -> None:
        """Audit a token sent in a URL query (`parameter`), which is refused wherever it comes from."""
        self._refuse("", source, "token in a URL query", parameter=parameter, path=path)

    def _note_use(self, token: TokenInfo, address: str, now: datetime) -> None:
        """Audit and keep the use of `token` if it is its first from `address` in a while."""
        last = token.last_used_at
        if last is not None and token.last_used_from == address and now - last < USE_RECORD_EVERY:
            return
        self._audit.append(token_used(token.user, source=address, token=token.summary()))
        with self._database.write() as session:
            row = session.get(AccessToken, token.id)
            if row is not None:
                row.last_used_at, row.last_used_from = now, address[:64]

    def accessed_recently(self, token_id: int, study_uid: str) -> bool:
        """Whether `token_id`'s access to `study_uid` was noted in the last :data:`STUDY_RECORD_EVERY`."""
        with self._lock:
            seen = self._accessed.get((token_id, study_uid))
        return seen is not None and self._now() - seen < STUDY_RECORD_EVERY

    def note_access(self, token_id: int, study_uid: str) -> None:
        """Note that `token_id`'s access to `study_uid` is in the audit trail now."""
        key = (token_id, study_uid)
        with self._lock:
            self._accessed[key] = self._now()
            self._accessed.move_to_end(key)
            while len(self._accessed) > _REMEMBERED_ACCESSES:
                self._accessed.popitem(last=False)
