"""Specification of the PACS's local certificate authority (``pacs.core.pki``): the CA and what it issues.

The CA, server and client certificates, and how they are inspected.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from pacs.core.pki import (
    Issued,
    create_ca,
    days_until_expiry,
    fingerprint,
    issue_client_cert,
    issue_server_cert,
)
from tests.core.pki_helpers import NOW, common_name, eku, ext

# --------------------------------------------------------------------------
# The CA
# --------------------------------------------------------------------------


def test_ca_is_self_signed_p256_ecdsa_sha256(ca: Issued) -> None:
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert ca.cert.public_key() == ca.key.public_key()
    assert ca.cert.subject == ca.cert.issuer
    assert common_name(ca.cert) == "Mini-PACS Local CA"
    assert isinstance(ca.cert.signature_hash_algorithm, hashes.SHA256)
    ca.cert.verify_directly_issued_by(ca.cert)


def test_ca_may_only_sign_end_entity_certs(ca: Issued) -> None:
    constraints = ext(ca.cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 0

    usage = ext(ca.cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert not usage.value.key_agreement


def test_ca_has_subject_key_identifier_of_its_key(ca: Issued) -> None:
    ski = ext(ca.cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())


def test_ca_name_is_configurable() -> None:
    assert common_name(create_ca("Clinic Nord CA").cert) == "Clinic Nord CA"


def test_validity_is_backdated_five_minutes_for_clock_skew() -> None:
    ca = create_ca(valid_days=100, now=NOW)
    server = issue_server_cert(ca, "pacs", valid_days=30, now=NOW)
    client = issue_client_cert(ca, "US_1", valid_days=20, now=NOW)
    for issued, days in [(ca, 100), (server, 30), (client, 20)]:
        assert issued.cert.not_valid_before_utc == NOW - timedelta(minutes=5)
        assert issued.cert.not_valid_after_utc == NOW + timedelta(days=days)


def test_default_lifetimes_are_10_2_and_3_years() -> None:
    ca = create_ca(now=NOW)
    server = issue_server_cert(ca, "pacs", now=NOW)
    client = issue_client_cert(ca, "MR_1", now=NOW)
    assert ca.cert.not_valid_after_utc == NOW + timedelta(days=3650)
    assert server.cert.not_valid_after_utc == NOW + timedelta(days=730)
    assert client.cert.not_valid_after_utc == NOW + timedelta(days=1095)


def test_now_in_another_timezone_is_converted_to_utc() -> None:
    two_pm_at_utc_plus_2 = datetime(2030, 6, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    ca = create_ca(now=two_pm_at_utc_plus_2)
    assert ca.cert.not_valid_before_utc == NOW - timedelta(minutes=5)


def test_naive_datetimes_are_rejected(ca: Issued) -> None:
    naive = datetime(2030, 6, 1, 12, 0, 0)  # naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        create_ca(now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_server_cert(ca, "pacs", now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        days_until_expiry(ca.cert, now=naive)


@pytest.mark.parametrize("days", [0, -1])
def test_lifetime_must_be_positive(ca: Issued, days: int) -> None:
    with pytest.raises(ValueError, match="valid_days"):
        create_ca(valid_days=days)
    with pytest.raises(ValueError, match="valid_days"):
        issue_client_cert(ca, "CR_1", valid_days=days)


def test_serial_numbers_are_random_positive_and_fit_20_octets(ca: Issued) -> None:
    serials = {issue_client_cert(ca, "DX_1").cert.serial_number for _ in range(5)}
    serials.add(ca.cert.serial_number)
    assert len(serials) == 6
    assert all(0 < serial < 2**159 for serial in serials)


# --------------------------------------------------------------------------
# Server certificates
# --------------------------------------------------------------------------


def test_server_cert_chains_to_ca_and_names_host(ca: Issued) -> None:
    server = issue_server_cert(ca, "pacs.clinic.lan")
    server.cert.verify_directly_issued_by(ca.cert)
    assert server.cert.issuer == ca.cert.subject
    assert server.cert.public_key() == server.key.public_key()
    assert isinstance(server.key.curve, ec.SECP256R1)
    assert common_name(server.cert) == "pacs.clinic.lan"
    san = ext(server.cert, x509.SubjectAlternativeName).value
    assert list(san) == [x509.DNSName("pacs.clinic.lan")]


def test_server_cert_names_every_extra_name(ca: Issued) -> None:
    server = issue_server_cert(ca, "pacs", extra_names=["pacs.clinic.lan", "viewer.clinic.lan"])
    san = ext(server.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "pacs",
        "pacs.clinic.lan",
        "viewer.clinic.lan",
    ]


def test_ip_hostname_becomes_ip_san(ca: Issued) -> None:
    server = issue_server_cert(
        ca, "192.168.1.20", extra_names=["pacs.clinic.lan", "fd00::20", "192.168.1.20"]
    )
    assert common_name(server.cert) == "192.168.1.20"
    san = ext(server.cert, x509.SubjectAlternativeName).value
    assert list(san) == [
        x509.IPAddress(ipaddress.ip_address("192.168.1.20")),
        x509.DNSName("pacs.clinic.lan"),
        x509.IPAddress(ipaddress.ip_address("fd00::20")),
    ]


def test_empty_host_name_is_rejected(ca: Issued) -> None:
    with pytest.raises(ValueError, match="empty"):
        issue_server_cert(ca, "pacs", extra_names=[""])


def test_server_cert_is_for_server_and_client_auth(ca: Issued) -> None:
    """The PACS is a TLS client too, when it sends C-MOVE results onwards."""
    server = issue_server_cert(ca, "pacs")
    assert eku(server.cert) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]


def test_server_cert_key_usage_is_signature_and_key_agreement(ca: Issued) -> None:
    usage = ext(issue_server_cert(ca, "pacs").cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.key_agreement
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    assert not usage.value.key_encipherment


@pytest.mark.parametrize(
    "issue",
    [
        lambda ca: issue_server_cert(ca, "pacs"),
        lambda ca: issue_client_cert(ca, "CT_1"),
    ],
    ids=["server", "client"],
)
def test_issued_certs_are_not_cas_and_identify_their_keys(
    ca: Issued, issue: Callable[[Issued], Issued]
) -> None:
    issued = issue(ca)
    constraints = ext(issued.cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False

    ca_ski = ext(ca.cert, x509.SubjectKeyIdentifier).value
    aki = ext(issued.cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = ext(issued.cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(issued.key.public_key())


@pytest.mark.parametrize(
    "name",
    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    ids=["dns", "ip"],
)
def test_server_cert_passes_strict_rfc5280_verification(ca: Issued, name: x509.GeneralName) -> None:
    server = issue_server_cert(ca, "localhost", extra_names=["127.0.0.1"])
    verifier = PolicyBuilder().store(Store([ca.cert])).time(datetime.now(UTC)).build_server_verifier(name)
    assert verifier.verify(server.cert, []) == [server.cert, ca.cert]


def test_leaf_never_outlives_its_ca() -> None:
    ca = create_ca(valid_days=10, now=NOW)
    server = issue_server_cert(ca, "pacs", valid_days=730, now=NOW)
    assert server.cert.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_expired_ca_cannot_issue() -> None:
    ca = create_ca(valid_days=10, now=NOW)
    with pytest.raises(ValueError, match="expired"):
        issue_client_cert(ca, "CT_1", now=NOW + timedelta(days=11))


def test_only_a_matching_ca_key_and_cert_can_issue(ca: Issued) -> None:
    leaf = issue_server_cert(ca, "pacs")
    with pytest.raises(ValueError, match="not a CA"):
        issue_client_cert(leaf, "CT_1")
    other = create_ca("Other CA")
    with pytest.raises(ValueError, match="does not match"):
        issue_client_cert(Issued(key=other.key, cert=ca.cert), "CT_1")


# --------------------------------------------------------------------------
# Client certificates
# --------------------------------------------------------------------------


def test_client_cert_is_for_client_auth_only(ca: Issued) -> None:
    client = issue_client_cert(ca, "CT_SCANNER_1")
    client.cert.verify_directly_issued_by(ca.cert)
    assert common_name(client.cert) == "CT_SCANNER_1"
    assert eku(client.cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = ext(client.cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign


def test_retrieve_destination_cert_may_also_serve_tls(ca: Issued) -> None:
    node = issue_client_cert(ca, "WORKSTATION", server_auth=True)
    assert eku(node.cert) == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cert_common_name_is_the_ae_title_verbatim(ca: Issued) -> None:
    assert common_name(issue_client_cert(ca, "US ROOM 2").cert) == "US ROOM 2"


# --------------------------------------------------------------------------
# Inspection
# --------------------------------------------------------------------------


def test_fingerprint_is_sha256_hex(ca: Issued) -> None:
    digest = fingerprint(ca.cert)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    assert digest == hashlib.sha256(der).hexdigest()


def test_days_until_expiry_counts_fractional_days() -> None:
    ca = create_ca(valid_days=10, now=NOW)
    assert days_until_expiry(ca.cert, now=NOW) == 10.0
    assert days_until_expiry(ca.cert, now=NOW + timedelta(hours=12)) == 9.5
    assert days_until_expiry(ca.cert, now=NOW + timedelta(days=11)) == -1.0


def test_days_until_expiry_defaults_to_now(ca: Issued) -> None:
    assert 3649 < days_until_expiry(ca.cert) <= 3650
