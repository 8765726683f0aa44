"""The PHI grants in force: enrolled nodes that may find, move or get, and who granted each right.

A node with find, move or get reads every patient's data, so an auditor wants to see each
such grant next to the person who made it. The registry says what is in force; the audit
trail says who granted it: the newest enrolment record of the node (``node enrolled`` or
``node rights changed``) that added the right, never looking past the node's latest
enrolment. A right no record accounts for was granted behind the audit trail's back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pacs.core.audit import Action, AuditLog, EventID, EventType
from pacs.core.nodes import PHI_PERMISSIONS, EnrolledNode
from storage.models import AuditRecord

PAGE = 1000


@dataclass(frozen=True)
class Grantor:
    """Who granted a right, by what authority, and when (from the audit record)."""

    user: str
    authority: str
    recorded_at: str


@dataclass
class PhiGrant:
    """A node's rights to patient data and, for each, who granted it (absent: no audit record)."""

    node: EnrolledNode
    rights: list[str]
    grantors: dict[str, Grantor] = field(default_factory=dict)

    @property
    def unrecorded(self) -> list[str]:
        """The rights no audit record accounts for."""
        return [right for right in self.rights if right not in self.grantors]

    def provenance(self) -> str:
        """Who granted which right, e.g. ``find,get granted by chief (admin and physician (web)) on DATE``."""
        by: dict[Grantor, list[str]] = {}
        for right, grantor in sorted(self.grantors.items()):
            by.setdefault(grantor, []).append(right)
        return "; ".join(
            f"{','.join(rights)} granted by {g.user}"
            + (f" ({g.authority})" if g.authority else "")
            + f" on {g.recorded_at[:10]}"
            for g, rights in by.items()
        )


def _added_rights(record: AuditRecord, details: dict[str, Any]) -> list[str]:
    """The PHI rights this enrolment record granted (older records carry no ``phi_grant``)."""
    if "phi_grant" in details:
        return [str(r) for r in details["phi_grant"]]
    permissions = {str(p) for p in details.get("permissions", [])}
    if record.action == str(Action.CREATE):
        return sorted(permissions & PHI_PERMISSIONS)
    before = {str(p) for p in details.get("before", [])}
    return sorted((permissions - before) & PHI_PERMISSIONS)


def _enrolment_records(audit: AuditLog) -> Iterator[tuple[AuditRecord, dict[str, Any]]]:
    """Enrolments and changes of rights, newest first."""
    offset = 0
    while records := audit.search(event_id=str(EventID.SECURITY_ALERT), limit=PAGE, offset=offset):
        for record in records:
            if record.event_type == str(EventType.NETWORK_CONFIGURATION) and record.action in (
                str(Action.CREATE),
                str(Action.UPDATE),
            ):
                yield record, json.loads(record.details)
        offset += PAGE


def phi_grants(nodes: list[EnrolledNode], audit: AuditLog) -> list[PhiGrant]:
    """Every node of `nodes` with find, move or get, with the grantor of each right, by AE title."""
    grants = {
        node.ae_title: PhiGrant(node, sorted(node.permissions & PHI_PERMISSIONS))
        for node in nodes
        if node.permissions & PHI_PERMISSIONS
    }
    open_ = {ae for ae, grant in grants.items() if grant.unrecorded}
    for record, details in _enrolment_records(audit):
        if not open_:
            break
        ae_title = str(details.get("ae_title", ""))
        if ae_title not in open_:
            continue
        grant = grants[ae_title]
        grantor = Grantor(record.user_id, str(details.get("authority", "")), record.recorded_at)
        for right in _added_rights(record, details):
            if right in grant.rights:
                grant.grantors.setdefault(right, grantor)
        if record.action == str(Action.CREATE) or not grant.unrecorded:
            open_.discard(ae_title)
    return list(grants.values())
