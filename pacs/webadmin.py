"""What the web viewer's admin pages need from the rest of pacs: enrolment and the system status.

It implements :class:`webviewer.admin.AdminBackend` over the node registry, the local CA
and the data directory, so that ``webviewer`` never imports the DICOM side.
"""

from __future__ import annotations

import shutil

from pacs import pki
from pacs.audit import Action
from pacs.config import Settings
from pacs.datadir import CA_CERT, CA_KEY, SERVER_CERT, Pacs
from pacs.nodes import (
    EnrolmentError,
    NodeRegistry,
    check_enrolment,
    issue_node_pem,
    node_event,
    parse_permissions,
)
from webviewer.admin import ModalityRow, StatusRow

CERTIFICATE_WARNING_DAYS = 30


class PacsAdmin:
    """The admin backend of one open archive."""

    def __init__(self, pacs: Pacs) -> None:
        self._pacs = pacs
        self._settings: Settings = pacs.settings
        self._registry = NodeRegistry(pacs.database)

    def modalities(self) -> list[ModalityRow]:
        """The enrolled nodes."""
        return [
            ModalityRow(
                ae_title=node.ae_title,
                host=str(node.network),
                port=node.port,
                permissions=",".join(sorted(node.permissions)),
                certificate=f"{'issued' if node.cert_issued else 'pinned'} {node.fingerprint[:16]}",
                plaintext=node.plaintext,
            )
            for node in self._registry.all()
        ]

    def enrol(self, ae_title: str, host: str, allow: str, port: int | None, *, user: str) -> bytes:
        """Enrol a TLS node with a certificate from our CA; return the ZIP of its PEM files."""
        permissions = parse_permissions(allow)
        check_enrolment(ae_title, host=host, port=port, plaintext=False)
        if self._registry.get(ae_title) is not None:
            raise EnrolmentError(f"a node with AE title {ae_title!r} is already enrolled")
        ca = pki.Issued(
            key=pki.load_private_key(self._settings.key_dir / CA_KEY),
            cert=pki.load_certificate(self._settings.tls_dir / CA_CERT),
        )
        certificate, bundle = issue_node_pem(ca, ae_title, server_auth=port is not None)
        node = self._registry.add(
            ae_title, host=host, certificate=certificate, cert_issued=True, permissions=permissions, port=port
        )
        self._pacs.audit.append(node_event(Action.CREATE, node, "node enrolled", user=user))
        return bundle

    def remove(self, ae_title: str, *, user: str) -> None:
        """Remove an enrolled node."""
        node = self._registry.remove(ae_title)
        self._pacs.audit.append(node_event(Action.DELETE, node, "node removed", user=user))

    def status(self) -> list[StatusRow]:
        """Free disk against the watermark, certificate expiry, the index and the plaintext port."""
        settings = self._settings
        free_mb = shutil.disk_usage(settings.blob_dir).free // 2**20
        rows = [
            StatusRow(
                "free disk (blobs)",
                f"{free_mb:,} MiB (watermark {settings.storage.min_free_mb:,} MiB)",
                free_mb > settings.storage.min_free_mb * 2,
            )
        ]
        for label, path in (
            ("server certificate", settings.tls_dir / SERVER_CERT),
            ("CA certificate", settings.tls_dir / CA_CERT),
        ):
            days = pki.days_until_expiry(pki.load_certificate(path))
            rows.append(StatusRow(label, f"expires in {days:.0f} days", days > CERTIFICATE_WARNING_DAYS))
        encrypted = (
            "SQLCipher (encrypted)" if self._pacs.database.is_sqlite else "PostgreSQL (see docs/SECURITY.md)"
        )
        rows.append(StatusRow("index", encrypted, self._pacs.database.is_sqlite))
        plaintext = [n.ae_title for n in self._registry.all() if n.plaintext]
        rows.append(
            StatusRow(
                "plaintext DICOM",
                f"open on port {settings.dicom.plaintext_port} for {', '.join(plaintext)}"
                if plaintext
                else "closed",
                not plaintext,
            )
        )
        return rows
