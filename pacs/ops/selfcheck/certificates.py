"""The checks of the archive's certificates and of its two TLS listeners."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from pacs.core import pki, tls
from pacs.core.context import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, Context
from pacs.core.nodes import NodeRegistry
from pacs.ops.selfcheck.report import Finding, Result
from pacs.ops.status import CertificateState, certificate_status

_WEAK_CIPHER_WORDS = ("NULL", "RC4", "DES", "MD5", "EXPORT", "anon", "PSK", "SRP", "CBC")


def _certificate_results(label: str, cert: x509.Certificate, now: datetime, renew: str) -> Iterator[Result]:
    status = certificate_status(cert, now)
    if status.state is CertificateState.NOT_YET_VALID:
        yield Finding(
            "certificates",
            f"the {label} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
            "check the appliance's clock",
        )
    elif status.state is CertificateState.EXPIRED:
        yield Finding(
            "certificates",
            f"the {label} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            renew,
        )
    elif status.state is CertificateState.EXPIRING:
        yield Finding(
            "certificates",
            f"the {label} expires in {int(status.days)} days, on {cert.not_valid_after_utc:%Y-%m-%d}",
            f"before then: {renew}",
        )


def check_certificates(pacs: Context, now: datetime) -> Iterator[Result]:
    """The CA, the server certificate and the enrolled nodes' certificates are valid for 30 days more."""
    tls_dir = pacs.settings.tls_dir
    try:
        ca = pki.load_certificate(tls_dir / CA_CERT)
        server = pki.load_certificate(tls_dir / SERVER_CERT)
    except pki.PKIError as exc:
        yield Finding("certificates", str(exc), "restore the tls/ directory from a backup")
        return
    yield from _certificate_results(
        "CA certificate",
        ca,
        now,
        "the CA cannot be renewed in place: plan a new archive (pacs init) with a new CA, and "
        "re-enrol every node and install its ca.crt on the doctors' computers (docs/SECURITY.md)",
    )
    yield from _certificate_results(
        "server certificate", server, now, "run 'pacs cert renew', then restart pacs serve"
    )
    hostname = pacs.settings.server.hostname
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    listed = [str(n) for n in names.get_values_for_type(x509.DNSName)]
    listed += [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    if hostname not in listed:
        yield Finding(
            "certificates",
            f"the server certificate does not name {hostname!r} ([server] hostname); browsers and "
            "modalities will refuse it",
            "correct [server] hostname in pacs.toml, or run 'pacs cert renew' to issue a certificate "
            "for it, then restart pacs serve",
        )
    for node in NodeRegistry(pacs.database).all():
        if node.cert_pem:
            cert = x509.load_pem_x509_certificate(node.cert_pem.encode())
            options = f"--host {node.network} --allow {','.join(sorted(node.permissions))}"
            options += f" --port {node.port}" if node.port else ""
            options += " --plaintext" if node.plaintext else ""
            certificate = "--issue-cert DIR" if node.cert_issued else "--cert NEW.pem"
            renew = (
                f"give the node a new certificate: pacs modality remove {node.ae_title}, then "
                f"pacs modality add {node.ae_title} {options} {certificate}"
            )
            yield from _certificate_results(f"certificate of node {node.ae_title}", cert, now, renew)


def _context_results(label: str, context: ssl.SSLContext, *, client_certs: bool) -> Iterator[Result]:
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:
        yield Finding("tls", f"the {label} accepts {context.minimum_version.name}", "upgrade the archive")
    weak = [c["name"] for c in context.get_ciphers() if any(w in c["name"] for w in _WEAK_CIPHER_WORDS)]
    if weak:
        yield Finding("tls", f"the {label} offers weak ciphers: {', '.join(weak)}", "upgrade the archive")
    if not context.options & ssl.OP_NO_COMPRESSION:
        yield Finding("tls", f"the {label} allows TLS compression (CRIME)", "upgrade the archive")
    if client_certs and context.verify_mode != ssl.CERT_REQUIRED:
        yield Finding("tls", f"the {label} does not require client certificates", "upgrade the archive")


def _key_results(label: str, path: Path) -> Iterator[Result]:
    try:
        key = pki.load_private_key(path)
    except pki.PKIError as exc:
        yield Finding("tls", f"the {label} key is unusable: {exc}", "restore the key directory from a backup")
        return
    if key.curve.key_size < 256:
        yield Finding("tls", f"the {label} key is too short", "issue a new key and certificate")


def check_tls(pacs: Context, now: datetime) -> Iterator[Result]:
    """Both listeners: TLS 1.2+, BCP 195 ciphers, no compression, client certificates for DICOM."""
    keys, certs = pacs.settings.key_dir, pacs.settings.tls_dir
    try:
        dicom = tls.server_context(certs / SERVER_CERT, keys / SERVER_KEY, certs / CA_CERT)
        web = tls.https_context(str(certs / SERVER_CERT), str(keys / SERVER_KEY))
    except (OSError, ssl.SSLError) as exc:
        yield Finding(
            "tls", f"the server certificate or key cannot be loaded: {exc}", "restore tls/ and keys/"
        )
        return
    yield from _context_results("DICOM listener", dicom, client_certs=True)
    yield from _context_results("HTTPS listener", web, client_certs=False)
    yield from _key_results("server", keys / SERVER_KEY)
    yield from _key_results("CA", keys / CA_KEY)
    server = pki.load_certificate(certs / SERVER_CERT)
    if not isinstance(server.signature_hash_algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        yield Finding("tls", "the server certificate is signed with a weak hash", "issue a new certificate")
