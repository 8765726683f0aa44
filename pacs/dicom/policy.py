"""Association policy: who may associate, and what each DIMSE request may do.

An association is accepted only when the called AE title is ours and the calling AE
title, the peer address and the client certificate all match one enrolled node. Over the
legacy plaintext port there is no certificate, so only nodes enrolled with --plaintext,
from their exact address, are accepted there.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from pynetdicom.status import Status

from pacs.core.nodes import EnrolledNode

# A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source and reason/diag values.
REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SOURCE_SERVICE_USER = 0x01
SOURCE_PRESENTATION_PROVIDER = 0x03
REASON_NO_REASON = 0x01
REASON_TEMPORARY_CONGESTION = 0x01  # with SOURCE_PRESENTATION_PROVIDER
REASON_LOCAL_LIMIT_EXCEEDED = 0x02  # with SOURCE_PRESENTATION_PROVIDER
REASON_CALLING_AE_NOT_RECOGNISED = 0x03
REASON_CALLED_AE_NOT_RECOGNISED = 0x07

# DIMSE statuses (PS3.7 C, PS3.4 Annex B/C). pynetdicom.status names the general ones; the
# others are keys of its service-class tables, under the names those tables give them
# (tests/dicom/test_policy.py checks each against pynetdicom.status).
SUCCESS = Status.SUCCESS
PENDING = Status.PENDING
MOVE_DESTINATION_UNKNOWN = Status.MOVE_DESTINATION_UNKNOWN  # sent by pynetdicom when no destination is named
NOT_AUTHORISED = 0x0124
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH = 0xB007  # a warning: stored, but the data set is not as its class requires
IDENTIFIER_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class AssociationVerdict:
    """The policy's decision on one association request."""

    node: EnrolledNode | None
    reason: int
    why: str

    @property
    def accepted(self) -> bool:
        """Whether the association may go ahead."""
        return self.node is not None


def certificate_fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as enrolment records it."""
    return hashlib.sha256(der).hexdigest()


def decide(
    nodes: Iterable[EnrolledNode],
    *,
    our_ae_title: str,
    called_ae_title: str,
    calling_ae_title: str,
    address: str,
    certificate: bytes | None,
    tls: bool,
) -> AssociationVerdict:
    """Decide an association request from `address` presenting `certificate` (DER) or none."""
    if called_ae_title.strip() != our_ae_title.strip():
        return AssociationVerdict(
            None, REASON_CALLED_AE_NOT_RECOGNISED, f"called AE title {called_ae_title!r} is not ours"
        )
    calling = calling_ae_title.strip()
    node = next((n for n in nodes if n.ae_title == calling), None)
    if node is None:
        return AssociationVerdict(
            None, REASON_CALLING_AE_NOT_RECOGNISED, f"calling AE title {calling!r} is not enrolled"
        )
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return AssociationVerdict(None, REASON_NO_REASON, f"peer address {address!r} is not an IP address")
    if peer not in node.network:
        return AssociationVerdict(None, REASON_NO_REASON, f"{calling} may not connect from {address}")
    if not tls:
        if not node.plaintext or node.network.num_addresses != 1:
            return AssociationVerdict(
                None, REASON_NO_REASON, f"{calling} is not enrolled for plaintext DICOM"
            )
        return AssociationVerdict(node, 0, "enrolled legacy node over plaintext")
    if certificate is None:
        return AssociationVerdict(None, REASON_NO_REASON, f"{calling} presented no client certificate")
    if certificate_fingerprint(certificate) != node.fingerprint:
        return AssociationVerdict(
            None, REASON_NO_REASON, f"{calling} presented a certificate that is not its enrolled one"
        )
    return AssociationVerdict(node, 0, "enrolled node")
