"""The catalogue of audit events: one function per kind of event the archive records.

Each builds the :class:`~pacs.core.audit_vocabulary.AuditEvent` with its event ID, action,
event type, outcome and details, so a call site names what happened (``account_locked``,
``node_enrolled``, ``study_viewed``) and the records of one kind look alike wherever they are
written. `by` is who acted (a user, an AE title, ``pacs``), `source` where from (an address).
Tests and exports read these records, so their fields are part of the archive's contract.
The events of patient data moving (received, queried, viewed, sent) and of DICOM associations
are in :mod:`pacs.core.access_events`, the other half of the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pacs.core.audit_vocabulary import Action, AuditEvent, EventID, EventType, Outcome
from pacs.core.nodes import EnrolledNode, phi_grant

BACKUP_WHAT = "backup"
REANCHOR_WHAT = "audit anchor reset"
_USER = EventType.USER_SECURITY_ATTRIBUTES_CHANGED


def _alert(
    action: Action,
    event_type: EventType,
    *,
    by: str,
    source: str = "",
    outcome: Outcome = Outcome.SUCCESS,
    **details: Any,
) -> AuditEvent:
    return AuditEvent(
        EventID.SECURITY_ALERT,
        action,
        outcome=outcome,
        user_id=by,
        source=source,
        event_type=event_type,
        details=details,
    )


# -- the application -------------------------------------------------------------------------------


def application_started(*, by: str, details: Mapping[str, Any]) -> AuditEvent:
    """``pacs serve`` started (its ports and workers in `details`)."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY,
        Action.EXECUTE,
        user_id=by,
        event_type=EventType.APPLICATION_START,
        details=dict(details),
    )


def application_stopped(*, by: str) -> AuditEvent:
    """``pacs serve`` stopped."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY, Action.EXECUTE, user_id=by, event_type=EventType.APPLICATION_STOP
    )


def archive_initialised(*, by: str, ae_title: str, hostname: str, index: str) -> AuditEvent:
    """``pacs init`` created the archive (`index`: ``sqlcipher`` or ``postgresql``)."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY,
        Action.CREATE,
        user_id=by,
        event_type=EventType.SECURITY_CONFIGURATION,
        details={"what": "archive initialised", "ae_title": ae_title, "hostname": hostname, "index": index},
    )


def schema_migrated(*, by: str, old: str, new: str) -> AuditEvent:
    """The index schema was migrated from revision `old` to `new` (Alembic revision ids)."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY,
        Action.UPDATE,
        user_id=by,
        event_type=EventType.SOFTWARE_CONFIGURATION,
        details={"what": "index schema migrated", "from": old, "to": new},
    )


def selfcheck_run(*, by: str, findings: list[str]) -> AuditEvent:
    """``pacs selfcheck`` ran; a finding is a minor failure."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY,
        Action.EXECUTE,
        outcome=Outcome.MINOR_FAILURE if findings else Outcome.SUCCESS,
        user_id=by,
        event_type=EventType.SECURITY_CONFIGURATION,
        details={"what": "selfcheck", "findings": findings},
    )


def verify_run(*, by: str, ok: bool, **counts: int) -> AuditEvent:
    """``pacs verify`` ran: `counts` are checked, damaged, index_problems, reindexed, … (damage: serious)."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY,
        Action.EXECUTE,
        outcome=Outcome.SUCCESS if ok else Outcome.SERIOUS_FAILURE,
        user_id=by,
        event_type=EventType.SOFTWARE_CONFIGURATION,
        details={"what": "verify", **counts},
    )


def blob_sweep(
    *, by: str, why: str, incomplete_removed: int, duplicates_removed: int, unreadable_kept: list[str]
) -> AuditEvent:
    """A sweep of the blob store removed incomplete or duplicate blobs, or found unreadable ones."""
    return AuditEvent(
        EventID.APPLICATION_ACTIVITY,
        Action.EXECUTE,
        user_id=by,
        event_type=EventType.SOFTWARE_CONFIGURATION,
        details={
            "what": "blob sweep",
            "why": why,
            "incomplete_removed": incomplete_removed,
            "duplicates_removed": duplicates_removed,
            "unreadable_kept": unreadable_kept,
        },
    )


# -- the audit trail itself ------------------------------------------------------------------------


def audit_log_used(what: str, *, by: str, source: str = "", **details: Any) -> AuditEvent:
    """Someone read the audit trail (`what`: ``verify``, ``export``, ``audit log viewed``)."""
    return AuditEvent(
        EventID.AUDIT_LOG_USED, Action.READ, user_id=by, source=source, details={"what": what, **details}
    )


def audit_reanchored(*, by: str, acknowledged: list[str], records: list[int]) -> AuditEvent:
    """An admin acknowledged the chain's `acknowledged` problems at `records` and re-anchored it."""
    return _alert(
        Action.EXECUTE,
        EventType.SECURITY_CONFIGURATION,
        by=by,
        outcome=Outcome.MINOR_FAILURE,
        what=REANCHOR_WHAT,
        acknowledged=acknowledged,
        records=records,
    )


# -- users -----------------------------------------------------------------------------------------


def login_succeeded(user: str, *, source: str) -> AuditEvent:
    """`user` completed a login (password and second factor)."""
    return _login(user, EventType.LOGIN, Outcome.SUCCESS, source=source)


def login_failed(user: str, *, source: str, step: str, reason: str) -> AuditEvent:
    """A login step (``password``, ``totp``, ``recovery code``, ``totp enrolment``) failed for `reason`."""
    return _login(user, EventType.LOGIN, Outcome.MINOR_FAILURE, source=source, step=step, reason=reason)


def logout(user: str, *, source: str) -> AuditEvent:
    """`user` logged out."""
    return _login(user, EventType.LOGOUT, Outcome.SUCCESS, source=source)


def _login(user: str, event_type: EventType, outcome: Outcome, *, source: str, **details: Any) -> AuditEvent:
    return AuditEvent(
        EventID.USER_AUTHENTICATION,
        Action.EXECUTE,
        outcome=outcome,
        user_id=user,
        source=source,
        event_type=event_type,
        details=details,
    )


def account_locked(user: str, *, source: str, failures: int, lifts_after_minutes: int) -> AuditEvent:
    """The accounts service locked `user` after `failures` failed attempts, the last from `source`."""
    return _alert(
        Action.EXECUTE,
        _USER,
        by=user,
        source=source,
        outcome=Outcome.MINOR_FAILURE,
        what="account locked after repeated login failures",
        failures=failures,
        lifts=f"{lifts_after_minutes} minutes after the last failure, or with pacs user unlock",
        meanwhile="only the right password and code together log in",
    )


def user_changed(
    action: Action, user: str, what: str, *, by: str, source: str = "", roles: Iterable[str] | None = None
) -> AuditEvent:
    """`by` changed the account `user` (`what`: ``user created``, ``lockout lifted``, …), with its roles."""
    extra = {} if roles is None else {"roles": sorted(roles)}
    return _alert(action, _USER, by=by, source=source, what=what, user=user, **extra)


def second_factor_enrolled(user: str, *, source: str, recovery_codes: int) -> AuditEvent:
    """`user` enrolled TOTP at the first login and was given `recovery_codes` codes."""
    return _alert(
        Action.UPDATE,
        _USER,
        by=user,
        source=source,
        what="second factor enrolled",
        recovery_codes=recovery_codes,
    )


def password_changed(user: str, *, source: str) -> AuditEvent:
    """`user` changed their own password; their other sessions ended."""
    return _alert(
        Action.UPDATE, _USER, by=user, source=source, what="password changed", **{"other sessions": "ended"}
    )


def restricted_function_refused(by: str, what: str, *, source: str, **details: Any) -> AuditEvent:
    """`by` asked for something it may not do (a page of another role, a PHI grant, a DIMSE service)."""
    return _alert(
        Action.EXECUTE,
        EventType.USE_OF_RESTRICTED_FUNCTION,
        by=by,
        source=source,
        outcome=Outcome.MINOR_FAILURE,
        what=what,
        **details,
    )


# -- nodes -----------------------------------------------------------------------------------------


def node_changed(
    action: Action,
    node: EnrolledNode,
    what: str,
    *,
    by: str,
    authority: str = "",
    before: frozenset[str] | None = None,
) -> AuditEvent:
    """An enrolment change by `by`; one that adds find, move or get lists them as ``phi_grant``."""
    details: dict[str, Any] = {
        "what": what,
        "ae_title": node.ae_title,
        "host": str(node.network),
        "port": node.port,
        "permissions": sorted(node.permissions),
        "certificate": "issued" if node.cert_issued else "pinned",
        "fingerprint": node.fingerprint,
        "plaintext": node.plaintext,
    }
    if before is not None:
        details["before"] = sorted(before)
    granted = phi_grant(node.permissions, before or frozenset()) if action != Action.DELETE else []
    if granted:
        details["phi_grant"] = granted
        details["authority"] = authority
    return _alert(action, EventType.NETWORK_CONFIGURATION, by=by, **details)


def node_enrolled(node: EnrolledNode, *, by: str, authority: str) -> AuditEvent:
    """`node` was enrolled by `by` under `authority` (it names the PHI rights it granted)."""
    return node_changed(Action.CREATE, node, "node enrolled", by=by, authority=authority)


def node_rights_changed(before: EnrolledNode, after: EnrolledNode, *, by: str, authority: str) -> AuditEvent:
    """`by` changed a node's rights from `before`'s to `after`'s."""
    return node_changed(
        Action.UPDATE, after, "node rights changed", by=by, authority=authority, before=before.permissions
    )


def node_removed(node: EnrolledNode, *, by: str) -> AuditEvent:
    """`node` was removed by `by`."""
    return node_changed(Action.DELETE, node, "node removed", by=by)


# -- keys and certificates -------------------------------------------------------------------------


def _key_change(what: str, *, by: str, outcome: Outcome = Outcome.SUCCESS, **details: Any) -> AuditEvent:
    return _alert(
        Action.UPDATE, EventType.SECURITY_CONFIGURATION, by=by, outcome=outcome, what=what, **details
    )


def key_rotation_started(*, by: str, kek_version: int, pending: int) -> AuditEvent:
    """A new key-encryption key `kek_version` was made; `pending` data keys wait to be re-wrapped."""
    return _key_change("key rotation started", by=by, kek_version=kek_version, pending=pending)


def key_rotation_resumed(*, by: str, kek_version: int, pending: int) -> AuditEvent:
    """An unfinished rotation to `kek_version` goes on with `pending` data keys left."""
    return _key_change("key rotation resumed", by=by, kek_version=kek_version, pending=pending)


def key_rotation_interrupted(*, by: str, kek_version: int, error: str) -> AuditEvent:
    """Re-wrapping under `kek_version` stopped with `error` (a minor failure: it can be resumed)."""
    return _key_change(
        "key rotation interrupted", by=by, outcome=Outcome.MINOR_FAILURE, kek_version=kek_version, error=error
    )


def key_rotation_unfinished(*, by: str, kek_version: int, pending: int) -> AuditEvent:
    """Re-wrapping ended with `pending` data keys still under an older key."""
    return _key_change(
        "key rotation unfinished",
        by=by,
        outcome=Outcome.MINOR_FAILURE,
        kek_version=kek_version,
        pending=pending,
    )


def key_rotation_completed(*, by: str, kek_version: int, rewrapped: int) -> AuditEvent:
    """Every data key is wrapped under `kek_version` (`rewrapped` of them now)."""
    return _key_change("key rotation completed", by=by, kek_version=kek_version, rewrapped=rewrapped)


def certificate_renewed(*, by: str, hostname: str, not_after: str, fingerprint: str) -> AuditEvent:
    """The server certificate for `hostname` was renewed from the archive's CA."""
    return _key_change(
        "server certificate renewed", by=by, hostname=hostname, not_after=not_after, fingerprint=fingerprint
    )


# -- backups and exports ---------------------------------------------------------------------------


def backup_written(*, by: str, file: str, objects: int, size: int, snapshot_at: str) -> AuditEvent:
    """A backup of `objects` objects (`size` bytes, as of `snapshot_at`) was written to `file`."""
    return _backup(Outcome.SUCCESS, by=by, file=file, objects=objects, bytes=size, snapshot_at=snapshot_at)


def backup_failed(*, by: str, file: str, error: str) -> AuditEvent:
    """A backup to `file` failed with `error`."""
    return _backup(Outcome.SERIOUS_FAILURE, by=by, file=file, error=error)


def _backup(outcome: Outcome, *, by: str, **details: Any) -> AuditEvent:
    return AuditEvent(
        EventID.EXPORT, Action.READ, outcome=outcome, user_id=by, details={"what": BACKUP_WHAT, **details}
    )


def restore_done(*, by: str, ok: bool, file: str, backup_of: str, objects: int, damaged: int) -> AuditEvent:
    """A backup taken at `backup_of` was restored from `file`; damage found in it is a serious failure."""
    return AuditEvent(
        EventID.IMPORT,
        Action.CREATE,
        outcome=Outcome.SUCCESS if ok else Outcome.SERIOUS_FAILURE,
        user_id=by,
        event_type=EventType.SOFTWARE_CONFIGURATION,
        details={
            "what": "restore",
            "file": file,
            "backup_of": backup_of,
            "objects": objects,
            "damaged": damaged,
        },
    )


def export_done(
    *,
    by: str,
    patient_id: str,
    study_uid: str,
    instances: int,
    written: int,
    destination: str,
    original: bool = False,
) -> AuditEvent:
    """``pacs export`` wrote `written` of a study's `instances` objects (as received, with `original`)."""
    return AuditEvent(
        EventID.EXPORT,
        Action.READ,
        outcome=Outcome.SUCCESS if written == instances else Outcome.SERIOUS_FAILURE,
        user_id=by,
        patient_id=patient_id,
        study_uid=study_uid,
        details={
            "instances": instances,
            "written": written,
            "destination": destination,
            "original": original,
        },
    )
