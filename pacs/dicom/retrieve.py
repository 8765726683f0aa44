"""C-FIND, C-MOVE and C-GET: queries and retrieves over the archive's matching, each audited first.

Queries match with :mod:`storage.matching` at every level of the Patient and Study Root
models. A retrieve must name the unique key of its level (no wildcards) and matches
relationally on the keys given; C-MOVE sends only to an enrolled destination, over TLS,
never to an address the request names. No match and no object leaves before its audit
record is written (0xA700 otherwise), as :mod:`pacs.core.audit`'s policy says.
"""

from __future__ import annotations

import io
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.events import Event
from pynetdicom.status import Status

from pacs.core import access_events as events
from pacs.core.audit import AuditEvent
from pacs.core.nodes import EnrolledNode, NodeRegistry
from pacs.dicom import policy
from pacs.dicom.associations import STUDY_ROOT, AssociationState
from storage.archive import Archive, NotFoundError
from storage.crypto import IntegrityError
from storage.matching import LEVELS, QueryError

UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


class QueryRetrieve:
    """The query and retrieve handlers of one DICOM service (bound by ``DicomHandlers.bindings``)."""

    def __init__(
        self,
        archive: Archive,
        registry: NodeRegistry,
        *,
        ae_title: str,
        client_context: Callable[[EnrolledNode], ssl.SSLContext],
        permitted: Callable[[Event, str], AssociationState | None],
        audit_required: Callable[[AuditEvent], bool],
        refused: Callable[..., None],
    ) -> None:
        self.archive = archive
        self.registry = registry
        self.ae_title = ae_title
        self.client_context = client_context
        self._permitted = permitted
        self._audit_required = audit_required
        self._refused = refused

    def _level(self, event: Event, identifier: Dataset) -> str | None:
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in LEVELS:
            return None
        if level == "PATIENT" and str(event.request.AffectedSOPClassUID) in STUDY_ROOT:
            return None
        return level

    def _audit_query(self, state: AssociationState, identifier: Dataset, level: str, matches: int) -> bool:
        keys = {
            elem.keyword: str(elem.value)
            for elem in identifier
            if elem.keyword and elem.value not in (None, "")
        }
        return self._audit_required(
            events.query_run(
                by=state.node.ae_title,
                source=state.address,
                patient_id=str(identifier.get("PatientID", "") or ""),
                study_uid=str(identifier.get("StudyInstanceUID", "") or "")[:64],
                level=level,
                keys=keys,
                matches=matches,
            )
        )

    def on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        """C-FIND (Patient and Study Root, every level) with the archive's matching."""
        state = self._permitted(event, "find")
        if state is None:
            yield policy.NOT_AUTHORISED, None
            return
        identifier = event.identifier
        level = self._level(event, identifier)
        if level is None:
            yield policy.IDENTIFIER_DOES_NOT_MATCH, None
            return
        try:
            matches = self.archive.find(level, identifier)
        except QueryError:
            yield policy.IDENTIFIER_DOES_NOT_MATCH, None
            return
        if not self._audit_query(state, identifier, level, len(matches)):
            # No patient data leaves without its audit record.
            yield policy.OUT_OF_RESOURCES, None
            return
        for match in matches:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            if "RetrieveAETitle" in identifier:
                match.RetrieveAETitle = self.ae_title
            yield policy.PENDING, match

    @staticmethod
    def _names_entities(identifier: Dataset, level: str) -> bool:
        """Whether a retrieve gives the unique key of its level as one value or a UID list, no wildcards."""
        keyword = UNIQUE_KEYS[level]
        value = str(identifier.get(keyword, "") or "").strip()
        return bool(value) and "*" not in value and "?" not in value

    def _instances(self, identifier: Dataset) -> list[tuple[str, str, str]]:
        """(SOP Instance UID, SOP Class UID, transfer syntax) of every instance a retrieve names.

        Retrieves match relationally on the unique keys given, at any level.
        """
        keys = Dataset()
        for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
            if keyword in identifier:
                setattr(keys, keyword, identifier[keyword].value)
        keys.SOPInstanceUID = identifier.get("SOPInstanceUID", "")
        matches = [str(match.SOPInstanceUID) for match in self.archive.find("IMAGE", keys)]
        return [
            (i.sop_uid, i.sop_class_uid, i.transfer_syntax) for i in self.archive.current_instances(matches)
        ]

    def _send(
        self, event: Event, instances: list[tuple[str, str, str]]
    ) -> Iterator[tuple[int, Dataset | None]]:
        """The sub-operations of a retrieve: each object, until the requestor cancels."""
        for sop_uid, _, _ in instances:
            if event.is_cancelled:
                yield Status.CANCEL, None
                return
            try:
                yield policy.PENDING, self._load(sop_uid)
            except (NotFoundError, IntegrityError, OSError, ValueError):
                yield policy.PROCESSING_FAILURE, None

    def _load(self, sop_uid: str) -> Dataset:
        """One stored object as a dataset, to send in its own transfer syntax (in memory only)."""
        with self.archive.open(sop_uid) as stream:
            return pydicom.dcmread(io.BytesIO(stream.read()))

    def _audit_retrieve(
        self, state: AssociationState, kind: str, destination: str, instances: list[tuple[str, str, str]]
    ) -> bool:
        return self._audit_required(
            events.instances_retrieved(
                kind,
                by=state.node.ae_title,
                source=state.address,
                destination=destination,
                instances=len(instances),
            )
        )

    def on_move(self, event: Event) -> Iterator[Any]:
        """C-MOVE: send to enrolled destinations only, over TLS, never to an address the request names."""
        state = self._permitted(event, "move")
        destination = self.registry.get(event.move_destination or "")
        level = self._level(event, event.identifier)
        if (
            state is None
            or level is None
            or not self._names_entities(event.identifier, level)
            or destination is None
            or destination.port is None
            or destination.network.num_addresses != 1
        ):
            if state is not None:
                destination_ae = event.move_destination or ""
                self._refused(
                    state.node.ae_title, "C-MOVE refused", source=state.address, destination=destination_ae
                )
            yield None, None
            return
        instances = self._instances(event.identifier)
        contexts = [build_context(sop_class, [syntax]) for _, sop_class, syntax in instances]
        unique = {(cx.abstract_syntax, tuple(cx.transfer_syntax)): cx for cx in contexts}
        yield (
            str(destination.network.network_address),
            destination.port,
            {"contexts": list(unique.values())[:128], "tls_args": (self.client_context(destination), None)},
        )
        audited = self._audit_retrieve(state, "C-MOVE", destination.ae_title, instances)
        yield len(instances) if audited else 1
        if not audited:
            yield policy.OUT_OF_RESOURCES, None
            return
        yield from self._send(event, instances)

    def on_get(self, event: Event) -> Iterator[Any]:
        """C-GET: send the matching instances back over the same association."""
        state = self._permitted(event, "get")
        level = self._level(event, event.identifier) if state is not None else None
        if state is None or level is None or not self._names_entities(event.identifier, level):
            yield 1
            yield (policy.NOT_AUTHORISED if state is None else policy.IDENTIFIER_DOES_NOT_MATCH), None
            return
        instances = self._instances(event.identifier)
        if not self._audit_retrieve(state, "C-GET", state.node.ae_title, instances):
            yield 1
            yield policy.OUT_OF_RESOURCES, None
            return
        yield len(instances)
        yield from self._send(event, instances)
