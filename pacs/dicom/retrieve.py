"""C-FIND, C-MOVE and C-GET: queries and retrieves over the archive's matching, each audited first.

Queries match with :mod:`storage.matching` at every level of the Patient and Study Root
models. A retrieve must name the unique key of its level (no wildcards) and matches
relationally on the keys given; C-MOVE sends only to an enrolled destination, over TLS,
never to an address the request names. No match and no object leaves before its audit
record is written (0xA700 otherwise), as :mod:`pacs.core.audit`'s policy says.

Each object goes out in its stored transfer syntax when the receiver accepted it, streamed
from the archive (:mod:`pacs.dicom.sending`); otherwise transcoded to Explicit or Implicit
VR Little Endian (:mod:`pacs.ops.transcode`, in memory; each frame is checked against
``[dicom] max_frame_mb`` and its stream's own header before it is decoded). C-MOVE
proposes, per SOP class and stored syntax, that syntax, Explicit and Implicit VR Little
Endian (one context per SOP class when those pairs exceed 128). A sub-operation that cannot
be done (no context, no decoder, a frame that may not be decoded) fails, 0xA702 or 0xB000
with the reason in Error Comment; 0xA801 means an unknown destination.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID
from pynetdicom import build_context
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import Status

from pacs.core import access_events as events
from pacs.core.audit import AuditEvent
from pacs.core.nodes import EnrolledNode, NodeRegistry
from pacs.dicom import policy, sending, streaming
from pacs.dicom.associations import STUDY_ROOT, AssociationState
from pacs.ops.decodelimits import FrameLimit
from pacs.ops.transcode import UNCOMPRESSED, TranscodeError, target_syntax, transcode_file
from storage.archive import Archive, InstanceInfo, NotFoundError
from storage.crypto import IntegrityError
from storage.matching import LEVELS, QueryError

UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
MAX_CONTEXTS = 128
_UNREADABLE = (NotFoundError, IntegrityError, OSError, ValueError, InvalidDicomError)


def retrieve_contexts(instances: list[InstanceInfo]) -> list[PresentationContext]:
    """What a C-MOVE proposes: per SOP class and stored syntax, that syntax, then ELE and ILE.

    More than 128 such pairs: one context per SOP class with all its stored syntaxes
    (the receiver then accepts one of them, and the others are transcoded).
    """
    pairs = dict.fromkeys((info.sop_class_uid, info.transfer_syntax) for info in instances)
    groups: dict[tuple[str, int], list[str]] = {}
    for index, (sop_class, syntax) in enumerate(pairs):
        key = (sop_class, index if len(pairs) <= MAX_CONTEXTS else 0)
        groups.setdefault(key, []).append(syntax)
    return [
        build_context(sop_class, list(dict.fromkeys([*syntaxes, *UNCOMPRESSED])))
        for (sop_class, _), syntaxes in list(groups.items())[:MAX_CONTEXTS]
    ]


def sub_operation(
    archive: Archive, frame_limit: FrameLimit, outbox: sending.Outbox, info: InstanceInfo, *, streams: bool
) -> Dataset:
    """The C-STORE data set to send for `info` on `outbox`'s association.

    A streamed placeholder, a transcoded copy, or a failure (no File Meta Transfer Syntax,
    which pynetdicom refuses to send).
    C-MOVE, C-GET and forwarding (:mod:`pacs.dicom.forwarder`) send each object through this.
    """
    sop_class, sop_uid = info.sop_class_uid, info.sop_uid
    accepted = outbox.accepted(sop_class)
    if not accepted:
        return outbox.failed(sop_class, sop_uid, f"no presentation context for {UID(sop_class).name}")
    try:
        syntax = target_syntax(info.transfer_syntax, accepted)
        stream = archive.open_instance(info)
    except TranscodeError as error:
        return outbox.failed(sop_class, sop_uid, str(error))
    try:
        if streams and syntax == info.transfer_syntax:
            return outbox.placeholder(sop_class, sop_uid, syntax, sending.open_data_set(stream))
        with stream:  # pydicom seeks; the object is being decoded whole anyway
            return transcode_file(stream.read(), info.transfer_syntax, [syntax], frame_limit)
    except TranscodeError as error:
        stream.close()
        return outbox.failed(sop_class, sop_uid, str(error))
    except _UNREADABLE:
        stream.close()
        return outbox.failed(sop_class, sop_uid, "the stored object could not be read")


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
        frame_limit: FrameLimit,
    ) -> None:
        self.archive = archive
        self.frame_limit = frame_limit
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

    def _instances(self, identifier: Dataset) -> list[InstanceInfo]:
        """The current version of every instance a retrieve names.

        Retrieves match relationally on the unique keys given, at any level.
        """
        keys = Dataset()
        for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"):
            if keyword in identifier:
                setattr(keys, keyword, identifier[keyword].value)
        keys.SOPInstanceUID = identifier.get("SOPInstanceUID", "")
        matches = [str(match.SOPInstanceUID) for match in self.archive.find("IMAGE", keys)]
        return self.archive.current_instances(matches)

    def _send(
        self, event: Event, outbox: sending.Outbox, instances: list[InstanceInfo], *, streams: bool
    ) -> Iterator[tuple[int, Dataset | None]]:
        """The sub-operations of a retrieve: each object, until the requestor cancels."""
        try:
            for info in instances:
                if event.is_cancelled:
                    yield Status.CANCEL, None
                    return
                yield policy.PENDING, self._sub_operation(outbox, info, streams=streams)
        finally:
            outbox.close()

    def _sub_operation(self, outbox: sending.Outbox, info: InstanceInfo, *, streams: bool) -> Dataset:
        """What to yield for `info`; see :func:`sub_operation`."""
        return sub_operation(self.archive, self.frame_limit, outbox, info, streams=streams)

    @staticmethod
    def _attach(event: Event, outbox: sending.Outbox) -> bool:
        """Make `outbox` the requester's association's; whether its DIMSE provider streams."""
        dimse = event.assoc.dimse
        if isinstance(dimse, streaming.StreamingDIMSE):
            dimse.outbox = outbox
            return True
        return False

    def _audit_retrieve(
        self, state: AssociationState, kind: str, destination: str, instances: list[InstanceInfo]
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
        outbox = sending.Outbox(originator=str(event.assoc.requestor.ae_title).strip())
        self._attach(event, outbox)
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
        outbox.destination_known = True
        yield (
            str(destination.network.network_address),
            destination.port,
            {
                "contexts": retrieve_contexts(instances),
                "tls_args": (self.client_context(destination), None),
                "evt_handlers": outbox.handlers(),
            },
        )
        audited = self._audit_retrieve(state, "C-MOVE", destination.ae_title, instances)
        yield len(instances) if audited else 1
        if not audited:
            yield policy.OUT_OF_RESOURCES, None
            return
        yield from self._send(event, outbox, instances, streams=True)

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
        outbox = sending.Outbox()
        outbox.assoc = event.assoc
        yield from self._send(event, outbox, instances, streams=self._attach(event, outbox))
