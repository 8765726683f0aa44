"""The catalogue of audit events, second half: patient data moving, and DICOM associations.

Objects received (by C-STORE, ``pacs import`` or a re-index), queries, studies viewed or
downloaded, retrieves sent, and the associations and connections of DICOM nodes: who, from
where, which patient and study. :mod:`pacs.core.events` holds the rest (the application,
users, nodes, keys, backups); the same conventions hold (`by` acted, from `source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pacs.core.audit_vocabulary import Action, AuditEvent, EventID, EventType, Outcome
from storage.archive import StoreResult

RECEIVING = "receiving objects of this study; the counts follow when the association ends"
NEW_VERSION = "an object with a stored SOP Instance UID but other content was kept as a new version"


# -- objects received ------------------------------------------------------------------------------


def instances_stored(
    event_id: EventID,
    *,
    by: str,
    source: str = "",
    patient_id: str,
    study_uid: str,
    counts: dict[str, int],
    **details: Any,
) -> AuditEvent:
    """A study received objects (`counts`: stored, duplicates, new_versions) by `event_id`'s way in."""
    return AuditEvent(
        event_id,
        Action.CREATE,
        user_id=by,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={**counts, **details},
    )


def new_version_kept(event_id: EventID, result: StoreResult, *, by: str, source: str = "") -> AuditEvent:
    """An object with a stored SOP Instance UID but other content was kept as a new version."""
    return AuditEvent(
        event_id,
        Action.UPDATE,
        user_id=by,
        source=source,
        patient_id=result.patient_id,
        study_uid=result.study_uid,
        details={
            "what": NEW_VERSION,
            "sop_instance_uid": result.sop_uid,
            "version": result.version,
            "sha256": result.sha256,
        },
    )


def study_receiving(*, by: str, source: str, patient_id: str, study_uid: str) -> AuditEvent:
    """An association began delivering a study (written before its first object is acknowledged)."""
    return AuditEvent(
        EventID.INSTANCES_TRANSFERRED,
        Action.CREATE,
        user_id=by,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={"what": RECEIVING},
    )


def objects_refused(refused: int, *, by: str, source: str) -> AuditEvent:
    """An association ended with `refused` objects not stored."""
    return AuditEvent(
        EventID.INSTANCES_TRANSFERRED,
        Action.CREATE,
        outcome=Outcome.MINOR_FAILURE,
        user_id=by,
        source=source,
        details={"refused_objects": refused},
    )


def import_failures(failed: int, *, by: str) -> AuditEvent:
    """An import ended with `failed` files not stored."""
    return AuditEvent(
        EventID.IMPORT,
        Action.CREATE,
        outcome=Outcome.MINOR_FAILURE,
        user_id=by,
        details={"failed_files": failed},
    )


# -- patient data read -----------------------------------------------------------------------------


def query_run(
    *, by: str, source: str, patient_id: str = "", study_uid: str = "", **details: Any
) -> AuditEvent:
    """A query (a C-FIND with its level, keys and matches; the web study list with its keys)."""
    return AuditEvent(
        EventID.QUERY,
        Action.EXECUTE,
        user_id=by,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details=details,
    )


def study_viewed(user: str, *, source: str, patient_id: str, study_uid: str, how: str) -> AuditEvent:
    """`user` opened a study (`how`: ``viewer`` or ``dicomweb``)."""
    return AuditEvent(
        EventID.INSTANCES_ACCESSED,
        Action.READ,
        user_id=user,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={"what": "study opened", "how": how},
    )


def study_downloaded(
    user: str, *, source: str, patient_id: str, study_uid: str, instances: int, how: str = "as ZIP"
) -> AuditEvent:
    """`user` downloaded `instances` objects of a study (`how`: as the viewer's ZIP, or over WADO-RS)."""
    return AuditEvent(
        EventID.EXPORT,
        Action.READ,
        user_id=user,
        source=source,
        patient_id=patient_id,
        study_uid=study_uid,
        details={"what": f"study downloaded {how}", "instances": instances},
    )


def instances_retrieved(kind: str, *, by: str, source: str, destination: str, instances: int) -> AuditEvent:
    """A C-MOVE or C-GET (`kind`) of `by` sends `instances` objects to `destination`."""
    return AuditEvent(
        EventID.INSTANCES_TRANSFERRED,
        Action.READ,
        user_id=by,
        source=source,
        details={"what": kind, "destination": destination, "instances": instances},
    )


# -- associations and connections ------------------------------------------------------------------


def _node_authentication(by: str, source: str, outcome: Outcome, details: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        EventID.SECURITY_ALERT,
        Action.EXECUTE,
        outcome=outcome,
        user_id=by,
        source=source,
        event_type=EventType.NODE_AUTHENTICATION,
        details=details,
    )


def association_accepted(calling: str, *, source: str, details: Mapping[str, Any]) -> AuditEvent:
    """The association of `calling` from `source` was accepted (with the policy's `details`)."""
    return _node_authentication(calling, source, Outcome.SUCCESS, {**details, "what": "association accepted"})


def association_ended(node: str, *, source: str, reason: str) -> AuditEvent:
    """An open association of `node` was ended because its enrolment changed (`reason`)."""
    details = {"what": "association ended by an enrolment change", "reason": reason}
    return _node_authentication(node, source, Outcome.MINOR_FAILURE, details)


def connection_failed(source: str, what: str, details: Mapping[str, Any], *, by: str = "") -> AuditEvent:
    """A connection from `source` failed (`what`: a refused association, a failed TLS handshake, …)."""
    return _node_authentication(by, source, Outcome.MINOR_FAILURE, {**details, "what": what})


def connection_failures(source: str, *, refused_at_accept: int, **details: Any) -> AuditEvent:
    """The failures of `source` in one window, aggregated; connections refused at accept make it serious."""
    outcome = Outcome.SERIOUS_FAILURE if refused_at_accept else Outcome.MINOR_FAILURE
    details = {"what": "repeated connection failures", "refused_at_accept": refused_at_accept, **details}
    return _node_authentication("", source, outcome, details)


# -- personal access tokens ------------------------------------------------------------------------


def token_changed(
    action: Action, what: str, *, by: str, source: str, owner: str, token: Mapping[str, Any]
) -> AuditEvent:
    """`by` created or revoked (`what`) a personal access token of `owner` (`token`: its name, prefix, …)."""
    return AuditEvent(
        EventID.SECURITY_ALERT,
        action,
        user_id=by,
        source=source,
        event_type=EventType.USER_SECURITY_ATTRIBUTES_CHANGED,
        details={"what": what, "owner": owner, **token},
    )


def token_used(user: str, *, source: str, token: Mapping[str, Any]) -> AuditEvent:
    """A DICOMweb client authenticated as `user` with a token (its first use from `source` in a while)."""
    return AuditEvent(
        EventID.USER_AUTHENTICATION,
        Action.EXECUTE,
        user_id=user,
        source=source,
        event_type=EventType.LOGIN,
        details={"what": "access token accepted", **token},
    )


def token_refused(
    user: str, *, source: str, reason: str, restricted: bool = False, **details: Any
) -> AuditEvent:
    """A request with a token was refused for `reason` (`restricted`: a valid token outside its scope)."""
    return AuditEvent(
        EventID.SECURITY_ALERT,
        Action.EXECUTE,
        outcome=Outcome.MINOR_FAILURE,
        user_id=user,
        source=source,
        event_type=EventType.USE_OF_RESTRICTED_FUNCTION if restricted else EventType.NODE_AUTHENTICATION,
        details={"what": "access token refused", "reason": reason, **details},
    )
