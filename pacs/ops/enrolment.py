"""Enrolling, changing and removing DICOM nodes: the use case of ``pacs modality`` and the admin pages.

Each change is validated before anything is written and audited naming who made it. Find,
move and get are PHI grants (:func:`pacs.core.nodes.check_phi_grant`): the web admin must
hold both the admin and the physician role to make one, while the command line is the
appliance's operator (:func:`operator`), who may. A node's certificate is issued by our CA
into a directory (:class:`IssueInto`), issued in memory for a browser to download
(:class:`IssueBundle`), or the node's own, pinned (:class:`PinFile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from pacs.core import events, pki
from pacs.core.context import Context, load_ca
from pacs.core.nodes import (
    CLI_AUTHORITY,
    PHI_GRANTOR_ROLES,
    WEB_AUTHORITY,
    EnrolledNode,
    EnrolmentError,
    NodeRegistry,
    check_enrolment,
    check_phi_grant,
    issue_node_certificate,
    issue_node_pem,
    parse_permissions,
)


@dataclass(frozen=True)
class Authority:
    """Who changes the enrolled nodes, under which authority, holding which roles."""

    user: str
    name: str
    roles: frozenset[str]


def operator(user: str) -> Authority:
    """The operator on the appliance (the command line), who may grant find, move and get."""
    return Authority(user, CLI_AUTHORITY, PHI_GRANTOR_ROLES)


def web_admin(user: str, roles: frozenset[str]) -> Authority:
    """An admin on the web pages, whose `roles` decide whether a PHI grant is theirs to make."""
    return Authority(user, WEB_AUTHORITY, roles)


@dataclass(frozen=True)
class IssueInto:
    """Issue the node a certificate from our CA and write client.crt, client.key and ca.crt to `outdir`."""

    outdir: Path


@dataclass(frozen=True)
class IssueBundle:
    """Issue the node a certificate from our CA, returned with its key as a ZIP and kept nowhere."""


@dataclass(frozen=True)
class PinFile:
    """Pin the node's own certificate, read from the PEM file `path`."""

    path: Path


CertificateSource = IssueInto | IssueBundle | PinFile


@dataclass(frozen=True)
class Enrolled:
    """The node as enrolled, and the ZIP of its PEM files (empty unless issued as an :class:`IssueBundle`)."""

    node: EnrolledNode
    bundle: bytes = b""


def enrol(
    pacs: Context,
    ae_title: str,
    *,
    host: str,
    allow: str,
    port: int | None,
    certificate: CertificateSource,
    authority: Authority,
    plaintext: bool = False,
) -> Enrolled:
    """Enrol a node that may do what `allow` lists; audited as done by `authority`.

    Raises :class:`EnrolmentError` for bad input, a plaintext node while the plaintext port
    is off, or an AE title already enrolled, and :class:`pacs.core.nodes.PhiGrantError` for
    a PHI grant `authority` may not make; nothing is written then.
    """
    if plaintext and pacs.settings.dicom.plaintext_port == 0:
        raise EnrolmentError(
            "--plaintext needs a plaintext port: set [dicom] plaintext_port in pacs.toml first"
        )
    permissions = parse_permissions(allow)
    network = check_enrolment(ae_title, host=host, port=port, plaintext=plaintext)
    check_phi_grant(ae_title, network, permissions, roles=authority.roles)
    registry = NodeRegistry(pacs.database)
    if registry.get(ae_title) is not None:
        raise EnrolmentError(f"a node with AE title {ae_title!r} is already enrolled")
    cert, bundle = _certificate(pacs, certificate, ae_title, server_auth=port is not None)
    node = registry.add(
        ae_title,
        host=host,
        certificate=cert,
        cert_issued=not isinstance(certificate, PinFile),
        permissions=permissions,
        port=port,
        plaintext=plaintext,
    )
    pacs.audit.append(events.node_enrolled(node, by=authority.user, authority=authority.name))
    return Enrolled(node, bundle)


def _certificate(
    pacs: Context, source: CertificateSource, ae_title: str, *, server_auth: bool
) -> tuple[x509.Certificate, bytes]:
    """The node's certificate from `source`, and the ZIP of its PEM files if issued in memory."""
    if isinstance(source, PinFile):
        return pki.load_certificate(source.path), b""
    ca = load_ca(pacs.settings)
    if isinstance(source, IssueInto):
        return issue_node_certificate(ca, ae_title, source.outdir, server_auth=server_auth), b""
    return issue_node_pem(ca, ae_title, server_auth=server_auth)


def change_rights(pacs: Context, ae_title: str, allow: str, *, authority: Authority) -> bool:
    """Give a node exactly the rights in `allow`; False if it had them already, else audited.

    Narrowing is open to any admin; adding find, move or get is a PHI grant, refused with
    :class:`pacs.core.nodes.PhiGrantError` unless `authority` may make it.
    """
    permissions = parse_permissions(allow)
    before, after = NodeRegistry(pacs.database).change_permissions(
        ae_title, permissions, roles=authority.roles
    )
    if before.permissions == after.permissions:
        return False
    pacs.audit.append(events.node_rights_changed(before, after, by=authority.user, authority=authority.name))
    return True


def remove(pacs: Context, ae_title: str, *, user: str) -> EnrolledNode:
    """Remove an enrolled node, audited as done by `user`; return it as it was."""
    node = NodeRegistry(pacs.database).remove(ae_title)
    pacs.audit.append(events.node_removed(node, by=user))
    return node
