"""``pacs selfcheck``: the archive's security posture, checked from the inside.

Each check looks at one thing a scanner or an auditor would look at (file modes, keys,
certificates, open plaintext DICOM, query rights, second factors, index encryption, the
audit chain, free disk, backups, TLS, DICOMweb tokens and CORS) and yields :class:`Finding`
objects, each with the fix spelled out. Anything that is acceptable but worth knowing is a
:class:`Note`. The command exits non-zero when there is any finding. The checks live by subject in
:mod:`~pacs.ops.selfcheck.files`, :mod:`~pacs.ops.selfcheck.certificates`,
:mod:`~pacs.ops.selfcheck.access`, :mod:`~pacs.ops.selfcheck.trail` and
:mod:`~pacs.ops.selfcheck.forwarding` (``[[route]]`` destinations, failed jobs) and
:mod:`~pacs.ops.selfcheck.web_exposure` (who can reach the web viewer).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pacs.core.context import Context
from pacs.core.events import BACKUP_WHAT
from pacs.ops.selfcheck.access import (
    check_access_tokens,
    check_phi_grants,
    check_plaintext,
    check_query_rights,
    check_second_factor,
)
from pacs.ops.selfcheck.certificates import check_certificates, check_tls
from pacs.ops.selfcheck.files import (
    check_disk,
    check_index_encryption,
    check_key_location,
    check_key_rotation,
    check_permissions,
)
from pacs.ops.selfcheck.forwarding import check_forwarding
from pacs.ops.selfcheck.report import Check, Finding, Note, Report, Result
from pacs.ops.selfcheck.trail import check_audit_chain, check_audit_checkpoints, check_backup
from pacs.ops.selfcheck.web_exposure import check_web_exposure

__all__ = ["BACKUP_WHAT", "CHECKS", "Check", "Finding", "Note", "Report", "Result", "run"]

CHECKS: dict[str, Check] = {
    "permissions": check_permissions,
    "key-location": check_key_location,
    "certificates": check_certificates,
    "plaintext-dicom": check_plaintext,
    "query-rights": check_query_rights,
    "phi-grants": check_phi_grants,
    "second-factor": check_second_factor,
    "access-tokens": check_access_tokens,
    "index-encryption": check_index_encryption,
    "key-rotation": check_key_rotation,
    "audit-chain": check_audit_chain,
    "audit-checkpoints": check_audit_checkpoints,
    "disk": check_disk,
    "backup": check_backup,
    "tls": check_tls,
    "forwarding": check_forwarding,
    "web-exposure": check_web_exposure,
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
