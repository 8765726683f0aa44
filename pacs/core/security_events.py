"""The audit events of the security controls beyond the anchors: passkeys, trusted networks and alerts.

The fourth part of the catalogue beside :mod:`pacs.core.events`, :mod:`pacs.core.access_events`
and :mod:`pacs.core.care_events`. `by` is who acted (a user, ``pacs``), `source` where from.
"""

from __future__ import annotations

from typing import Any

from pacs.core.audit_vocabulary import Action, AuditEvent, EventID, EventType, Outcome


def network_refused(*, source: str, what: str, **details: Any) -> AuditEvent:
    """A request from `source`, outside the networks allowed for `what` (the web, a token), was refused."""
    return AuditEvent(
        EventID.SECURITY_ALERT,
        Action.EXECUTE,
        outcome=Outcome.MINOR_FAILURE,
        source=source,
        event_type=EventType.NODE_AUTHENTICATION,
        details={"what": f"{what} refused: address not allowed", **details},
    )


def _passkey(action: Action, user: str, what: str, *, source: str, **details: Any) -> AuditEvent:
    return AuditEvent(
        EventID.SECURITY_ALERT,
        action,
        outcome=Outcome.SUCCESS,
        user_id=user,
        source=source,
        event_type=EventType.USER_SECURITY_ATTRIBUTES_CHANGED,
        details={"what": what, "user": user, **details},
    )


def passkey_registered(user: str, *, source: str, passkey: str, passkey_id: int, aaguid: str) -> AuditEvent:
    """`user` registered a passkey named `passkey` (its row `passkey_id`, its authenticator's `aaguid`)."""
    return _passkey(
        Action.CREATE,
        user,
        "passkey registered",
        source=source,
        passkey=passkey,
        id=passkey_id,
        aaguid=aaguid,
    )


def passkey_renamed(user: str, *, source: str, passkey_id: int, old: str, new: str) -> AuditEvent:
    """`user` renamed their passkey `passkey_id` from `old` to `new`."""
    return _passkey(Action.UPDATE, user, "passkey renamed", source=source, id=passkey_id, old=old, new=new)


def passkey_removed(user: str, *, source: str, passkey_id: int, passkey: str) -> AuditEvent:
    """`user` removed their passkey `passkey` (row `passkey_id`); it no longer logs in."""
    return _passkey(Action.DELETE, user, "passkey removed", source=source, id=passkey_id, passkey=passkey)


def passkey_registration_failed(user: str, *, source: str, reason: str) -> AuditEvent:
    """A passkey `user` offered for registration was refused for `reason`."""
    return AuditEvent(
        EventID.SECURITY_ALERT,
        Action.CREATE,
        outcome=Outcome.MINOR_FAILURE,
        user_id=user,
        source=source,
        event_type=EventType.USER_SECURITY_ATTRIBUTES_CHANGED,
        details={"what": "passkey registration refused", "user": user, "reason": reason},
    )


def passkey_login_succeeded(user: str, *, source: str, passkey: str, passkey_id: int) -> AuditEvent:
    """`user` completed a login with the password and the passkey `passkey` (row `passkey_id`)."""
    return AuditEvent(
        EventID.USER_AUTHENTICATION,
        Action.EXECUTE,
        outcome=Outcome.SUCCESS,
        user_id=user,
        source=source,
        event_type=EventType.LOGIN,
        details={"factor": "passkey", "passkey": passkey, "id": passkey_id},
    )


def alert_delivery_failed(*, channel: str, alert_id: int, kind: str, attempts: int, error: str) -> AuditEvent:
    """Alert `alert_id` (of `kind`) was not delivered by `channel` (mail, syslog) in `attempts` attempts."""
    return AuditEvent(
        EventID.SECURITY_ALERT,
        Action.EXECUTE,
        outcome=Outcome.SERIOUS_FAILURE,
        user_id="pacs",
        details={
            "what": f"alert not delivered by {channel}",
            "alert": alert_id,
            "kind": kind,
            "attempts": attempts,
            "error": error,
        },
    )


def assessment_written(*, by: str, findings: list[str], sha256: str, formats: list[str]) -> AuditEvent:
    """A security assessment report (``pacs selfcheck --report``) was written: its hash, its findings."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY,
        Action.CREATE,
        outcome=Outcome.MINOR_FAILURE if findings else Outcome.SUCCESS,
        user_id=by,
        event_type=EventType.SECURITY_CONFIGURATION,
        details={"what": "assessment report", "findings": findings, "sha256": sha256, "formats": formats},
    )
