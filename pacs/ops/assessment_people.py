"""The web users as the assessment report lists them: roles, second factors, state, last login.

Second factors are the confirmed TOTP, the recovery codes left and the passkeys registered
(the ``passkeys`` table, where this version's index has it). The last login is the newest
successful login in the audit trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from pacs.core.audit import EventID, EventType, Outcome
from pacs.core.context import Context
from storage import models
from storage.models import AuditRecord, User


@dataclass(frozen=True)
class UserRow:
    """One user: who, roles, factors, state and the last login (empty: none recorded)."""

    name: str
    roles: str
    totp: bool
    recovery_codes_left: int
    passkeys: int | None
    disabled: bool
    must_change_password: bool
    last_login: str


def _last_logins(pacs: Context) -> dict[str, str]:
    """The newest successful login of each user, from the audit trail."""
    query = (
        select(AuditRecord.user_id, func.max(AuditRecord.recorded_at))
        .where(AuditRecord.event_id == str(EventID.USER_AUTHENTICATION))
        .where(AuditRecord.event_type == str(EventType.LOGIN))
        .where(AuditRecord.outcome == int(Outcome.SUCCESS))
        .group_by(AuditRecord.user_id)
    )
    with pacs.database.read() as session:
        return {user: when for user, when in session.execute(query)}


def _passkeys(pacs: Context) -> dict[str, int] | None:
    """Passkeys per user name, or None where the index has no passkeys table."""
    passkey = getattr(models, "Passkey", None)
    if passkey is None:
        return None
    query = select(User.name, func.count(passkey.id)).join(passkey, passkey.user_fk == User.id)
    try:
        with pacs.database.read() as session:
            return {name: count for name, count in session.execute(query.group_by(User.name))}
    except SQLAlchemyError:
        return None


def users(pacs: Context) -> list[UserRow]:
    """Every web user, by name."""
    logins = _last_logins(pacs)
    passkeys = _passkeys(pacs)
    with pacs.database.read() as session:
        found = list(session.scalars(select(User).order_by(User.name)))
        return [
            UserRow(
                name=user.name,
                roles=", ".join(sorted(r for r in user.roles.split(",") if r)),
                totp=user.totp_confirmed,
                recovery_codes_left=len(json.loads(user.recovery_codes or "[]")),
                passkeys=None if passkeys is None else passkeys.get(user.name, 0),
                disabled=user.disabled,
                must_change_password=user.must_change_password,
                last_login=logins.get(user.name, "")[:16].replace("T", " "),
            )
            for user in found
        ]
