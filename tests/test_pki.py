"""Specification of the PACS's local certificate authority (``pacs.core.pki``).

Besides inspecting the issued certificates, these tests prove they work where
they are used: a real mutual-TLS handshake through Python's ``ssl`` module,
and verification by the ``openssl`` command-line tool.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from pacs.core.pki import (
    Issued,
    PKIError,
    create_ca,
    days_until_expiry,
    fingerprint,
    issue_client_cert,
    issue_server_cert,
    load_certificate,
    load_certificates,
    load_private_key,
    write_certificate,
    write_private_key,
)

OPENSSL = Path("/usr/bin/openssl")
NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
IO_TIMEOUT = 10.0

ExtT = TypeVar("ExtT", bound=x509.ExtensionType)


# --------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------


def ext(cert: x509.Certificate, kind: type[ExtT]) -> x509.Extension[ExtT]:
    """Return the extension of type ``kind`` (fails the test if absent)."""
    return cert.extensions.get_extension_for_class(kind)


def common_name(cert: x509.Certificate) -> str:
    """Return the single CN of ``cert``'s subject."""
    (attribute,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    """Return the ExtendedKeyUsage OIDs of ``cert``."""
    return list(ext(cert, x509.ExtendedKeyUsage).value)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block with the process umask set to ``mask``."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@dataclass(frozen=True)
class PkiFiles:
    """A CA, a PACS server cert and a modality client cert on disk."""

    ca_crt: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path


def write_issued(directory: Path, stem: str, issued: Issued) -> tuple[Path, Path]:
    """Write ``issued`` as ``<stem>.crt`` / ``<stem>.key``; return both paths."""
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    write_certificate(crt, issued.cert)
    write_private_key(key, issued.key)
    return crt, key


@pytest.fixture(scope="module")
def ca() -> Issued:
    return create_ca()


@pytest.fixture
def pki_files(tmp_path: Path, ca: Issued) -> PkiFiles:
    server = issue_server_cert(ca, "localhost", extra_names=["127.0.0.1"])
    client = issue_client_cert(ca, "CT_SCANNER_1")
    ca_crt = tmp_path / "ca.crt"
    write_certificate(ca_crt, ca.cert)
    server_crt, server_key = write_issued(tmp_path, "server", server)
    client_crt, client_key = write_issued(tmp_path, "client", client)
    return PkiFiles(ca_crt, server_crt, server_key, client_crt, client_key)


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


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def test_private_key_is_written_0600_and_never_overwritten(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.key"
    with umask(0):
        write_private_key(path, ca.key)
    assert path.stat().st_mode & 0o777 == 0o600
    original = path.read_bytes()

    with pytest.raises(FileExistsError):
        write_private_key(path, create_ca().key)
    assert path.read_bytes() == original


def test_private_key_write_never_follows_a_symlink(tmp_path: Path, ca: Issued) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"precious")
    link = tmp_path / "ca.key"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private_key(link, ca.key)
    assert target.read_bytes() == b"precious"


def test_private_key_is_unencrypted_pkcs8_pem_and_round_trips(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.key"
    write_private_key(path, ca.key)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = load_private_key(path)
    assert loaded.private_numbers() == ca.key.private_numbers()


def test_certificate_is_written_0644_pem_and_round_trips(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.crt"
    with umask(0o077):
        write_certificate(path, ca.cert)
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert load_certificate(path) == ca.cert


def test_certificate_is_replaced_whole_on_renewal(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "server.crt"
    write_certificate(path, issue_server_cert(ca, "pacs").cert)
    renewed = issue_server_cert(ca, "pacs").cert
    write_certificate(path, renewed)
    assert load_certificates(path) == [renewed]
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["server.crt"]


def test_load_certificates_reads_a_bundle_in_order(tmp_path: Path, ca: Issued) -> None:
    other = create_ca("Other CA")
    path = tmp_path / "bundle.pem"
    path.write_bytes(
        ca.cert.public_bytes(serialization.Encoding.PEM) + other.cert.public_bytes(serialization.Encoding.PEM)
    )
    assert load_certificates(path) == [ca.cert, other.cert]
    assert load_certificate(path) == ca.cert


LOADERS = pytest.mark.parametrize(
    "loader",
    [load_private_key, load_certificate, load_certificates],
    ids=["key", "certificate", "certificates"],
)


def assert_names_file_on_one_line(error: PKIError, path: Path) -> None:
    """The error is a ValueError whose single-line message names ``path``."""
    assert isinstance(error, ValueError)
    message = str(error)
    assert str(path) in message
    assert "\n" not in message


@LOADERS
def test_garbage_pem_gives_error_naming_the_file(tmp_path: Path, loader: Callable[[Path], object]) -> None:
    path = tmp_path / "garbage.pem"
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END")
    with pytest.raises(PKIError) as caught:
        loader(path)
    assert_names_file_on_one_line(caught.value, path)


@LOADERS
def test_missing_file_gives_error_naming_the_file(tmp_path: Path, loader: Callable[[Path], object]) -> None:
    path = tmp_path / "absent.pem"
    with pytest.raises(PKIError) as caught:
        loader(path)
    assert_names_file_on_one_line(caught.value, path)
    assert "cannot read" in str(caught.value)


@LOADERS
def test_empty_file_gives_error_naming_the_file(tmp_path: Path, loader: Callable[[Path], object]) -> None:
    path = tmp_path / "empty.pem"
    path.touch()
    with pytest.raises(PKIError) as caught:
        loader(path)
    assert_names_file_on_one_line(caught.value, path)


def test_certificate_is_not_accepted_as_private_key(
    pki_files: PkiFiles,
) -> None:
    with pytest.raises(PKIError) as caught:
        load_private_key(pki_files.ca_crt)
    assert_names_file_on_one_line(caught.value, pki_files.ca_crt)


@pytest.mark.parametrize("loader", [load_certificate, load_certificates])
def test_private_key_is_not_accepted_as_certificate(
    pki_files: PkiFiles, loader: Callable[[Path], object]
) -> None:
    with pytest.raises(PKIError) as caught:
        loader(pki_files.server_key)
    assert_names_file_on_one_line(caught.value, pki_files.server_key)


def test_der_certificate_is_not_accepted_as_pem(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "ca.der"
    path.write_bytes(ca.cert.public_bytes(serialization.Encoding.DER))
    with pytest.raises(PKIError) as caught:
        load_certificate(path)
    assert_names_file_on_one_line(caught.value, path)


def test_encrypted_private_key_is_refused(tmp_path: Path, ca: Issued) -> None:
    path = tmp_path / "encrypted.key"
    path.write_bytes(
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(PKIError, match="unencrypted") as caught:
        load_private_key(path)
    assert_names_file_on_one_line(caught.value, path)


def test_non_ec_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.key"
    path.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(PKIError, match="not an EC key") as caught:
        load_private_key(path)
    assert_names_file_on_one_line(caught.value, path)


# --------------------------------------------------------------------------
# Real mutual TLS with Python's ssl module
# --------------------------------------------------------------------------


@dataclass
class Handshake:
    """What each side of one mutual-TLS connection attempt saw."""

    server_saw_cn: str | None = None
    tls_version: str | None = None
    server_error: OSError | None = None
    client_received: bytes | None = None
    client_error: OSError | None = None


def server_context(files: PkiFiles) -> ssl.SSLContext:
    """The PACS side: requires a client certificate issued by our CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(files.server_crt, files.server_key)
    context.load_verify_locations(cafile=files.ca_crt)
    return context


def client_context(ca_crt: Path, crt: Path, key: Path, max_version: ssl.TLSVersion) -> ssl.SSLContext:
    """The modality side: trusts only our CA and checks the host name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = max_version
    context.load_verify_locations(cafile=ca_crt)
    context.load_cert_chain(crt, key)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    return context


def peer_common_name(peer: dict[str, object]) -> str:
    """Extract the CN from ``SSLSocket.getpeercert()``'s dict form."""
    for rdn in peer["subject"]:  # type: ignore[attr-defined]
        for key, value in rdn:
            if key == "commonName":
                return value
    raise AssertionError(f"no commonName in {peer!r}")


def handshake(
    files: PkiFiles,
    client_crt: Path,
    client_key: Path,
    *,
    server_hostname: str = "localhost",
    max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> Handshake:
    """Run one TLS connection over 127.0.0.1 and report what both sides saw.

    The server, in a thread, records the client certificate's CN and sends
    ``b"ok"``; the client reads the reply. With TLS 1.3 a rejected client
    certificate only shows up on the client's first read, so errors are
    collected from both the handshake and the read.
    """
    result = Handshake()
    server_ctx = server_context(files)
    client_ctx = client_context(files.ca_crt, client_crt, client_key, max_version)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(IO_TIMEOUT)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(IO_TIMEOUT)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert()
                    assert peer is not None
                    result.server_saw_cn = peer_common_name(peer)
                    result.tls_version = tls.version()
                    tls.sendall(b"ok")
            except OSError as exc:
                result.server_error = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), IO_TIMEOUT) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                result.client_received = tls.recv(2)
        except OSError as exc:
            result.client_error = exc
        thread.join(IO_TIMEOUT)
        assert not thread.is_alive(), "TLS server thread hung"
    return result


TLS_VERSIONS = pytest.mark.parametrize(
    "max_version",
    [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
    ids=["tls1.2", "tls1.3"],
)


@TLS_VERSIONS
@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_mutual_tls_handshake_succeeds_and_server_sees_modality_cn(
    pki_files: PkiFiles, server_hostname: str, max_version: ssl.TLSVersion
) -> None:
    result = handshake(
        pki_files,
        pki_files.client_crt,
        pki_files.client_key,
        server_hostname=server_hostname,
        max_version=max_version,
    )
    assert result.server_error is None
    assert result.client_error is None
    assert result.client_received == b"ok"
    assert result.server_saw_cn == "CT_SCANNER_1"
    assert (
        result.tls_version
        == {
            ssl.TLSVersion.TLSv1_2: "TLSv1.2",
            ssl.TLSVersion.TLSv1_3: "TLSv1.3",
        }[max_version]
    )


def test_pacs_server_cert_also_works_as_tls_client_cert(pki_files: PkiFiles) -> None:
    """C-MOVE: the PACS connects out to a modality with its own certificate."""
    result = handshake(pki_files, pki_files.server_crt, pki_files.server_key)
    assert result.server_error is None
    assert result.client_received == b"ok"
    assert result.server_saw_cn == "localhost"


@TLS_VERSIONS
def test_client_cert_from_another_ca_is_rejected(
    tmp_path: Path, pki_files: PkiFiles, max_version: ssl.TLSVersion
) -> None:
    rogue_ca = create_ca("Rogue CA")
    rogue_crt, rogue_key = write_issued(tmp_path, "rogue", issue_client_cert(rogue_ca, "CT_SCANNER_1"))
    result = handshake(pki_files, rogue_crt, rogue_key, max_version=max_version)
    assert isinstance(result.server_error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in str(result.server_error)
    assert result.server_saw_cn is None
    assert result.client_received != b"ok"


def test_client_rejects_server_under_wrong_host_name(pki_files: PkiFiles) -> None:
    result = handshake(
        pki_files,
        pki_files.client_crt,
        pki_files.client_key,
        server_hostname="pacs.elsewhere.example",
    )
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(result.client_error)


# --------------------------------------------------------------------------
# Interoperability with the openssl command-line tool
# --------------------------------------------------------------------------


def openssl_verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``/usr/bin/openssl verify ARGS`` (fails the test if it's missing)."""
    assert OPENSSL.exists(), f"{OPENSSL} is required for interoperability tests"
    return subprocess.run(
        [str(OPENSSL), "verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_openssl_cli_verifies_server_cert_against_ca(pki_files: PkiFiles) -> None:
    done = openssl_verify("-CAfile", pki_files.ca_crt, pki_files.server_crt)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{pki_files.server_crt}: OK"


@pytest.mark.parametrize(
    ("which", "purpose"),
    [("server", "sslserver"), ("server", "sslclient"), ("client", "sslclient")],
)
def test_openssl_cli_accepts_cert_for_its_purposes_in_strict_mode(
    pki_files: PkiFiles, which: str, purpose: str
) -> None:
    cert = pki_files.server_crt if which == "server" else pki_files.client_crt
    done = openssl_verify("-x509_strict", "-purpose", purpose, "-CAfile", pki_files.ca_crt, cert)
    assert done.returncode == 0, done.stderr


def test_openssl_cli_refuses_modality_cert_as_server_cert(pki_files: PkiFiles) -> None:
    done = openssl_verify("-purpose", "sslserver", "-CAfile", pki_files.ca_crt, pki_files.client_crt)
    assert done.returncode != 0
    assert "unsuitable certificate purpose" in done.stderr
