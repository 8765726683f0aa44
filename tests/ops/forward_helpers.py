"""Shared pieces of the forwarding tests: enrolling a node with a certificate from the archive's CA."""

from __future__ import annotations

from pacs.core import pki
from pacs.core.context import CA_CERT, CA_KEY, Context
from pacs.core.nodes import NodeRegistry


def enrol_node(pacs: Context, ae_title: str, port: int | None, *, host: str = "127.0.0.1") -> None:
    """Enrol `ae_title` at `host` (with `port`, a destination), its certificate issued by our CA."""
    settings = pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    issued = pki.issue_client_cert(ca, ae_title, server_auth=True)
    NodeRegistry(pacs.database).add(ae_title, host=host, certificate=issued.cert, cert_issued=True, port=port)
