"""What an enrolment change takes away from an open association: removal, another certificate, fewer rights.

The DICOM server compares every open association's node with its enrolment of now
(:func:`withdrawn`) each time it reads the enrolments, and ends the association when
something it was accepted on no longer holds. Rights added since stay for the next one.
"""

from __future__ import annotations

import ipaddress

from pacs.core.nodes import EnrolledNode


def withdrawn(accepted: EnrolledNode, now: EnrolledNode | None, address: str, *, tls: bool) -> str | None:
    """Why an association accepted for `accepted` from `address` may not go on, or None if it may."""
    if now is None:
        return f"{accepted.ae_title} is no longer enrolled"
    if now.fingerprint != accepted.fingerprint:
        return f"{accepted.ae_title} is enrolled with another certificate"
    if ipaddress.ip_address(address) not in now.network:
        return f"{accepted.ae_title} may no longer connect from {address}"
    if not tls and not now.plaintext:
        return f"{accepted.ae_title} may no longer use plaintext DICOM"
    lost = sorted(accepted.permissions - now.permissions)
    if lost:
        return f"{accepted.ae_title} lost the right to {', '.join(lost)}"
    return None
