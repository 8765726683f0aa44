"""``pacs selfcheck``: the archive's security posture, checked from the inside.

Each check looks at one thing a scanner or an auditor would look at (file modes, keys,
certificates, open plaintext DICOM, query rights, second factors, index encryption, the
audit chain, free disk, backups, TLS) and yields :class:`Finding` objects, each with the
fix spelled out. Anything that is acceptable but worth knowing is a :class:`Note`. The
command exits non-zero when there is any finding.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import func, select

from pacs.core import pki, tls
from pacs.core.accounts import Accounts
from pacs.core.audit import EventID, Outcome
from pacs.core.config import CONFIG_NAME
from pacs.core.context import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, Context
from pacs.core.nodes import NodeRegistry
from pacs.ops.phi_grants import phi_grants
from storage import rotation
from storage.db import Instance

CERT_WARNING_DAYS = 30
BACKUP_MAX_AGE = timedelta(days=7)
ENROLMENT_GRACE = timedelta(days=3)
BACKUP_WHAT = "backup"
_WEAK_CIPHER_WORDS = ("NULL", "RC4", "DES", "MD5", "EXPORT", "anon", "PSK", "SRP", "CBC")


@dataclass(frozen=True)
class Finding:
    """Something to fix: which check found it, what is wrong, and how to fix it."""

    check: str
    message: str
    fix: str


@dataclass(frozen=True)
class Note:
    """Something acceptable that the admin should know about."""

    check: str
    message: str


@dataclass
class Report:
    """The outcome of every check."""

    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no check found anything to fix."""
        return not self.findings

    def to_json(self) -> str:
        """The report as one JSON document."""
        return json.dumps(
            {
                "ok": self.ok,
                "checked": self.checked,
                "findings": [asdict(f) for f in self.findings],
                "notes": [asdict(n) for n in self.notes],
            },
            indent=2,
        )


Result = Finding | Note
Check = Callable[[Context, datetime], Iterator[Result]]


def _loose(path: Path) -> int:
    """The group/other permission bits of `path` (0 when private)."""
    return stat.S_IMODE(path.lstat().st_mode) & 0o077


def check_permissions(pacs: Context, now: datetime) -> Iterator[Result]:
    """Data, key and config files must be private to the service's user."""
    settings = pacs.settings
    directories = [settings.data_dir, settings.key_dir, settings.blob_dir, settings.tls_dir]
    files = [settings.data_dir / CONFIG_NAME, *sorted(p for p in settings.key_dir.iterdir() if p.is_file())]
    if pacs.database.is_sqlite:
        files.append(settings.index_path)
    for path in directories + files:
        if not path.exists():
            yield Finding("permissions", f"{path} is missing", "restore it from a backup (pacs restore)")
            continue
        loose = _loose(path)
        if loose:
            wanted = "0700" if path.is_dir() else "0600"
            mode = stat.S_IMODE(path.lstat().st_mode)
            yield Finding(
                "permissions",
                f"{path} has mode {mode:04o}: group or others may {'enter' if path.is_dir() else 'read'} it",
                f"chmod {wanted} {path}",
            )


def check_key_location(pacs: Context, now: datetime) -> Iterator[Result]:
    """The key-encryption keys must not sit with the blobs they protect."""
    settings = pacs.settings
    if settings.key_dir.is_relative_to(settings.blob_dir.resolve()):
        yield Finding(
            "key-location",
            f"the key directory {settings.key_dir} is inside the blob directory",
            "move it out (e.g. to /etc/pacs/keys) and set [storage] key_dir in pacs.toml",
        )
    elif settings.key_dir.is_relative_to(settings.data_dir):
        yield Note(
            "key-location",
            f"the keys are in {settings.key_dir}, inside the data directory: a copy of that directory "
            "can be read; an appliance keeps them apart (install.sh uses /etc/pacs/keys)",
        )


def _certificate_results(label: str, cert: x509.Certificate, now: datetime, renew: str) -> Iterator[Result]:
    days = pki.days_until_expiry(cert, now)
    if cert.not_valid_before_utc > now:
        yield Finding(
            "certificates",
            f"the {label} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
            "check the appliance's clock",
        )
    elif days < 0:
        yield Finding(
            "certificates",
            f"the {label} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            renew,
        )
    elif days < CERT_WARNING_DAYS:
        yield Finding(
            "certificates",
            f"the {label} expires in {int(days)} days, on {cert.not_valid_after_utc:%Y-%m-%d}",
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
    for account in Accounts(pacs.database, pacs.keyring).all():
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


def check_index_encryption(pacs: Context, now: datetime) -> Iterator[Result]:
    """The index holds PHI: SQLCipher must encrypt it; PostgreSQL keeps it in clear."""
    if not pacs.database.is_sqlite:
        yield Finding(
            "index-encryption",
            "the index is in PostgreSQL, which holds patient names, IDs and the audit trail in clear "
            "(the images stay encrypted)",
            "use the embedded encrypted index (empty [storage] db_url), or keep PostgreSQL on an encrypted "
            "disk of this appliance, reached over TLS or a local socket, as docs/SECURITY.md describes",
        )
        return
    with open(pacs.settings.index_path, "rb") as handle:
        head = handle.read(16)
    if head == b"SQLite format 3\x00":
        yield Finding(
            "index-encryption",
            f"{pacs.settings.index_path} is an unencrypted SQLite file",
            "restore the archive from a backup into a new data directory (pacs restore)",
        )


def check_key_rotation(pacs: Context, now: datetime) -> Iterator[Result]:
    """No data key is left under an older key-encryption key by an unfinished rotation."""
    current = pacs.keyring.current_version
    left = rotation.pending(pacs.database, current)
    if left:
        yield Finding(
            "key-rotation",
            f"{left} data keys are still wrapped by a key-encryption key older than {current}: "
            "a rotation did not finish",
            "run 'pacs keys rotate' again: it carries on where the last one stopped",
        )


def check_audit_chain(pacs: Context, now: datetime) -> Iterator[Result]:
    """The audit trail's hash chain is unbroken."""
    report = pacs.audit.verify()
    for problem in report.problems:
        yield Finding(
            "audit-chain",
            f"audit trail: {problem}",
            "find out who changed the index database, then acknowledge: pacs audit verify --reanchor",
        )


def check_audit_checkpoints(pacs: Context, now: datetime) -> Iterator[Result]:
    """Signed checkpoints of the audit trail go to a log the service account cannot rewrite."""
    audit = pacs.settings.audit
    if not audit.checkpoint_minutes:
        yield Finding(
            "audit-checkpoints",
            "audit checkpoints are off: someone with the service account could roll the trail back unseen",
            "set [audit] checkpoint_minutes (default 60) in pacs.toml",
        )
        return
    if audit.syslog_socket and not Path(audit.syslog_socket).is_socket():
        yield Note(
            "audit-checkpoints",
            f"the syslog socket {audit.syslog_socket} is missing: pacs serve writes its audit checkpoints "
            "to standard error only (the journal under systemd, the container log under Docker)",
        )
    ca = Path(audit.remote_syslog_ca or pacs.settings.tls_dir / CA_CERT)
    if audit.remote_syslog and not os.access(ca, os.R_OK):
        yield Finding(
            "audit-checkpoints",
            f"the CA file {ca} for the remote syslog server {audit.remote_syslog} cannot be read",
            "set [audit] remote_syslog_ca to the PEM file of the CA that issued the server's certificate",
        )


def check_disk(pacs: Context, now: datetime) -> Iterator[Result]:
    """Free disk stays above the watermark, with room to spare."""
    watermark = pacs.settings.storage.min_free_mb
    free = shutil.disk_usage(pacs.settings.blob_dir).free // 2**20
    if watermark == 0:
        yield Finding(
            "disk",
            "no free-space watermark: a full disk would fail stores half-way",
            "set [storage] min_free_mb (default 1024) in pacs.toml",
        )
    elif free < 2 * watermark:
        state = "below" if free < watermark else "near"
        yield Finding(
            "disk",
            f"{free} MiB free, {state} the {watermark} MiB watermark: "
            + (
                "new objects are refused (0xA700)" if free < watermark else "new objects will soon be refused"
            ),
            "free disk space or move the archive to a larger disk",
        )


def last_backup(pacs: Context) -> datetime | None:
    """When the last successful ``pacs backup`` finished, from the audit trail.

    Backups are Export events among the downloads and exports, so the search pages
    back through every Export until it finds one.
    """
    page, offset = 1000, 0
    while records := pacs.audit.search(event_id=str(EventID.EXPORT), limit=page, offset=offset):
        for record in records:
            details = json.loads(record.details)
            if record.outcome == int(Outcome.SUCCESS) and details.get("what") == BACKUP_WHAT:
                return datetime.fromisoformat(record.recorded_at)
        offset += page
    return None


def check_backup(pacs: Context, now: datetime) -> Iterator[Result]:
    """A successful backup in the last 7 days (once the archive holds anything)."""
    with pacs.database.read() as session:
        stored = session.scalar(select(func.count()).select_from(Instance)) or 0
    when = last_backup(pacs)
    if when is None and stored == 0:
        yield Note("backup", "no backup yet (the archive is empty)")
    elif when is None:
        yield Finding(
            "backup",
            f"the archive holds {stored} objects and has never been backed up",
            "run 'pacs backup FILE' now and daily (e.g. a systemd timer), and keep copies off the appliance",
        )
    elif now - when > BACKUP_MAX_AGE:
        yield Finding(
            "backup",
            f"the last successful backup is from {when:%Y-%m-%d}, {(now - when).days} days ago",
            "run 'pacs backup FILE' now and daily, and keep copies off the appliance",
        )


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


CHECKS: dict[str, Check] = {
    "permissions": check_permissions,
    "key-location": check_key_location,
    "certificates": check_certificates,
    "plaintext-dicom": check_plaintext,
    "query-rights": check_query_rights,
    "phi-grants": check_phi_grants,
    "second-factor": check_second_factor,
    "index-encryption": check_index_encryption,
    "key-rotation": check_key_rotation,
    "audit-chain": check_audit_chain,
    "audit-checkpoints": check_audit_checkpoints,
    "disk": check_disk,
    "backup": check_backup,
    "tls": check_tls,
}


def run(pacs: Context, now: datetime | None = None) -> Report:
    """Run every check against the open archive `pacs`."""
    now = now or datetime.now(UTC)
    report = Report()
    for name, check in CHECKS.items():
        report.checked.append(name)
        for result in check(pacs, now):
            if isinstance(result, Finding):
                report.findings.append(result)
            else:
                report.notes.append(result)
    return report
