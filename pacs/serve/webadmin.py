"""What the web viewer's admin pages need from the rest of pacs: enrolment and the system status.

It implements :class:`webviewer.admin.AdminBackend` over the node registry, the local CA
and the data directory, so that ``webviewer`` never imports the DICOM side. Find, move and
get are PHI grants (:func:`pacs.core.nodes.check_phi_grant`): they need an admin who is also a
physician, and anything else raises :class:`webviewer.admin.GrantRefusedError`.
"""

from __future__ import annotations

from pacs.core import events, pki
from pacs.core.config import Settings, check_ae_title
from pacs.core.context import CA_CERT, SERVER_CERT, Context
from pacs.core.nodes import (
    PERMISSIONS,
    PHI_PERMISSIONS,
    EnrolledNode,
    EnrolmentError,
    NodeRegistry,
    PhiGrantError,
    parse_network,
    parse_permissions,
)
from pacs.ops import enrolment, selfcheck
from pacs.ops.status import certificate_status, disk_status
from webviewer.admin import GrantRefusedError, ModalityRow, Posture, StatusFinding, StatusRow


class PacsAdmin:
    """The admin backend of one open archive."""

    def __init__(self, pacs: Context) -> None:
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
                phi=bool(node.permissions & PHI_PERMISSIONS),
            )
            for node in self._registry.all()
        ]

    def enrol(
        self,
        ae_title: str,
        host: str,
        allow: str,
        port: int | None,
        *,
        user: str,
        roles: frozenset[str] = frozenset(),
    ) -> bytes:
        """Enrol a TLS node with a certificate from our CA; return the ZIP of its PEM files.

        A PHI grant (find, move, get) is refused unless `roles` hold admin and physician.
        """
        check_form(ae_title, host, allow, port)
        try:
            enrolled = enrolment.enrol(
                self._pacs,
                ae_title,
                host=host,
                allow=allow,
                port=port,
                certificate=enrolment.IssueBundle(),
                authority=enrolment.web_admin(user, roles),
            )
        except PhiGrantError as exc:
            raise GrantRefusedError(str(exc), exc.details) from None
        return enrolled.bundle

    def change_rights(self, ae_title: str, allow: str, *, user: str, roles: frozenset[str]) -> bool:
        """Give a node exactly the rights in `allow`; False if it had them already.

        Narrowing is open to any admin; adding find, move or get is a PHI grant.
        """
        _check_rights(allow)
        try:
            return enrolment.change_rights(
                self._pacs, ae_title, allow, authority=enrolment.web_admin(user, roles)
            )
        except PhiGrantError as exc:
            raise GrantRefusedError(str(exc), exc.details) from None

    def remove(self, ae_title: str, *, user: str) -> None:
        """Remove an enrolled node."""
        enrolment.remove(self._pacs, ae_title, user=user)

    def posture(self, *, user: str) -> Posture:
        """Run ``pacs selfcheck``'s checks, audited as the CLI audits them, and return what they report."""
        report = selfcheck.run(self._pacs)
        self._pacs.audit.append(events.selfcheck_run(by=user, findings=[f.message for f in report.findings]))
        return Posture(
            checked=tuple(report.checked),
            findings=tuple(StatusFinding(f.check, f.message, f.fix) for f in report.findings),
            notes=tuple((n.check, n.message) for n in report.notes),
        )

    def status(self) -> list[StatusRow]:
        """Free disk against the watermark, certificate expiry, the index, PHI grants and plaintext DICOM."""
        settings = self._settings
        disk = disk_status(settings)
        rows = [StatusRow("free disk (blobs)", f"{disk.free_mb:,} MiB (watermark {disk.watermark_mb:,} MiB)")]
        for label, path in (
            ("server certificate", settings.tls_dir / SERVER_CERT),
            ("CA certificate", settings.tls_dir / CA_CERT),
        ):
            cert = certificate_status(pki.load_certificate(path))
            rows.append(StatusRow(label, f"expires in {cert.days:.0f} days"))
        encrypted = (
            "SQLCipher (encrypted)" if self._pacs.database.is_sqlite else "PostgreSQL (see docs/SECURITY.md)"
        )
        rows.append(StatusRow("index", encrypted))
        nodes = self._registry.all()
        rows.append(_phi_grants(nodes))
        plaintext = [n.ae_title for n in nodes if n.plaintext]
        port = settings.dicom.plaintext_port
        rows.append(
            StatusRow(
                "plaintext DICOM",
                _plaintext(port, plaintext),
            )
        )
        return rows


def _plaintext(port: int, nodes: list[str]) -> str:
    """The plaintext DICOM port and the nodes enrolled to use it, in words."""
    if not nodes:
        return f"port {port} open, no node may use it" if port else "closed"
    state = f"open on port {port}" if port else "closed (the port is off)"
    return f"{state} for {', '.join(nodes)}"


def _check_rights(allow: str) -> None:
    """Refuse rights other than those of the form's "May" boxes, naming that field."""
    try:
        parse_permissions(allow)
    except EnrolmentError:
        raise EnrolmentError(f"May: tick one or more of {', '.join(PERMISSIONS)}") from None


def check_form(ae_title: str, host: str, allow: str, port: int | None) -> None:
    """Refuse what the enrolment form cannot enrol, in the words of its fields (the CLI's name flags)."""
    problem = check_ae_title(ae_title)
    if problem:
        raise EnrolmentError(f"AE title {ae_title!r} {problem} (it has {len(ae_title)})")
    try:
        parse_network(host)
    except EnrolmentError:
        raise EnrolmentError(
            f"Address (IP or CIDR): {host!r} is not an IP address or CIDR network, "
            "such as 10.0.0.5 or 10.0.1.0/24"
        ) from None
    if port is not None and not 0 < port < 65536:
        raise EnrolmentError(f"Port for retrieves: {port} is not a port number (1 to 65535)")
    _check_rights(allow)


def _phi_grants(nodes: list[EnrolledNode]) -> StatusRow:
    """The nodes that may read patient data, with their rights and transport."""
    granted = [n for n in nodes if n.permissions & PHI_PERMISSIONS]
    listed = [
        f"{n.ae_title} at {n.network} ({','.join(sorted(n.permissions & PHI_PERMISSIONS))}"
        + (", PLAINTEXT" if n.plaintext else "")
        + ")"
        for n in granted
    ]
    return StatusRow("PHI grants (find, move, get)", "; ".join(listed) or "none")
