"""The web viewer's admin pages: the audit log, the system status, and CSRF on every admin form.

Everything here touches the index (accounts, sessions, nodes, the audit chain), so every
test runs on both backends (the ``pacs`` fixture). Time is a fake clock (see
:mod:`tests.web.web_helpers`); the app gets the real admin backend, :class:`pacs.serve.webadmin.PacsAdmin`.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime

from sqlalchemy import update

from pacs.core import pki
from pacs.core.audit import Action, AuditEvent, EventID
from pacs.core.context import CA_CERT, CA_KEY, SERVER_CERT
from pacs.core.nodes import NodeRegistry
from pacs.serve.webadmin import PacsAdmin
from storage.models import AuditRecord
from tests.web.admin.admin_helpers import (
    _CHAIN,
    SCRIPT,
    USER_ACTIONS,
    _audit_rows,
    _seed_audit,
    _status,
    _user_changes,
)
from tests.web.web_helpers import (
    ADMIN,
    PHYSICIAN,
    Browser,
    Web,
    details,
)

# The audit log.


def test_audit_log_lists_records_newest_first(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    expected = sorted((r.seq for r in web.pacs.audit.records()), reverse=True)
    rows = _audit_rows(boss.get("/admin/audit").text)
    assert [int(row[0]) for row in rows] == expected
    assert rows[0][5] == "carol"  # the last seeded record


def test_audit_log_filters_by_event_id(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    rows = _audit_rows(boss.get("/admin/audit?event_id=110112").text)
    assert [(row[2], row[5]) for row in rows] == [("Query", "carol")]


def test_audit_log_filters_by_user(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    rows = _audit_rows(boss.get("/admin/audit?user=carol").text)
    assert [(row[2], row[5]) for row in rows] == [("DICOM Instances Accessed", "carol"), ("Query", "carol")]


def test_audit_log_shows_only_failures_when_asked(web: Web, boss: Browser) -> None:
    _seed_audit(web.pacs)
    rows = _audit_rows(boss.get("/admin/audit?failures=1").text)
    assert [(row[2], row[4], row[5]) for row in rows] == [
        ("User Authentication: Login", "Minor failure", "mallory")
    ]


def test_audit_log_reports_an_intact_chain(boss: Browser) -> None:
    chain = _CHAIN.search(boss.get("/admin/audit").text)
    assert chain and chain.group(1).startswith("Hash chain intact")


def test_audit_log_reports_a_broken_chain(web: Web, boss: Browser) -> None:
    with web.pacs.database.write() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 1).values(details='{"what": "edited"}'))
    chain = _CHAIN.search(boss.get("/admin/audit").text)
    assert chain and chain.group(1).startswith("HASH CHAIN BROKEN")


def test_viewing_the_audit_log_is_audited(web: Web, boss: Browser) -> None:
    boss.get("/admin/audit?user=carol")
    views = web.audit(str(EventID.AUDIT_LOG_USED), user="boss")
    assert len(views) == 1
    assert details(views[0])["filters"] == {"user_id": "carol"}


def test_audit_log_escapes_recorded_values(web: Web, boss: Browser) -> None:
    web.pacs.audit.append(
        AuditEvent(
            EventID.INSTANCES_ACCESSED,
            Action.READ,
            user_id="doc",
            patient_id=SCRIPT,
            details={"what": SCRIPT},
        )
    )
    page = boss.get("/admin/audit").text
    assert SCRIPT not in page
    assert "<script" not in page
    # The patient ID (link text), the details' summary and their JSON.
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3


# The system status.


def test_status_page_lists_disk_certificates_index_and_plaintext_dicom(web: Web, boss: Browser) -> None:
    settings = web.pacs.settings
    rows = _status(boss.get("/admin/status").text)
    assert list(rows) == [
        "free disk (blobs)",
        "server certificate",
        "CA certificate",
        "index",
        "PHI grants (find, move, get)",
        "plaintext DICOM",
    ]
    free = re.match(r"([\d,]+) MiB", rows["free disk (blobs)"])
    assert free is not None
    actual_free = shutil.disk_usage(settings.blob_dir).free // 2**20
    assert abs(int(free.group(1).replace(",", "")) - actual_free) < 1024
    now = datetime.now(UTC)
    for label, name in (("server certificate", SERVER_CERT), ("CA certificate", CA_CERT)):
        cert = pki.load_certificate(settings.tls_dir / name)
        days = (cert.not_valid_after_utc - now).total_seconds() / 86400
        shown = re.fullmatch(r"expires in (\d+) days", rows[label])
        assert shown is not None and abs(int(shown.group(1)) - days) <= 1, rows[label]
    index = rows["index"]
    assert index.startswith("SQLCipher") if web.pacs.database.is_sqlite else index.startswith("PostgreSQL")
    assert rows["PHI grants (find, move, get)"] == "none"
    assert rows["plaintext DICOM"] == "closed"


def test_status_page_lists_phi_grants(web: Web, boss: Browser) -> None:
    admin = PacsAdmin(web.pacs)
    admin.enrol("CT1", "10.0.0.5", "store", None, user="setup")
    admin.enrol("WS1", "10.0.0.8", "store,find,get", None, user="setup", roles=ADMIN | PHYSICIAN)
    assert (
        _status(boss.get("/admin/status").text)["PHI grants (find, move, get)"]
        == "WS1 at 10.0.0.8/32 (find,get)"
    )
    admin.enrol("WARD", "10.0.1.0/24", "move", None, user="setup", roles=ADMIN | PHYSICIAN)
    assert (
        _status(boss.get("/admin/status").text)["PHI grants (find, move, get)"]
        == "WARD at 10.0.1.0/24 (move); WS1 at 10.0.0.8/32 (find,get)"
    )


def test_status_page_reports_open_plaintext_dicom(web: Web, boss: Browser) -> None:
    settings = web.pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    NodeRegistry(web.pacs.database).add(
        "LEGACY",
        host="10.0.0.7",
        certificate=pki.issue_client_cert(ca, "LEGACY").cert,
        cert_issued=True,
        plaintext=True,
    )
    rows = _status(boss.get("/admin/status").text)
    port = settings.dicom.plaintext_port
    assert (
        rows["plaintext DICOM"]
        == (f"open on port {port}" if port else "closed (the port is off)") + " for LEGACY"
    )


# CSRF.


def test_admin_posts_without_a_csrf_token_are_refused(web: Web, boss: Browser) -> None:
    web.user("doc")
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    doc_before = web.accounts.get("doc")
    nodes_before = NodeRegistry(web.pacs.database).all()
    posts = [
        ("/admin/users", {"name": "mallory", "roles": "admin"}),
        *((f"/admin/users/doc/{action}", {}) for action in USER_ACTIONS),
        ("/admin/modalities", {"ae_title": "EVIL", "host": "10.0.0.9"}),
        ("/admin/modalities/rights", {"ae_title": "CT1", "allow": "find"}),
        ("/admin/modalities/remove", {"ae_title": "CT1"}),
    ]
    for path, data in posts:
        assert boss.client.post(path, data=data).status_code == 400, path
        assert boss.client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    assert web.accounts.get("mallory") is None
    assert web.accounts.get("doc") == doc_before
    assert NodeRegistry(web.pacs.database).all() == nodes_before
    assert _user_changes(web, "doc") == [] and _user_changes(web, "mallory") == []
