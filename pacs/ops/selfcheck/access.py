"""Checks of who may reach patient data: DICOM nodes (plaintext, query rights, PHI grants) and accounts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from pacs.core.accounts import Accounts
from pacs.core.context import Context
from pacs.core.nodes import NodeRegistry
from pacs.core.tokens import Tokens
from pacs.ops.phi_grants import phi_grants
from pacs.ops.selfcheck.report import Finding, Note, Result

ENROLMENT_GRACE = timedelta(days=3)


def check_plaintext(pacs: Context, now: datetime) -> Iterator[Result]:
    """Unencrypted DICOM: the plaintext port and the nodes allowed to use it."""
    port = pacs.settings.dicom.plaintext_port
    plain = [n for n in NodeRegistry(pacs.database).all() if n.plaintext]
    for node in plain:
        where = f"on port {port}" if port else "(the plaintext port is closed at the moment)"
        yield Finding(
            "plaintext-dicom",
            f"node {node.ae_title} at {node.network} may send UNENCRYPTED DICOM {where}: "
            "patient data crosses the network in clear",
            f"give it TLS (pacs modality remove {node.ae_title}, then add it with --issue-cert) or put a "
            "TLS tunnel (stunnel) in front of the old modality",
        )
    if port and not plain:
        yield Finding(
            "plaintext-dicom",
            f"the plaintext DICOM port {port} is open although no node may use it",
            "set [dicom] plaintext_port = 0 in pacs.toml and restart pacs serve",
        )


def check_query_rights(pacs: Context, now: datetime) -> Iterator[Result]:
    """Nodes that may query or retrieve patient data (find, move, get)."""
    for node in NodeRegistry(pacs.database).all():
        rights = sorted(node.permissions & {"find", "move", "get"})
        if not rights:
            continue
        if node.network.num_addresses > 1:
            yield Finding(
                "query-rights",
                f"node {node.ae_title} may {','.join(rights)} patient data from a whole network, "
                f"{node.network}",
                f"enrol it with its single address: pacs modality remove {node.ae_title}, then "
                f"pacs modality add {node.ae_title} --host ADDRESS --allow store,{','.join(rights)}",
            )
        else:
            yield Note(
                "query-rights",
                f"node {node.ae_title} at {node.network.network_address} may {','.join(rights)} patient data",
            )


def check_phi_grants(pacs: Context, now: datetime) -> Iterator[Result]:
    """Every PHI grant (find, move, get) and who made it; in clear or without an audit record, a finding."""
    for grant in phi_grants(NodeRegistry(pacs.database).all(), pacs.audit):
        node, rights = grant.node, ",".join(grant.rights)
        if node.plaintext:
            yield Finding(
                "phi-grants",
                f"node {node.ae_title} may {rights} every patient's data over UNENCRYPTED DICOM, where "
                "only its AE title and address identify it",
                f"take find, move and get away from it (Modalities page), or enrol {node.ae_title} over TLS",
            )
        if grant.unrecorded:
            yield Finding(
                "phi-grants",
                f"node {node.ae_title} may {','.join(grant.unrecorded)} patient data, and no audit record "
                "shows who granted it",
                "find out who changed the index database; then take the rights away (Modalities page) or "
                "enrol the node again, which is audited",
            )
        granted = f"; {grant.provenance()}" if grant.grantors else ""
        yield Note("phi-grants", f"PHI grant: node {node.ae_title} at {node.network} may {rights}{granted}")


def check_second_factor(pacs: Context, now: datetime) -> Iterator[Result]:
    """Every account has a second factor, or is a fresh one waiting for its first login."""
    for account in Accounts(pacs.database, pacs.keyring, audit=pacs.audit).all():
        if account.disabled or account.totp_enrolled:
            continue
        kind = "admin" if account.is_admin else "user"
        age = now - account.created_at
        if not account.must_change_password or age > ENROLMENT_GRACE:
            yield Finding(
                "second-factor",
                f"{kind} {account.name} has no second factor enrolled"
                + (
                    f" ({age.days} days after the account was set up)" if account.must_change_password else ""
                ),
                f"have {account.name} log in and enrol TOTP now, or disable the account: "
                f"pacs user disable {account.name} (pacs user reset {account.name} issues a new password)",
            )
        else:
            yield Note("second-factor", f"{kind} {account.name} enrols TOTP at the first login")


def check_access_tokens(pacs: Context, now: datetime) -> Iterator[Result]:
    """DICOMweb access tokens accepted from any address, and CORS origins whose pages are not HTTPS."""
    web = pacs.settings.web
    for origin in web.cors_origins:
        if not origin.startswith("https://"):
            yield Finding(
                "access-tokens",
                f"[web] cors_origins lets {origin} call DICOMweb: a page served without HTTPS can be "
                "altered on the way and the token typed into it taken",
                f"serve that viewer over HTTPS and list https://{origin.split('://', 1)[1]} instead",
            )
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    active = [t for t in Tokens(pacs.database, accounts, pacs.audit).all() if t.state(now) == "active"]
    if active and not web.token_networks:
        yield Note(
            "access-tokens",
            f"{len(active)} active DICOMweb access token(s) are accepted from any address; "
            "[web] token_networks can limit them to the networks their clients use",
        )
