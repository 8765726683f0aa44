"""The association policy, `pacs.dicom.policy.decide()`, over hand-made enrolled nodes (no server)."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

import pytest
from pynetdicom.status import (
    GENERAL_STATUS,
    QR_FIND_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
    Status,
)

from pacs.core.nodes import EnrolledNode
from pacs.dicom import policy

CT_CERT = b"DER of the CT's certificate"
US_CERT = b"DER of the ultrasound's certificate"
OLD_CERT = b"DER of the legacy node's certificate"


def _node(
    ae_title: str, host: str, certificate: bytes, *, plaintext: bool = False, allow: str = "store"
) -> EnrolledNode:
    return EnrolledNode(
        ae_title=ae_title,
        network=ipaddress.ip_network(host),
        port=None,
        permissions=frozenset(allow.split(",")),
        fingerprint=hashlib.sha256(certificate).hexdigest(),
        subject=f"CN={ae_title}",
        cert_pem="",
        cert_issued=True,
        plaintext=plaintext,
    )


CT = _node("CT1", "10.1.2.3", CT_CERT)
US = _node("US1", "10.1.5.0/24", US_CERT)
OLD = _node("OLDCT", "10.1.2.9", OLD_CERT, plaintext=True)
NODES = [CT, US, OLD]


def _decide(nodes: list[EnrolledNode] | None = None, **request: Any) -> policy.AssociationVerdict:
    """decide() for a request that is CT1's valid TLS association unless `request` says otherwise."""
    arguments: dict[str, Any] = {
        "our_ae_title": "PACS",
        "called_ae_title": "PACS",
        "calling_ae_title": "CT1",
        "address": "10.1.2.3",
        "certificate": CT_CERT,
        "tls": True,
    }
    return policy.decide(NODES if nodes is None else nodes, **(arguments | request))


def _refused(verdict: policy.AssociationVerdict, reason: int) -> None:
    assert not verdict.accepted
    assert verdict.node is None
    assert verdict.reason == reason
    assert verdict.why


# -- accepted -------------------------------------------------------------------------------------


def test_matching_ae_title_address_and_certificate_is_accepted() -> None:
    verdict = _decide()
    assert verdict.accepted
    assert verdict.node is CT
    assert verdict.reason == 0


def test_ae_titles_are_compared_without_their_space_padding() -> None:
    verdict = _decide(called_ae_title="PACS            ", calling_ae_title="CT1             ")
    assert verdict.node is CT


def test_each_node_is_matched_on_its_own_ae_title() -> None:
    verdict = _decide(calling_ae_title="US1", address="10.1.5.20", certificate=US_CERT)
    assert verdict.node is US


# -- the called AE title --------------------------------------------------------------------------


def test_a_called_ae_title_other_than_ours_is_rejected_as_called_ae_not_recognised() -> None:
    _refused(_decide(called_ae_title="OTHER"), policy.REASON_CALLED_AE_NOT_RECOGNISED)


def test_the_called_ae_title_is_checked_before_anything_else() -> None:
    verdict = _decide(called_ae_title="OTHER", calling_ae_title="NOBODY", address="8.8.8.8", certificate=None)
    _refused(verdict, policy.REASON_CALLED_AE_NOT_RECOGNISED)


def test_the_called_ae_title_is_case_sensitive() -> None:
    _refused(_decide(called_ae_title="pacs"), policy.REASON_CALLED_AE_NOT_RECOGNISED)


# -- the calling AE title -------------------------------------------------------------------------


def test_an_unenrolled_calling_ae_title_is_rejected_as_calling_ae_not_recognised() -> None:
    _refused(_decide(calling_ae_title="NOBODY"), policy.REASON_CALLING_AE_NOT_RECOGNISED)


def test_the_calling_ae_title_is_case_sensitive() -> None:
    _refused(_decide(calling_ae_title="ct1"), policy.REASON_CALLING_AE_NOT_RECOGNISED)


def test_with_no_node_enrolled_nobody_is_accepted() -> None:
    _refused(_decide([]), policy.REASON_CALLING_AE_NOT_RECOGNISED)


# -- the peer address -----------------------------------------------------------------------------


def test_the_right_ae_title_and_certificate_from_another_address_are_rejected() -> None:
    _refused(_decide(address="10.1.2.4"), policy.REASON_NO_REASON)


@pytest.mark.parametrize("address", ["10.1.5.0", "10.1.5.1", "10.1.5.254", "10.1.5.255"])
def test_any_address_inside_the_enrolled_network_is_accepted(address: str) -> None:
    verdict = _decide(calling_ae_title="US1", address=address, certificate=US_CERT)
    assert verdict.node is US


@pytest.mark.parametrize("address", ["10.1.4.255", "10.1.6.0", "10.2.5.1", "::ffff:10.1.5.1", "fe80::1"])
def test_an_address_outside_the_enrolled_network_is_rejected(address: str) -> None:
    _refused(_decide(calling_ae_title="US1", address=address, certificate=US_CERT), policy.REASON_NO_REASON)


def test_an_ipv6_network_admits_its_own_addresses_only() -> None:
    node = _node("MR1", "2001:db8:7::/64", CT_CERT)
    accepted = _decide([node], calling_ae_title="MR1", address="2001:db8:7::42")
    assert accepted.node is node
    _refused(_decide([node], calling_ae_title="MR1", address="2001:db8:8::42"), policy.REASON_NO_REASON)
    _refused(_decide([node], calling_ae_title="MR1", address="10.1.2.3"), policy.REASON_NO_REASON)


@pytest.mark.parametrize("address", ["", "localhost", "10.1.2.3:104", "10.1.2"])
def test_a_peer_address_that_is_not_an_ip_address_is_rejected(address: str) -> None:
    _refused(_decide(address=address), policy.REASON_NO_REASON)


# -- the client certificate -----------------------------------------------------------------------


def test_tls_without_a_client_certificate_is_rejected() -> None:
    _refused(_decide(certificate=None), policy.REASON_NO_REASON)


def test_another_nodes_certificate_is_rejected() -> None:
    _refused(_decide(certificate=US_CERT), policy.REASON_NO_REASON)


def test_a_certificate_that_differs_by_one_byte_is_rejected() -> None:
    _refused(_decide(certificate=CT_CERT[:-1] + b"X"), policy.REASON_NO_REASON)


def test_the_right_certificate_with_another_enrolled_calling_ae_title_is_rejected() -> None:
    # CT1's certificate, address and all, but calling as US1 (enrolled elsewhere with its own certificate).
    _refused(_decide(calling_ae_title="US1"), policy.REASON_NO_REASON)


# -- plaintext ------------------------------------------------------------------------------------


def test_a_plaintext_node_from_its_exact_address_is_accepted_without_tls() -> None:
    verdict = _decide(calling_ae_title="OLDCT", address="10.1.2.9", certificate=None, tls=False)
    assert verdict.node is OLD


def test_a_tls_node_is_rejected_over_plaintext() -> None:
    _refused(_decide(certificate=None, tls=False), policy.REASON_NO_REASON)


def test_a_plaintext_node_from_another_address_is_rejected() -> None:
    verdict = _decide(calling_ae_title="OLDCT", address="10.1.2.10", certificate=None, tls=False)
    _refused(verdict, policy.REASON_NO_REASON)


def test_a_plaintext_node_enrolled_with_a_network_is_rejected_over_plaintext() -> None:
    ward = _node("WARD", "10.1.7.0/24", OLD_CERT, plaintext=True)  # the registry refuses this; the policy too
    verdict = _decide([ward], calling_ae_title="WARD", address="10.1.7.7", certificate=None, tls=False)
    _refused(verdict, policy.REASON_NO_REASON)


@pytest.mark.parametrize("host", ["10.1.2.9/32", "2001:db8::9/128"])
def test_a_single_address_network_counts_as_an_exact_address(host: str) -> None:
    node = _node("OLDCT", host, OLD_CERT, plaintext=True)
    address = str(node.network.network_address)
    verdict = _decide([node], calling_ae_title="OLDCT", address=address, certificate=None, tls=False)
    assert verdict.node is node


def test_a_plaintext_node_over_tls_still_needs_its_certificate() -> None:
    over_tls = {"calling_ae_title": "OLDCT", "address": "10.1.2.9", "tls": True}
    assert _decide(**over_tls, certificate=OLD_CERT).node is OLD
    _refused(_decide(**over_tls, certificate=None), policy.REASON_NO_REASON)
    _refused(_decide(**over_tls, certificate=CT_CERT), policy.REASON_NO_REASON)


# -- the verdict ----------------------------------------------------------------------------------


def test_reject_codes_are_those_of_ps3_8() -> None:
    assert policy.REJECTED_PERMANENT == 1
    assert policy.SOURCE_SERVICE_USER == 1
    assert policy.REASON_NO_REASON == 1
    assert policy.REASON_CALLING_AE_NOT_RECOGNISED == 3
    assert policy.REASON_CALLED_AE_NOT_RECOGNISED == 7


def test_a_rejection_says_why_without_accepting() -> None:
    verdict = _decide(address="10.9.9.9")
    assert "CT1" in verdict.why
    assert "10.9.9.9" in verdict.why
    assert verdict.accepted is False


@pytest.mark.parametrize(
    ("name", "table", "meaning"),
    [
        ("NOT_AUTHORISED", GENERAL_STATUS, "Refused: Not Authorised"),
        ("PROCESSING_FAILURE", GENERAL_STATUS, "Processing Failure"),
        ("OUT_OF_RESOURCES", STORAGE_SERVICE_CLASS_STATUS, "Refused: Out of Resources"),
        ("DATA_SET_DOES_NOT_MATCH", STORAGE_SERVICE_CLASS_STATUS, "Data Set Does Not Match SOP Class"),
        ("CANNOT_UNDERSTAND", STORAGE_SERVICE_CLASS_STATUS, "Cannot Understand"),
        ("IDENTIFIER_DOES_NOT_MATCH", QR_FIND_SERVICE_CLASS_STATUS, "Identifier Does Not Match SOP Class"),
    ],
)
def test_each_named_status_means_what_pynetdicom_status_says(
    name: str, table: dict[int, tuple[str, str]], meaning: str
) -> None:
    assert table[getattr(policy, name)][1] == meaning


def test_the_general_statuses_are_pynetdicoms_own() -> None:
    assert (policy.SUCCESS, policy.PENDING, policy.MOVE_DESTINATION_UNKNOWN) == (
        Status.SUCCESS,
        Status.PENDING,
        Status.MOVE_DESTINATION_UNKNOWN,
    )
