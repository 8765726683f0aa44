"""The PACS's local certificate authority and the certificates it issues.

This module owns every X.509 operation of the mini-PACS:

* creating the clinic's private CA (``create_ca``),
* issuing the PACS server certificate, used both for the HTTPS viewer and for
  DICOM over mutual TLS, where the PACS is also a TLS *client* for C-MOVE
  (``issue_server_cert``),
* issuing client certificates for modalities, named by AE title
  (``issue_client_cert``),
* writing and loading keys and certificates as PEM files with safe permissions,
* small inspection helpers (``fingerprint``, ``days_until_expiry``).

All keys are EC P-256, all signatures ECDSA with SHA-256, and all times are
timezone-aware UTC. Everything is done in-process with ``cryptography``; no
``openssl`` subprocess is ever run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pacs.core import certificate_builders as builders
from pacs.core.certificate_builders import Issued
from storage import durable
from storage.errors import PacsError

__all__ = [
    "Issued",
    "PKIError",
    "create_ca",
    "days_until_expiry",
    "fingerprint",
    "issue_client_cert",
    "issue_server_cert",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "write_certificate",
    "write_private_key",
]

_PRIVATE_KEY_MODE = 0o600
_CERTIFICATE_MODE = 0o644


class PKIError(PacsError, ValueError):
    """A key or certificate file is unreadable or holds the wrong kind of PEM.

    The message is a single line that names the offending file.
    """


# --------------------------------------------------------------------------
# Issuing
# --------------------------------------------------------------------------


def create_ca(
    common_name: str = "Mini-PACS Local CA",
    *,
    valid_days: int = 3650,
    now: datetime | None = None,
) -> Issued:
    """Create a new self-signed certificate authority.

    The CA has a fresh EC P-256 key and carries, all as required by RFC 5280
    for a CA that only signs end-entity certificates:

    * BasicConstraints ``ca=True, path_length=0`` (critical),
    * KeyUsage ``keyCertSign`` and ``cRLSign`` only (critical),
    * a SubjectKeyIdentifier derived from its public key.

    Validity starts five minutes before ``now`` (clock skew between hosts)
    and ends ``valid_days`` days after ``now``.

    Raises ``ValueError`` if ``valid_days`` is not positive or ``now`` is a
    naive datetime.
    """
    start, end = builders.validity(builders.utc_now(now), valid_days)
    key = builders.new_key()
    name = builders.name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(builders.key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .sign(key, builders.SIGNATURE_HASH)
    )
    return Issued(key=key, cert=cert)


def issue_server_cert(
    ca: Issued,
    hostname: str,
    *,
    extra_names: Sequence[str] = (),
    valid_days: int = 730,
    now: datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """Issue a certificate for the PACS host, signed by ``ca``, for ``key`` (default: a new key).

    The subject CN is ``hostname``. The SubjectAlternativeName lists
    ``hostname`` followed by every name in ``extra_names`` (duplicates
    dropped, order kept); a name that ``ipaddress.ip_address`` accepts becomes
    an IPAddress entry, any other name a DNSName entry.

    The certificate is valid for TLS server *and* client authentication
    (ExtendedKeyUsage serverAuth + clientAuth), because the PACS also opens
    TLS connections to modalities for C-MOVE. KeyUsage is digitalSignature +
    keyAgreement (critical), BasicConstraints is ``ca=False`` (critical), and
    it carries an AuthorityKeyIdentifier matching the CA and its own
    SubjectKeyIdentifier.

    Validity starts five minutes before ``now`` and ends ``valid_days`` days
    after ``now``, but never later than the CA certificate's own expiry.

    Raises ``ValueError`` if ``ca`` is not a usable CA (key does not match
    certificate, not a CA, or already expired at ``now``), if a name is
    empty or not ASCII (IDNs must be given as A-labels), if ``hostname`` is
    longer than the 64 characters a CN allows, if ``valid_days`` is not
    positive, or if ``now`` is naive.
    """
    names = builders.subject_alt_names([hostname, *extra_names])
    builder = builders.leaf_builder(ca, hostname, valid_days=valid_days, now=now)
    key = key or builders.new_key()
    cert = (
        builder.public_key(key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(builders.key_usage(digital_signature=True, key_agreement=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .sign(ca.key, builders.SIGNATURE_HASH)
    )
    return Issued(key=key, cert=cert)


def issue_client_cert(
    ca: Issued,
    common_name: str,
    *,
    valid_days: int = 1095,
    now: datetime | None = None,
    server_auth: bool = False,
) -> Issued:
    """Issue a TLS client certificate for a modality, signed by ``ca``.

    ``common_name`` is the modality's AE title and becomes the subject CN.
    ExtendedKeyUsage is clientAuth only, so the certificate cannot be used to
    impersonate a server, unless ``server_auth`` is set for a node that also
    receives retrieves from the PACS (a C-MOVE destination). KeyUsage is digitalSignature (critical),
    BasicConstraints is ``ca=False`` (critical), and it carries an
    AuthorityKeyIdentifier matching the CA and its own SubjectKeyIdentifier.
    There is no SubjectAlternativeName.

    Validity is as for ``issue_server_cert``, and so are the errors, except
    that ``common_name`` is only limited to 1-64 characters.
    """
    builder = builders.leaf_builder(ca, common_name, valid_days=valid_days, now=now)
    key = builders.new_key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server_auth:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        builder.public_key(key.public_key())
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(builders.key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .sign(ca.key, builders.SIGNATURE_HASH)
    )
    return Issued(key=key, cert=cert)


# --------------------------------------------------------------------------
# Inspection
# --------------------------------------------------------------------------


def fingerprint(cert: x509.Certificate) -> str:
    """Return the SHA-256 fingerprint of ``cert``'s DER encoding.

    The result is 64 lowercase hex digits with no separators.
    """
    return cert.fingerprint(hashes.SHA256()).hex()


def days_until_expiry(cert: x509.Certificate, now: datetime | None = None) -> float:
    """Return the days (fractional) from ``now`` until ``cert`` expires.

    The value is negative once the certificate has expired. ``now`` defaults
    to the current UTC time; a naive datetime raises ``ValueError``.
    """
    remaining = cert.not_valid_after_utc - builders.utc_now(now)
    return remaining / timedelta(days=1)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write ``key`` to a new file at ``path`` as unencrypted PKCS#8 PEM, mode 0600.

    The file appears whole or not at all, never readable by others at any moment, and
    an existing file (or symlink) at ``path`` is never replaced: ``FileExistsError`` is
    raised instead (:func:`storage.durable.write_new`).
    """
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    durable.write_new(Path(path), pem, _PRIVATE_KEY_MODE)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    """Write ``cert`` to ``path`` as PEM with mode 0644.

    An existing file is replaced atomically and durably (:func:`storage.durable.replace`),
    so readers see either the old or the new certificate, never a partial one, even
    after a crash.
    """
    durable.replace(Path(path), cert.public_bytes(serialization.Encoding.PEM), _CERTIFICATE_MODE)


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM EC private key from ``path``.

    Raises ``PKIError`` naming the file if it cannot be read, is not an
    unencrypted PEM private key, or holds a key that is not an EC key.
    """
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PKIError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path}: private key is not an EC key")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    """Load the first PEM certificate in ``path``.

    Raises ``PKIError`` naming the file if it cannot be read or contains no
    PEM certificate.
    """
    return load_certificates(path)[0]


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Load every PEM certificate in ``path`` (e.g. a CA bundle), in order.

    Raises ``PKIError`` naming the file if it cannot be read or contains no
    PEM certificate.
    """
    data = _read(path, "certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise PKIError(f"{path}: not a PEM certificate file") from None
    if not certs:
        raise PKIError(f"{path}: not a PEM certificate file")
    return certs


def _read(path: Path, kind: str) -> bytes:
    """Return the bytes of ``path``; raise ``PKIError`` if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PKIError(f"{path}: cannot read {kind} file: {reason}") from None
