"""The building blocks of the certificates :mod:`pacs.core.pki` issues, and what it issues (:class:`Issued`).

Names, validity windows (with five minutes of clock skew), key usage, subject
alternative names, the check that a CA can sign, and the common start of every
end-entity certificate. All keys are EC P-256, all signatures SHA-256.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CLOCK_SKEW = timedelta(minutes=5)
SIGNATURE_HASH = hashes.SHA256()


@dataclass(frozen=True)
class Issued:
    """A private key together with the certificate issued for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def new_key() -> ec.EllipticCurvePrivateKey:
    """Generate a fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str) -> x509.Name:
    """Return a subject/issuer name consisting of a single CN."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def utc_now(now: datetime | None) -> datetime:
    """Return ``now`` converted to UTC, or the current UTC time if None.

    Raises ``ValueError`` for a naive datetime, whose zone would be a guess.
    """
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def validity(now: datetime, valid_days: int) -> tuple[datetime, datetime]:
    """Return (not_before, not_after): ``now`` minus clock skew, plus days.

    Raises ``ValueError`` if ``valid_days`` is not positive.
    """
    if valid_days <= 0:
        raise ValueError(f"valid_days must be positive, got {valid_days}")
    return now - CLOCK_SKEW, now + timedelta(days=valid_days)


def key_usage(
    *,
    digital_signature: bool = False,
    key_agreement: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """Return a KeyUsage with only the named bits set."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def check_ca(ca: Issued, now: datetime) -> None:
    """Raise ``ValueError`` unless ``ca`` can sign certificates at ``now``.

    That is: its key matches its certificate, the certificate says
    ``ca=True``, and it has not expired.
    """
    subject = ca.cert.subject.rfc4514_string()
    if ca.key.public_key() != ca.cert.public_key():
        raise ValueError(f"CA key does not match CA certificate {subject}")
    try:
        constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise ValueError(f"certificate {subject} is not a CA") from None
    if not constraints.value.ca:
        raise ValueError(f"certificate {subject} is not a CA")
    if ca.cert.not_valid_after_utc <= now:
        raise ValueError(f"CA {subject} expired at {ca.cert.not_valid_after_utc.isoformat()}")


def authority_key_identifier(ca: Issued) -> x509.AuthorityKeyIdentifier:
    """Return an AKI pointing at ``ca``, reusing its SKI when it has one."""
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def leaf_builder(
    ca: Issued, common_name: str, *, valid_days: int, now: datetime | None
) -> x509.CertificateBuilder:
    """Start an end-entity certificate signed by ``ca``.

    Sets subject, issuer, serial, validity (clamped to the CA's expiry),
    BasicConstraints ``ca=False`` and the AuthorityKeyIdentifier; the caller
    adds the public key and the purpose-specific extensions.
    """
    current = utc_now(now)
    check_ca(ca, current)
    start, end = validity(current, valid_days)
    return (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(ca.cert.subject)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(end, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(authority_key_identifier(ca), critical=False)
    )


def subject_alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """Map host names to SAN entries: IPAddress if it parses as one, else DNSName.

    Duplicates (after IP normalisation) are dropped; order is kept. Raises
    ``ValueError`` for an empty name or a non-ASCII DNS name.
    """
    entries: list[x509.GeneralName] = []
    for name in names:
        if not name:
            raise ValueError("host names must not be empty")
        entry: x509.GeneralName
        try:
            entry = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name)
        if entry not in entries:
            entries.append(entry)
    return entries
