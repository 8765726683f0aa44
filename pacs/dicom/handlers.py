"""Event handlers of the DICOM service, bound to the pynetdicom AE by ``pacs.dicom.server``.

Association requests go through :mod:`pacs.dicom.policy`; every DIMSE request is checked
against the node's permissions. A C-STORE data set streams into an
:class:`~storage.ingest.IncomingObject` as it arrives (:meth:`DicomHandlers.open_object`,
called by :mod:`pacs.dicom.streaming`), and C-STORE answers Success only once the object
is durable and the study's audit record is too. Queries and retrieves are
:mod:`pacs.dicom.retrieve`'s. Everything a security auditor asks about is written to the
audit trail: associations accepted and rejected, each study an association delivers
(before its first object is acknowledged, with the counts at close), queries with their
keys, and retrieves with their destination. As the audit policy of :mod:`pacs.core.audit`
says, no request that reads or writes patient data is answered without its record (it
gets 0xA700 with a comment); the acceptance of an association, the counts at close,
refusals and associations ended by an enrolment change go on without theirs, logged.
"""

from __future__ import annotations

import logging
import ssl
import threading
import weakref
from collections.abc import Callable
from typing import Any

from cryptography import x509
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.events import Event
from sqlalchemy import exc as sa_exc

from pacs.core import access_events as events
from pacs.core.audit import AuditEvent, AuditLog, EventID
from pacs.core.events import restricted_function_refused
from pacs.core.nodes import EnrolledNode, NodeRegistry
from pacs.dicom import policy, streaming
from pacs.dicom.associations import AssociationState, granted, service
from pacs.dicom.reactor import EventDrivenAssociation
from pacs.dicom.retrieve import QueryRetrieve
from pacs.dicom.revocation import withdrawn
from pacs.dicom.slots import AssociationSlots
from pacs.dicom.throttle import ConnectionGate
from pacs.ops.decodelimits import FrameLimit
from storage.archive import (
    Archive,
    IncomingObject,
    IndexUnavailableError,
    ObjectTooLargeError,
    OutOfSpaceError,
    StoreResult,
)
from storage.header import HeaderError
from storage.index import StoreOutcome

LOG = logging.getLogger(__name__)


def _reject(
    assoc: Association,
    reason: int,
    *,
    result: int = policy.REJECTED_PERMANENT,
    source: int = policy.SOURCE_SERVICE_USER,
) -> None:
    """Send an A-ASSOCIATE-RJ and wait until it is on the wire, as pynetdicom's own rejections do."""
    assoc.acse.send_reject(result, source, reason)
    assoc.kill()


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


def peer_certificate(assoc: Association) -> bytes | None:
    """The DER client certificate of a TLS association, or None."""
    sock = assoc.dul.socket.socket if assoc.dul.socket is not None else None
    if isinstance(sock, ssl.SSLSocket):
        return sock.getpeercert(binary_form=True)
    return None


def certificate_subject(der: bytes | None) -> str:
    """The subject of a DER certificate, for the audit trail."""
    if der is None:
        return ""
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


class DicomHandlers:
    """The handlers of one DICOM service; see :meth:`bindings`."""

    def __init__(
        self,
        archive: Archive,
        audit: AuditLog,
        registry: NodeRegistry,
        *,
        ae_title: str,
        client_context: Callable[[EnrolledNode], ssl.SSLContext],
        slots: AssociationSlots,
        gate: ConnectionGate,
        frame_limit: FrameLimit,
        delivered: Callable[[str, list[str], str], object] | None = None,
    ) -> None:
        self.archive = archive
        # Told, when an association ends, which studies it stored new objects of (the [[route]] rules).
        self.delivered = delivered
        self.slots = slots
        self.gate = gate
        self._states_lock = threading.Lock()
        self.audit = audit
        self.registry = registry
        self.ae_title = ae_title
        self.client_context = client_context
        self._states: weakref.WeakKeyDictionary[Association, AssociationState] = weakref.WeakKeyDictionary()
        self.query_retrieve = QueryRetrieve(
            archive,
            registry,
            ae_title=ae_title,
            client_context=client_context,
            permitted=self._permitted,
            audit_required=self._audit,
            refused=self._refused,
            frame_limit=frame_limit,
        )

    def bindings(self, *, tls: bool) -> list[tuple[Any, Callable[..., Any]]]:
        """The (event, handler) pairs for a listener with or without TLS."""
        return [
            (evt.EVT_REQUESTED, self.on_requested_tls if tls else self.on_requested_plain),
            (evt.EVT_CONN_CLOSE, self.on_closed),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.query_retrieve.on_find),
            (evt.EVT_C_MOVE, self.query_retrieve.on_move),
            (evt.EVT_C_GET, self.query_retrieve.on_get),
        ]

    def _audit(self, event: AuditEvent) -> bool:
        """Append the record of something that must not happen unaudited; False (logged) if it cannot be."""
        try:
            self.audit.append(event)
        except Exception:
            LOG.exception("could not write an audit record; the request is refused")
            return False
        return True

    def _refused(self, by: str, what: str, *, source: str, **details: Any) -> None:
        """Audit a refusal, which stands whether or not its record can be written."""
        self.audit.append_after(restricted_function_refused(by, what, source=source, **details))

    # -- association ------------------------------------------------------------------------------

    def on_requested_tls(self, event: Event) -> None:
        """Decide an association request that arrived over TLS."""
        self._decide(event, tls=True)

    def on_requested_plain(self, event: Event) -> None:
        """Decide an association request that arrived on the legacy plaintext port."""
        self._decide(event, tls=False)

    def _decide(self, event: Event, *, tls: bool) -> None:
        # pynetdicom negotiates normally when a handler raises, so any error must reject here.
        try:
            self._decide_or_raise(event, tls=tls)
            if isinstance(event.assoc, EventDrivenAssociation):
                event.assoc.settle()
        except sa_exc.DBAPIError:
            LOG.error(
                "the index is unavailable; association from %s rejected as transient",
                event.assoc.requestor.address,
            )
            if not event.assoc.is_rejected:
                _reject(
                    event.assoc,
                    policy.REASON_TEMPORARY_CONGESTION,
                    result=policy.REJECTED_TRANSIENT,
                    source=policy.SOURCE_PRESENTATION_PROVIDER,
                )
        except Exception:
            LOG.exception("association policy failed; rejecting")
            if not event.assoc.is_rejected:
                _reject(event.assoc, policy.REASON_NO_REASON)

    def _decide_or_raise(self, event: Event, *, tls: bool) -> None:
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling, called = str(request.calling_ae_title).strip(), str(request.called_ae_title).strip()
        address = assoc.requestor.address
        der = peer_certificate(assoc) if tls else None
        verdict = policy.decide(
            self.registry.all(),
            our_ae_title=self.ae_title,
            called_ae_title=called,
            calling_ae_title=calling,
            address=address,
            certificate=der,
            tls=tls,
        )
        details = {
            "calling_ae_title": calling,
            "called_ae_title": called,
            "certificate_subject": certificate_subject(der),
            "transport": "tls" if tls else "plaintext",
            "decision": verdict.why,
        }
        if not verdict.accepted:
            _reject(assoc, verdict.reason)
            self.gate.failed(address, "association rejected", details, user_id=calling)
            return
        assert verdict.node is not None
        slot = self.slots.acquire()
        if slot is None:
            LOG.warning("association from %s refused: all %d slots are in use", calling, len(self.slots))
            _reject(
                assoc,
                policy.REASON_LOCAL_LIMIT_EXCEEDED,
                result=policy.REJECTED_TRANSIENT,
                source=policy.SOURCE_PRESENTATION_PROVIDER,
            )
            return
        with self._states_lock:
            self._states[assoc] = AssociationState(verdict.node, address, tls, slot)
        assoc.acceptor.supported_contexts = [
            cx for cx in assoc.acceptor.supported_contexts if granted(verdict.node, str(cx.abstract_syntax))
        ]
        proposed = {str(cx.abstract_syntax) for cx in request.presentation_context_definition_list}
        refused = sorted({service(uid) for uid in proposed if not granted(verdict.node, uid)})
        if refused:
            what = f"services not granted to {calling} were refused"
            self._refused(calling, what, source=address, services=refused)
        # Each request on the association that reads or writes patient data is audited on its own.
        self.audit.append_after(events.association_accepted(calling, source=address, details=details))

    def on_closed(self, event: Event) -> None:
        """Drop a data set cut off by the close, and audit what the association transferred."""
        dimse = event.assoc.dimse
        if isinstance(dimse, streaming.StreamingDIMSE):
            dimse.abort_stream()
        with self._states_lock:
            state = self._states.pop(event.assoc, None)
        if state is None:
            return
        self.slots.release(state.slot)
        # Written after the fact: a lost record can only be logged (its study was announced before).
        by, source = state.node.ae_title, state.address
        for received in state.received.events(EventID.INSTANCES_TRANSFERRED, user_id=by, source=source):
            self.audit.append_after(received)
        if state.failed:
            self.audit.append_after(events.objects_refused(state.failed, by=by, source=source))
        self._route(state)

    def _route(self, state: AssociationState) -> None:
        """Tell :attr:`delivered` the studies the association stored new objects (or versions) of."""
        studies = [uid for uid, tally in state.received.studies.items() if tally.stored or tally.new_versions]
        if self.delivered is None or not studies:
            return
        try:
            self.delivered(state.node.ae_title, studies, state.address)
        except Exception:
            LOG.exception("the forwarding rules could not queue the studies of %s", state.node.ae_title)

    def recheck(self, nodes: list[EnrolledNode]) -> int:
        """End every open association whose node was removed or lost what it was accepted on."""
        enrolled = {n.ae_title: n for n in nodes}
        with self._states_lock:
            states = list(self._states.items())
        ended = 0
        for assoc, state in states:
            why = withdrawn(state.node, enrolled.get(state.node.ae_title), state.address, tls=state.tls)
            if why is None:
                continue
            LOG.warning("ending the association of %s from %s: %s", state.node.ae_title, state.address, why)
            self.audit.append_after(
                events.association_ended(state.node.ae_title, source=state.address, reason=why)
            )
            # abort() waits for the transport to close: not on the caller's thread.
            threading.Thread(target=assoc.abort, name="dicom-revoke", daemon=True).start()
            ended += 1
        return ended

    def _permitted(self, event: Event, permission: str) -> AssociationState | None:
        state = self._states.get(event.assoc)
        if state is not None and state.node.allows(permission):
            return state
        node = state.node.ae_title if state else "unknown"
        source = state.address if state else event.assoc.requestor.address
        self._refused(node, f"C-{permission.upper()} refused: not granted to {node}", source=source)
        return None

    # -- services ---------------------------------------------------------------------------------

    def on_echo(self, event: Event) -> int:
        """C-ECHO: any accepted node may verify the connection."""
        return policy.SUCCESS if event.assoc in self._states else policy.NOT_AUTHORISED

    def open_object(self, assoc: Association, message: C_STORE_RQ) -> IncomingObject | None:
        """Where the data set of a C-STORE request goes as it arrives (None: dropped, refused later)."""
        state = self._states.get(assoc)
        if state is None or not state.node.allows("store"):
            return None
        context = next(cx for cx in assoc.accepted_contexts if cx.context_id == message.context_id)
        incoming = self.archive.receive()
        incoming.write(
            streaming.file_meta(
                message,
                str(context.transfer_syntax[0]),
                assoc.ae.implementation_class_uid,
                assoc.ae.implementation_version_name or "",
            )
        )
        return incoming

    def on_store(self, event: Event) -> int | Dataset:
        """C-STORE: make the streamed object durable, then answer; bad objects get a reason."""
        incoming = streaming.incoming_object(event.request)
        state = self._permitted(event, "store")
        if state is None:
            if incoming is not None:
                incoming.abort()
            return _status(policy.NOT_AUTHORISED, "this node may not store")
        if not isinstance(incoming, IncomingObject):
            state.failed += 1
            return _status(policy.CANNOT_UNDERSTAND, "the request carries no data set")
        try:
            result = incoming.finish()
        except HeaderError as exc:
            state.failed += 1
            return _status(policy.CANNOT_UNDERSTAND, str(exc))
        except (OutOfSpaceError, ObjectTooLargeError, IndexUnavailableError) as exc:
            state.failed += 1
            return _status(policy.OUT_OF_RESOURCES, str(exc))
        except Exception as exc:  # never acknowledge, never leak details
            LOG.exception("storing an object failed")
            state.failed += 1
            return _status(policy.PROCESSING_FAILURE, f"not stored: {type(exc).__name__}")
        if not self._announce(state, result):
            state.failed += 1
            return _status(policy.OUT_OF_RESOURCES, "the audit trail cannot be written")
        state.received.count(result)
        if result.outcome is StoreOutcome.NEW_VERSION and not self._audit(
            events.new_version_kept(
                EventID.INSTANCES_TRANSFERRED, result, by=state.node.ae_title, source=state.address
            )
        ):
            return _status(policy.OUT_OF_RESOURCES, "kept, but the audit trail cannot be written")
        if result.pixel_data_short:
            return _status(policy.DATA_SET_DOES_NOT_MATCH, "stored, but Pixel Data is shorter than declared")
        return policy.SUCCESS

    def _announce(self, state: AssociationState, result: StoreResult) -> bool:
        """Make a record of the study durable before its first object is acknowledged."""
        if result.study_uid in state.announced:
            return True
        announced = self._audit(
            events.study_receiving(
                by=state.node.ae_title,
                source=state.address,
                patient_id=result.patient_id,
                study_uid=result.study_uid,
            )
        )
        if announced:
            state.announced.add(result.study_uid)
        return announced
