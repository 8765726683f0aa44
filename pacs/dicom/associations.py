"""What the DICOM service knows about an association: its state, and the services of each abstract syntax.

An accepted association has an :class:`AssociationState` (the node, its address, its
slot, what it delivered). Abstract syntaxes map to the permissions an enrolled node
needs to negotiate them (:func:`granted`) and to the service named in the audit trail
(:func:`service`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pacs.core.nodes import EnrolledNode
from pacs.ops.received import Received

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_ROOT = {STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET}


FIND = {"1.2.840.10008.5.1.4.1.2.1.1", STUDY_ROOT_FIND}
MOVE = {"1.2.840.10008.5.1.4.1.2.1.2", STUDY_ROOT_MOVE}
GET = {"1.2.840.10008.5.1.4.1.2.1.3", STUDY_ROOT_GET}
VERIFICATION = "1.2.840.10008.1.1"


@dataclass
class AssociationState:
    """What the service knows about one accepted association."""

    node: EnrolledNode
    address: str
    tls: bool
    slot: int
    received: Received = field(default_factory=Received)
    announced: set[str] = field(default_factory=set)
    failed: int = 0


def granted(node: EnrolledNode, abstract_syntax: str) -> bool:
    """Whether `node` may negotiate a presentation context for `abstract_syntax`."""
    if abstract_syntax == VERIFICATION:
        return True
    for services, permission in ((FIND, "find"), (MOVE, "move"), (GET, "get")):
        if abstract_syntax in services:
            return node.allows(permission)
    # Storage: to store, or to receive the C-STORE sub-operations of its own C-GET.
    return node.allows("store") or node.allows("get")


def service(abstract_syntax: str) -> str:
    """The service an abstract syntax belongs to, for the audit trail."""
    for services, name in ((FIND, "C-FIND"), (MOVE, "C-MOVE"), (GET, "C-GET")):
        if abstract_syntax in services:
            return name
    return "C-STORE"
