"""The TLS profile of the archive's two ports as a scanner sees it, for the assessment report.

:func:`probe` connects to a running port once per protocol version (TLS 1.0 to 1.3, each
client context limited to that one version and offering every cipher OpenSSL knows), and
enumerates the TLS 1.2 suites the server accepts by offering everything but the suites seen
so far until it refuses. On the DICOM port it presents the archive's own certificate (issued
by our CA, clientAuth), and asks once without one to see whether a client certificate is
required. A port that does not answer is described from its configuration instead
(:func:`configured`, from :mod:`pacs.core.tls`). Refused handshakes on the DICOM port are
audited by the listener as any scanner's would be.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

VERSIONS = (
    ssl.TLSVersion.TLSv1,
    ssl.TLSVersion.TLSv1_1,
    ssl.TLSVersion.TLSv1_2,
    ssl.TLSVersion.TLSv1_3,
)
_OFFER_ALL = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
TIMEOUT = 5.0


@dataclass(frozen=True)
class CertificateFacts:
    """What a scanner reports of one certificate of the chain."""

    role: str
    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: datetime
    key: str
    signature: str


@dataclass(frozen=True)
class VersionResult:
    """One protocol version: accepted or refused, and the suites the server chose with it."""

    version: str
    accepted: bool
    ciphers: tuple[str, ...] = ()
    detail: str = ""
    # The connection was closed before the server answered the hello, with no TLS alert.
    closed: bool = False


@dataclass
class PortProfile:
    """The TLS profile of one port: probed on the wire (`running`) or read from the configuration."""

    name: str
    host: str
    port: int
    running: bool
    versions: list[VersionResult] = field(default_factory=list)
    client_certificate_required: bool | None = None
    chain: list[CertificateFacts] = field(default_factory=list)
    note: str = ""

    def cut_short(self, configured: PortProfile) -> bool:
        """Whether a version the `configured` profile accepts was closed unanswered on the wire.

        A refused version may be closed unanswered (the web port does so); an accepted one
        only when the connection was refused at accept, before TLS.
        """
        return any(
            probed.closed and expected.accepted
            for probed, expected in zip(self.versions, configured.versions, strict=True)
        )


@dataclass(frozen=True)
class ClientIdentity:
    """The certificate and key the probe shows on a port that wants one."""

    certificate: Path
    key: Path


def version_label(version: ssl.TLSVersion) -> str:
    """``TLS 1.2`` for ``TLSv1_2``."""
    return {"TLSv1": "TLS 1.0"}.get(version.name, version.name.replace("TLSv1_", "TLS 1."))


def describe(cert: x509.Certificate, role: str) -> CertificateFacts:
    """The facts a scanner lists for `cert`: names, expiry, key and signature algorithm."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n) for n in sans.get_values_for_type(x509.DNSName))
        names += tuple(str(a) for a in sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = ()
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        key = f"EC {public.curve.name} ({public.key_size} bits)"
    elif isinstance(public, rsa.RSAPublicKey):
        key = f"RSA {public.key_size} bits"
    else:
        key = type(public).__name__
    hashing = cert.signature_hash_algorithm
    return CertificateFacts(
        role=role,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=names,
        not_after=cert.not_valid_after_utc,
        key=key,
        signature=f"{cert.signature_algorithm_oid._name}" + (f" ({hashing.name})" if hashing else ""),
    )


def _client_context(version: ssl.TLSVersion, identity: ClientIdentity | None) -> ssl.SSLContext:
    """A client context speaking only `version`, offering every cipher, trusting anything."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # A probe of our own port that reports what it is offered, an expired or misnamed certificate
    # included, so it must not refuse one; it sends nothing but the handshake.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: asking for them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    context.set_ciphers(_OFFER_ALL)
    if identity is not None:
        context.load_cert_chain(identity.certificate, identity.key)
    return context


def _handshake(host: str, port: int, context: ssl.SSLContext) -> tuple[str, bytes]:
    """Connect and complete a handshake; return the suite chosen and the server's certificate (DER)."""
    with (
        socket.create_connection((host, port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        cipher = tls.cipher()
        der = tls.getpeercert(binary_form=True) or b""
        return (cipher[0] if cipher else ""), der


def _tls12_suites(host: str, port: int, identity: ClientIdentity | None, first: str) -> tuple[str, ...]:
    """Every TLS 1.2 suite the server accepts, in its order of preference, starting with `first`."""
    seen = [first]
    while True:
        context = _client_context(ssl.TLSVersion.TLSv1_2, identity)
        try:
            context.set_ciphers(_OFFER_ALL + "".join(f":!{name}" for name in seen))
            seen.append(_handshake(host, port, context)[0])
        except (ssl.SSLError, OSError):
            return tuple(seen)


def _version(
    host: str, port: int, version: ssl.TLSVersion, identity: ClientIdentity | None
) -> tuple[VersionResult, bytes]:
    label = version_label(version)
    try:
        cipher, der = _handshake(host, port, _client_context(version, identity))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        closed = (
            isinstance(exc, ssl.SSLEOFError | ConnectionError) or reason == "UNEXPECTED_EOF_WHILE_READING"
        )
        return VersionResult(label, False, detail=reason, closed=closed), b""
    if version is ssl.TLSVersion.TLSv1_2:
        return VersionResult(label, True, _tls12_suites(host, port, identity, cipher)), der
    return VersionResult(label, True, (cipher,)), der


def _asks_for_certificate(host: str, port: int) -> bool:
    """Whether a TLS 1.2 handshake without a client certificate is refused."""
    try:
        _handshake(host, port, _client_context(ssl.TLSVersion.TLSv1_2, None))
    except ssl.SSLError:
        return True
    return False


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on `host`:`port`."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT):
            return True
    except OSError:
        return False


def probe(
    name: str, host: str, port: int, *, identity: ClientIdentity | None = None, ca: Path | None = None
) -> PortProfile:
    """Probe a running port: each version, the suites, client certificates and the chain sent.

    The chain is the certificate the server sent, followed by `ca` when that issued it.
    """
    profile = PortProfile(name, host, port, running=True)
    leaf = b""
    for version in VERSIONS:
        result, der = _version(host, port, version, identity)
        profile.versions.append(result)
        leaf = leaf or der
    profile.client_certificate_required = _asks_for_certificate(host, port)
    if leaf:
        server = x509.load_der_x509_certificate(leaf)
        profile.chain.append(describe(server, "server certificate (as sent)"))
        if ca is not None and ca.is_file():
            authority = x509.load_pem_x509_certificate(ca.read_bytes())
            if authority.subject == server.issuer:
                profile.chain.append(describe(authority, "issuing CA (tls/ca.crt)"))
    return profile


def configured(
    name: str, host: str, port: int, context: ssl.SSLContext, chain: list[CertificateFacts]
) -> PortProfile:
    """The profile the server context `context` would show, for a port that is not running."""
    profile = PortProfile(name, host, port, running=False, chain=chain)
    names: dict[ssl.TLSVersion, list[str]] = {version: [] for version in VERSIONS}
    for cipher in context.get_ciphers():
        wanted = ssl.TLSVersion.TLSv1_3 if cipher["protocol"] == "TLSv1.3" else ssl.TLSVersion.TLSv1_2
        names[wanted].append(cipher["name"])
    for version in VERSIONS:
        highest = context.maximum_version
        accepted = version >= context.minimum_version and (
            highest == ssl.TLSVersion.MAXIMUM_SUPPORTED or version <= highest
        )
        profile.versions.append(
            VersionResult(version_label(version), accepted, tuple(names[version]) if accepted else ())
        )
    profile.client_certificate_required = context.verify_mode == ssl.CERT_REQUIRED
    return profile
