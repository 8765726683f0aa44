"""Enrolled DICOM nodes (modalities and workstations): enrolment, listing and removal.

A node is an AE title, an address (one IP or a CIDR network), an optional port for
retrieves sent to it, its permissions and exactly one client certificate, identified by
its SHA-256 fingerprint: either issued by our CA at enrolment or the node's own,
pinned. A new node may store and nothing else unless more is granted.

Find, move and get let a node read every patient's data: they are *PHI grants*. Through
the web only an account with both the admin and the physician role may make one
(:func:`check_phi_grant`); the command line is the appliance's operator. Either way the
audit record of the change (:func:`pacs.core.events.node_changed`) names the rights it granted
(``phi_grant``).
"""

from __future__ import annotations

import io
import ipaddress
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from pacs.core import pki
from pacs.core.config import check_ae_title
from storage.db import Database
from storage.errors import PacsError
from storage.models import Node

PERMISSIONS = ("store", "find", "move", "get")
DEFAULT_PERMISSIONS = frozenset({"store"})
PHI_PERMISSIONS = frozenset({"find", "move", "get"})
PHI_GRANTOR_ROLES = frozenset({"admin", "physician"})
CLI_AUTHORITY = "operator on the appliance (command line)"
WEB_AUTHORITY = "admin and physician (web)"


class EnrolmentError(PacsError, ValueError):
    """A node cannot be enrolled or removed as asked; the message says why."""


class PhiGrantError(EnrolmentError):
    """Find, move or get asked for by an account that may not grant them; `details` for the audit."""

    def __init__(self, message: str, details: dict[str, object]) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class EnrolledNode:
    """An immutable view of one enrolled node, as the association policy sees it."""

    ae_title: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None
    permissions: frozenset[str]
    fingerprint: str
    subject: str
    cert_pem: str
    cert_issued: bool
    plaintext: bool

    def allows(self, permission: str) -> bool:
        """Whether this node was granted `permission` (store, find, move or get)."""
        return permission in self.permissions


def parse_network(host: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse an IP address or CIDR network; raise :class:`EnrolmentError` naming it if invalid."""
    try:
        return ipaddress.ip_network(host.strip(), strict=True)
    except ValueError as exc:
        raise EnrolmentError(f"--host {host!r} is not an IP address or CIDR network ({exc})") from None


def parse_permissions(allow: str) -> frozenset[str]:
    """Parse a comma-separated permission list such as ``store,find``."""
    granted = frozenset(p.strip().lower() for p in allow.split(",") if p.strip())
    unknown = sorted(granted - set(PERMISSIONS))
    if unknown or not granted:
        raise EnrolmentError(
            f"--allow {allow!r}: permissions are a comma-separated subset of {','.join(PERMISSIONS)}"
        )
    return granted


def phi_grant(permissions: frozenset[str], before: frozenset[str] = frozenset()) -> list[str]:
    """The rights to patient data (find, move, get) in `permissions` that `before` lacked, sorted."""
    return sorted((permissions - before) & PHI_PERMISSIONS)


def check_phi_grant(
    ae_title: str,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    permissions: frozenset[str],
    *,
    roles: frozenset[str],
    before: frozenset[str] = frozenset(),
) -> None:
    """Raise :class:`PhiGrantError` if `permissions` add find, move or get and `roles` lack either role."""
    granted = phi_grant(permissions, before)
    if granted and not roles >= PHI_GRANTOR_ROLES:
        raise PhiGrantError(
            f"granting {','.join(granted)} lets {ae_title} read every patient's data; only an admin "
            "who is also a physician may grant it",
            {
                "ae_title": ae_title,
                "host": str(network),
                "permissions": sorted(permissions),
                "phi_grant": granted,
            },
        )


def _view(row: Node) -> EnrolledNode:
    return EnrolledNode(
        ae_title=row.ae_title,
        network=ipaddress.ip_network(row.host),
        port=row.port,
        permissions=frozenset(p for p in row.permissions.split(",") if p),
        fingerprint=row.cert_fingerprint,
        subject=row.cert_subject,
        cert_pem=row.cert_pem,
        cert_issued=row.cert_issued,
        plaintext=row.plaintext,
    )


def check_enrolment(
    ae_title: str, *, host: str, port: int | None, plaintext: bool
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Validate an enrolment before anything is written; return the parsed network."""
    problem = check_ae_title(ae_title)
    if problem:
        raise EnrolmentError(f"AE title {ae_title!r} {problem}")
    network = parse_network(host)
    if plaintext and network.num_addresses != 1:
        raise EnrolmentError("--plaintext needs the node's exact address in --host, not a network")
    if port is not None and not 0 < port < 65536:
        raise EnrolmentError(f"--port {port} is not a port number")
    return network


class NodeRegistry:
    """The enrolled nodes of one archive, read fresh from the index on every call."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def all(self) -> list[EnrolledNode]:
        """Every enrolled node, by AE title."""
        with self._database.read() as session:
            return [_view(row) for row in session.scalars(select(Node).order_by(Node.ae_title))]

    def get(self, ae_title: str) -> EnrolledNode | None:
        """The node enrolled as `ae_title`, or None."""
        with self._database.read() as session:
            row = session.scalars(select(Node).where(Node.ae_title == ae_title)).one_or_none()
            return _view(row) if row is not None else None

    def add(
        self,
        ae_title: str,
        *,
        host: str,
        certificate: x509.Certificate,
        cert_issued: bool,
        permissions: frozenset[str] = DEFAULT_PERMISSIONS,
        port: int | None = None,
        plaintext: bool = False,
    ) -> EnrolledNode:
        """Enrol a node; raise :class:`EnrolmentError` for bad input or a duplicate AE title."""
        network = check_enrolment(ae_title, host=host, port=port, plaintext=plaintext)
        row = Node(
            ae_title=ae_title,
            host=str(network),
            port=port,
            permissions=",".join(p for p in PERMISSIONS if p in permissions),
            cert_fingerprint=pki.fingerprint(certificate),
            cert_subject=certificate.subject.rfc4514_string()[:256],
            cert_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
            cert_issued=cert_issued,
            plaintext=plaintext,
            created_at=datetime.now(UTC),
        )
        try:
            with self._database.write() as session:
                session.add(row)
        except IntegrityError:
            raise EnrolmentError(f"a node with AE title {ae_title!r} is already enrolled") from None
        return _view(row)

    def change_permissions(
        self, ae_title: str, permissions: frozenset[str], *, roles: frozenset[str]
    ) -> tuple[EnrolledNode, EnrolledNode]:
        """Give `ae_title` exactly `permissions`, checked by :func:`check_phi_grant`; return before and after.

        The check runs in the writing transaction, so it judges the rights the node holds then.
        """
        with self._database.write() as session:
            row = session.scalars(select(Node).where(Node.ae_title == ae_title)).one_or_none()
            if row is None:
                raise EnrolmentError(f"no node with AE title {ae_title!r} is enrolled")
            before = _view(row)
            check_phi_grant(ae_title, before.network, permissions, roles=roles, before=before.permissions)
            row.permissions = ",".join(p for p in PERMISSIONS if p in permissions)
            after = _view(row)
        return before, after

    def remove(self, ae_title: str) -> EnrolledNode:
        """Remove the node enrolled as `ae_title`; raise :class:`EnrolmentError` if there is none."""
        with self._database.write() as session:
            row = session.scalars(select(Node).where(Node.ae_title == ae_title)).one_or_none()
            if row is None:
                raise EnrolmentError(f"no node with AE title {ae_title!r} is enrolled")
            node = _view(row)
            session.execute(delete(Node).where(Node.id == row.id))
        return node


def issue_node_certificate(
    ca: pki.Issued, ae_title: str, outdir: Path, *, server_auth: bool = False
) -> x509.Certificate:
    """Issue a certificate for `ae_title`; write client.crt, client.key (0600) and ca.crt to `outdir`.

    With `server_auth` the certificate also serves TLS, for a node that receives retrieves.
    """
    outdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in ("client.crt", "client.key"):
        if (outdir / name).exists():
            raise EnrolmentError(f"{outdir / name} already exists; not overwriting it")
    issued = pki.issue_client_cert(ca, ae_title, server_auth=server_auth)
    pki.write_private_key(outdir / "client.key", issued.key)
    pki.write_certificate(outdir / "client.crt", issued.cert)
    pki.write_certificate(outdir / "ca.crt", ca.cert)
    return issued.cert


def issue_node_pem(
    ca: pki.Issued, ae_title: str, *, server_auth: bool = False
) -> tuple[x509.Certificate, bytes]:
    """Issue a certificate for `ae_title` in memory; return it and a ZIP of client.crt/client.key/ca.crt.

    For the admin web page: the private key goes to the browser once and is kept nowhere.
    """
    issued = pki.issue_client_cert(ca, ae_title, server_auth=server_auth)
    key_pem = issued.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("client.crt", issued.cert.public_bytes(serialization.Encoding.PEM))
        bundle.writestr("client.key", key_pem)
        bundle.writestr("ca.crt", ca.cert.public_bytes(serialization.Encoding.PEM))
    return issued.cert, buffer.getvalue()
