"""The security assessment: the evidence of each control, gathered for a report a clinic can file.

:func:`assess` runs ``pacs selfcheck``'s checks and collects, beside their findings: the
archive (AE title, host name, ports, version), the TLS profile of both ports as a scanner
sees it (:mod:`pacs.ops.assessment_tls`), the enrolled nodes and their rights, the users and
their second factors, the encryption of files and index, the audit chain and a checkpoint of
it, backups, certificates, alerts and trusted networks. Each control's state is that of
selfcheck's findings of its checks, so the report and ``pacs selfcheck`` never disagree.
:mod:`pacs.ops.assessment_render` turns an :class:`Assessment` into HTML and PDF, and
:mod:`pacs.ops.assessment_report` writes, keeps and audits it.
"""

from __future__ import annotations

import importlib.metadata
import ssl
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from pacs.core import pki, tls
from pacs.core.audit import GENESIS
from pacs.core.checkpoints import Signer
from pacs.core.context import CA_CERT, SERVER_CERT, SERVER_KEY, Context
from pacs.core.nodes import PHI_PERMISSIONS, NodeRegistry
from pacs.ops import assessment_tls as probe
from pacs.ops.assessment_history import ReportEntry, ReportHistory
from pacs.ops.assessment_people import UserRow, users
from pacs.ops.selfcheck import Report, run
from pacs.ops.selfcheck.trail import last_backup
from pacs.ops.status import certificate_status
from storage import rotation

Rows = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Control:
    """One control: its state (``ok``, ``finding``), what was looked at, and the evidence."""

    name: str
    checks: tuple[str, ...]
    state: str
    evidence: Rows


@dataclass(frozen=True)
class NodeRow:
    """An enrolled node as the report lists it."""

    ae_title: str
    network: str
    port: str
    rights: str
    phi: bool
    certificate: str
    expires: str
    plaintext: bool


@dataclass
class Assessment:
    """Everything the report shows."""

    written_at: datetime
    archive: Rows
    report: Report
    ports: list[probe.PortProfile]
    nodes: list[NodeRow]
    users: list[UserRow]
    controls: list[Control] = field(default_factory=list)
    history: list[ReportEntry] = field(default_factory=list)
    checkpoint: str = ""


def _version() -> str:
    try:
        return importlib.metadata.version("mini-pacs")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _archive(pacs: Context) -> Rows:
    settings = pacs.settings
    plaintext = settings.dicom.plaintext_port
    return (
        ("AE title", settings.dicom.ae_title),
        ("host name", settings.server.hostname),
        ("DICOM port (TLS)", f"{settings.dicom.bind}:{settings.dicom.port}"),
        ("web port (HTTPS)", f"{settings.web.bind}:{settings.web.port}"),
        ("plaintext DICOM port", str(plaintext) if plaintext else "off"),
        ("data directory", str(settings.data_dir)),
        ("software", f"mini-pacs {_version()}"),
    )


def _local(bind: str) -> str:
    """Where to reach a listener bound to `bind` from this host."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)


def _configured_chain(pacs: Context) -> list[probe.CertificateFacts]:
    tls_dir = pacs.settings.tls_dir
    return [
        probe.describe(pki.load_certificate(tls_dir / SERVER_CERT), "server certificate (tls/server.crt)"),
        probe.describe(pki.load_certificate(tls_dir / CA_CERT), "issuing CA (tls/ca.crt)"),
    ]


def tls_profiles(pacs: Context) -> list[probe.PortProfile]:
    """Both ports probed on the wire where they answer, else described from the configuration."""
    settings = pacs.settings
    certs, keys = settings.tls_dir, settings.key_dir
    identity = probe.ClientIdentity(certs / SERVER_CERT, keys / SERVER_KEY)
    dicom_host, web_host = _local(settings.dicom.bind), _local(settings.web.bind)
    dicom = tls.server_context(certs / SERVER_CERT, keys / SERVER_KEY, certs / CA_CERT)
    web = tls.https_context(str(certs / SERVER_CERT), str(keys / SERVER_KEY))
    return [
        _profile(pacs, "DICOM", dicom_host, settings.dicom.port, dicom, identity),
        _profile(pacs, "web", web_host, settings.web.port, web, None),
    ]


def _profile(
    pacs: Context,
    name: str,
    host: str,
    port: int,
    context: ssl.SSLContext,
    identity: probe.ClientIdentity | None,
) -> probe.PortProfile:
    """The port probed if it answers (and the probe was not cut short), else its configured profile."""
    chain = _configured_chain(pacs)
    if not probe.answers(host, port):
        return probe.configured(name, host, port, context, chain)
    probed = probe.probe(name, host, port, identity=identity, ca=pacs.settings.tls_dir / CA_CERT)
    profile = probe.configured(name, host, port, context, chain)
    if not probed.cut_short(profile):
        return probed
    profile.note = (
        "the port is running but closed some of the probe's connections unanswered: its connection "
        "throttle refuses this address for a while after repeated failed connections (such as a "
        "report moments ago); profile of the configuration"
    )
    return profile


def nodes(pacs: Context) -> list[NodeRow]:
    """The enrolled nodes, their rights and certificates."""
    rows = []
    for node in NodeRegistry(pacs.database).all():
        expires = ""
        if node.cert_pem:
            cert = x509.load_pem_x509_certificate(node.cert_pem.encode())
            expires = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        issued = "issued by our CA" if node.cert_issued else "pinned"
        rows.append(
            NodeRow(
                ae_title=node.ae_title,
                network=str(node.network),
                port=str(node.port) if node.port else "",
                rights=", ".join(sorted(node.permissions)),
                phi=bool(node.permissions & PHI_PERMISSIONS),
                certificate=f"{issued}, {node.fingerprint[:16]}",
                expires=expires,
                plaintext=node.plaintext,
            )
        )
    return rows


def _encryption(pacs: Context) -> Rows:
    keyring = pacs.keyring
    index = (
        "SQLCipher (encrypted with a key derived from KEK version 1)"
        if pacs.database.is_sqlite
        else "PostgreSQL: the index is in clear on its server (known limitation, docs/SECURITY.md)"
    )
    left = rotation.pending(pacs.database, keyring.current_version)
    return (
        ("objects", "AES-256-GCM per object, its data key wrapped by a key-encryption key (KEK)"),
        ("index", index),
        (
            "KEK versions",
            ", ".join(str(v) for v in keyring.versions) + f" (current {keyring.current_version})",
        ),
        ("rotation", f"{left} data keys still under an older KEK" if left else "complete"),
        ("key directory", str(pacs.settings.key_dir)),
    )


def _audit(pacs: Context, chain_checkpoint: str) -> Rows:
    chain = pacs.audit.verify()
    audit = pacs.settings.audit
    sinks = [s for s in (audit.syslog_socket, audit.remote_syslog) if s] or ["standard error only"]
    verdict = "intact" if chain.ok else f"BROKEN: {'; '.join(chain.problems[:3])}"
    return (
        ("records", str(chain.records)),
        ("hash chain", verdict),
        ("acknowledged problems", str(len(chain.acknowledged))),
        (
            "signed checkpoints",
            f"every {audit.checkpoint_minutes} minutes to {', '.join(sinks)}"
            if audit.checkpoint_minutes
            else "off",
        ),
        ("checkpoint of this report", chain_checkpoint),
    )


def _backups(pacs: Context, now: datetime) -> Rows:
    when = last_backup(pacs)
    if when is None:
        return (("last successful backup", "never"),)
    return (("last successful backup", f"{when:%Y-%m-%d %H:%M} UTC, {(now - when).days} days ago"),)


def _certificates(pacs: Context, now: datetime) -> Rows:
    rows = []
    for label, name in (("server certificate", SERVER_CERT), ("CA certificate", CA_CERT)):
        cert = pki.load_certificate(pacs.settings.tls_dir / name)
        status = certificate_status(cert, now)
        rows.append((label, f"valid until {cert.not_valid_after_utc:%Y-%m-%d} ({status.days:.0f} days)"))
    return tuple(rows)


def _alerts(pacs: Context) -> Rows:
    alerts = getattr(pacs.settings, "alerts", None)
    mail = getattr(alerts, "smtp_host", "")
    syslog = getattr(alerts, "syslog_host", "")
    if not mail and not syslog:
        return (("alerts", "not configured: nobody is told of findings, lockouts or a broken chain"),)
    rows = []
    if mail:
        to = ", ".join(getattr(alerts, "mail_to", ()))
        rows.append(("e-mail", f"{mail} ({getattr(alerts, 'smtp_security', '')}) to {to}"))
    if syslog:
        rows.append(("syslog over TLS", f"{syslog}:{getattr(alerts, 'syslog_port', '')}"))
    return tuple(rows)


def _networks(pacs: Context) -> Rows:
    web = pacs.settings.web
    allowed = getattr(web, "allowed_networks", None)
    proxies = getattr(web, "trusted_proxies", None)
    everyone = "not configured: any address" if allowed is None else "any address"
    return (
        ("web viewer answers", ", ".join(allowed) if allowed else everyone),
        ("trusted reverse proxies", ", ".join(proxies) if proxies else "none"),
        ("access tokens accepted from", ", ".join(web.token_networks) or "any address"),
        ("CORS origins", ", ".join(web.cors_origins) or "none"),
    )


def _control(
    report: Report, name: str, checks: tuple[str, ...], evidence: Rows, *, off: bool = False
) -> Control:
    """The control `name`: a finding when selfcheck found one in `checks`, else ok (or, when `off`, off)."""
    found = any(f.check in checks for f in report.findings)
    return Control(name, checks, "finding" if found else ("not configured" if off else "ok"), evidence)


def _controls(pacs: Context, report: Report, now: datetime, checkpoint: str) -> list[Control]:
    alerts = _alerts(pacs)
    return [
        _control(report, "Encryption of files and index", ENCRYPTION_CHECKS, _encryption(pacs)),
        _control(report, "Audit trail", ("audit-chain", "audit-checkpoints"), _audit(pacs, checkpoint)),
        _control(report, "Backups", ("backup",), _backups(pacs, now)),
        _control(report, "Certificates", ("certificates",), _certificates(pacs, now)),
        _control(report, "Alerts", ("alerts",), alerts, off=alerts[0][1].startswith("not configured")),
        _control(report, "Trusted networks", ("web-exposure", "access-tokens"), _networks(pacs)),
    ]


ENCRYPTION_CHECKS = ("index-encryption", "key-rotation", "key-location", "permissions")


def assess(pacs: Context, now: datetime) -> Assessment:
    """Run selfcheck and gather the evidence of every control, as of `now`."""
    report = run(pacs, now)
    newest = pacs.audit.newest()
    checkpoint = Signer(pacs.keyring).line(*(newest or (0, GENESIS)), now=now)
    assessment = Assessment(
        written_at=now,
        archive=_archive(pacs),
        report=report,
        ports=tls_profiles(pacs),
        nodes=nodes(pacs),
        users=users(pacs),
        history=ReportHistory(pacs.settings.data_dir).entries(),
        checkpoint=checkpoint,
    )
    assessment.controls = _controls(pacs, report, now, checkpoint)
    return assessment
