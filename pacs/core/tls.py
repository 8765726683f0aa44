"""The TLS policy of both ports: TLS 1.2+ with the BCP 195 ciphers, no compression or renegotiation.

For DICOM, client certificates are mandatory: the server trusts certificates issued by
our CA plus every pinned node certificate, and the association policy then requires the
presented certificate's fingerprint to be the enrolled node's. For retrieves we connect
out with a context that trusts only the destination node's own certificate, and present
our server certificate as client. The web port (:func:`https_context`) asks for no client
certificate and speaks HTTP/1.1.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

# BCP 195 (RFC 9325) recommended TLS 1.2 suites; TLS 1.3 suites are OpenSSL's defaults.
BCP195_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.verify_mode = ssl.CERT_REQUIRED
    # A pinned node certificate is a trust anchor of its own, not the end of a chain to a CA.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN


def server_context(certificate: Path, key: Path, ca: Path, pinned: Iterable[str] = ()) -> ssl.SSLContext:
    """The listener's context: our certificate; client certificates required, from our CA or `pinned`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    context.load_cert_chain(certificate, key)
    context.load_verify_locations(cafile=ca)
    trust_pinned(context, pinned)
    return context


def trust_pinned(context: ssl.SSLContext, pinned: Iterable[str]) -> None:
    """Add pinned node certificates (PEM) to the trust store of a running server context."""
    for pem in pinned:
        context.load_verify_locations(cadata=pem)


def client_context(certificate: Path, key: Path, peer_pem: str) -> ssl.SSLContext:
    """A context for connecting to one node: we present `certificate`, and trust only `peer_pem`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(context)
    context.check_hostname = False  # nodes are addressed by IP; the pinned certificate identifies them
    context.load_cert_chain(certificate, key)
    context.load_verify_locations(cadata=peer_pem)
    return context


def https_context(certificate: str, key: str) -> ssl.SSLContext:
    """The web server's context: TLS 1.2+ only, the BCP 195 suites, HTTP/1.1, no compression."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(certificate, key)
    return context
