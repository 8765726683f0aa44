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
