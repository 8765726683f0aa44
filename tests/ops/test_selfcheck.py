"""``pacs selfcheck``: passes on a fresh archive and names the exact finding after each mistake."""

from __future__ import annotations

import getpass
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import text

from pacs.cli import main
from pacs.core import pki
from pacs.core.accounts import Accounts
from pacs.core.audit import Action, AuditEvent, EventID
from pacs.core.config import Settings
from pacs.core.context import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, initialise, open_pacs
from pacs.ops import selfcheck
from pacs.serve.webadmin import PacsAdmin
from tests.data.make_series import make_ct_series

CHIEF = frozenset({"admin", "physician"})


def _selfcheck(settings: Settings, capsys: pytest.CaptureFixture[str], **environ: str) -> tuple[int, dict]:
    code = main(["selfcheck", "--json", "--data", str(settings.data_dir)], environ=environ)
    return code, json.loads(capsys.readouterr().out)


def _only_finding(report: dict) -> dict:
    assert len(report["findings"]) == 1, report["findings"]
    return report["findings"][0]


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """A fresh archive on the embedded index."""
    return initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")


def test_a_fresh_archive_has_no_findings(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 0
    assert report["ok"] is True
    assert report["findings"] == []
    assert set(report["checked"]) == set(selfcheck.CHECKS)


def test_the_text_report_lists_every_check_and_the_verdict(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["selfcheck", "--data", str(sqlite_settings.data_dir)], environ={}) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"{len(selfcheck.CHECKS)} checks (permissions, key-location,")
    assert last.endswith(": no findings")


def test_a_postgresql_index_is_flagged_as_unencrypted(
    settings: Settings, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _selfcheck(settings, capsys)
    if not db_url:
        assert code == 0
        return
    assert code == 1
    finding = _only_finding(report)
    assert finding["check"] == "index-encryption"
    assert "PostgreSQL" in finding["message"] and "in clear" in finding["message"]
    assert "docs/SECURITY.md" in finding["fix"]


def test_enabling_a_plaintext_node_is_a_finding(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"PACS_DICOM_PLAINTEXT_PORT": "11112"}
    data = str(sqlite_settings.data_dir)
    code = main(
        [
            "modality",
            "add",
            "OLDUS",
            "--host",
            "10.1.2.3",
            "--plaintext",
            "--issue-cert",
            str(tmp_path / "c"),
            "--data",
            data,
        ],
        environ=env,
    )
    assert code == 0
    capsys.readouterr()
    code, report = _selfcheck(sqlite_settings, capsys, **env)
    assert code == 1
    finding = _only_finding(report)
    assert finding["check"] == "plaintext-dicom"
    assert finding["message"].startswith("node OLDUS at 10.1.2.3/32 may send UNENCRYPTED DICOM on port 11112")
    assert "--issue-cert" in finding["fix"]


def test_an_open_plaintext_port_without_nodes_is_a_finding(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _selfcheck(sqlite_settings, capsys, PACS_DICOM_PLAINTEXT_PORT="11112")
    assert code == 1
    assert _only_finding(report)["message"] == (
        "the plaintext DICOM port 11112 is open although no node may use it"
    )


def test_a_loosened_key_file_is_a_finding(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    kek = sqlite_settings.key_dir / "kek-0001.key"
    os.chmod(kek, 0o644)
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    finding = _only_finding(report)
    assert finding == {
        "check": "permissions",
        "message": f"{kek} has mode 0644: group or others may read it",
        "fix": f"chmod 0600 {kek}",
    }


def test_a_data_directory_open_to_others_is_a_finding(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chmod(sqlite_settings.data_dir, 0o755)
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    assert _only_finding(report)["fix"] == f"chmod 0700 {sqlite_settings.data_dir}"


def test_a_server_certificate_expiring_within_30_days_is_a_finding(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, certs = sqlite_settings.key_dir, sqlite_settings.tls_dir
    ca = pki.Issued(pki.load_private_key(keys / CA_KEY), pki.load_certificate(certs / CA_CERT))
    soon = pki.issue_server_cert(ca, "localhost", valid_days=10)
    (keys / SERVER_KEY).unlink()
    (certs / SERVER_CERT).unlink()
    pki.write_private_key(keys / SERVER_KEY, soon.key)
    pki.write_certificate(certs / SERVER_CERT, soon.cert)
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    finding = _only_finding(report)
    assert finding["check"] == "certificates"
    assert finding["message"].startswith("the server certificate expires in 9 days")
    assert finding["fix"] == "before then: run 'pacs cert renew', then restart pacs serve"


def test_cert_renew_issues_a_new_server_certificate_for_the_same_key(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, certs = sqlite_settings.key_dir, sqlite_settings.tls_dir
    ca = pki.Issued(pki.load_private_key(keys / CA_KEY), pki.load_certificate(certs / CA_CERT))
    key = pki.load_private_key(keys / SERVER_KEY)
    pki.write_certificate(
        certs / SERVER_CERT, pki.issue_server_cert(ca, "localhost", valid_days=10, key=key).cert
    )
    assert _selfcheck(sqlite_settings, capsys)[0] == 1

    assert main(["cert", "renew", "--data", str(sqlite_settings.data_dir)], environ={}) == 0
    assert "restart pacs serve" in capsys.readouterr().out
    renewed = pki.load_certificate(certs / SERVER_CERT)
    assert pki.days_until_expiry(renewed) > 700
    assert renewed.public_key() == key.public_key()
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 0, report["findings"]
    pacs = open_pacs(sqlite_settings)
    try:
        renewals = [json.loads(r.details) for r in pacs.audit.records() if "renewed" in r.details]
    finally:
        pacs.close()
    assert [r["fingerprint"] for r in renewals] == [pki.fingerprint(renewed)]


def test_a_broken_audit_chain_is_a_finding(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pacs = open_pacs(sqlite_settings)
    try:
        with pacs.database.write() as session:
            session.execute(text("UPDATE audit_log SET user_id = 'mallory' WHERE seq = 1"))
    finally:
        pacs.close()
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    finding = _only_finding(report)
    assert finding["check"] == "audit-chain"
    assert finding["message"] == "audit trail: record 1 was altered (its MAC does not match)"


def test_query_rights_for_a_whole_network_are_a_finding(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(sqlite_settings.data_dir)
    for ae, host in (("WS1", "10.0.0.7"), ("WARD", "10.0.1.0/24")):
        argv = ["modality", "add", ae, "--host", host, "--allow", "store,find,move"]
        assert main([*argv, "--issue-cert", str(tmp_path / ae), "--data", data], environ={}) == 0
    capsys.readouterr()
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    finding = _only_finding(report)
    assert finding["message"] == "node WARD may find,move patient data from a whole network, 10.0.1.0/24"
    assert any(n["message"] == "node WS1 at 10.0.0.7 may find,move patient data" for n in report["notes"])


def test_an_admin_without_a_second_factor_after_three_days_is_a_finding(sqlite_settings: Settings) -> None:
    pacs = open_pacs(sqlite_settings)
    try:
        Accounts(pacs.database, pacs.keyring, audit=pacs.audit).add("office", frozenset({"admin"}))
        assert selfcheck.run(pacs).ok
        report = selfcheck.run(pacs, now=datetime.now(UTC) + timedelta(days=4))
    finally:
        pacs.close()
    assert [f.check for f in report.findings] == ["second-factor"]
    assert report.findings[0].message.startswith("admin office has no second factor enrolled (4 days")


def test_a_second_factor_removed_from_an_account_is_a_finding(sqlite_settings: Settings) -> None:
    pacs = open_pacs(sqlite_settings)
    try:
        accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
        accounts.add("drsmith", frozenset({"physician"}))
        secret = accounts.begin_totp_enrolment("drsmith")
        assert accounts.confirm_totp("drsmith", pyotp.TOTP(secret).now()) is not None
        accounts.change_password("drsmith", "a long passphrase of my own")
        assert selfcheck.run(pacs).ok
        accounts.reset_totp("drsmith")
        report = selfcheck.run(pacs)
    finally:
        pacs.close()
    assert [f.check for f in report.findings] == ["second-factor"]
    assert report.findings[0].message == "user drsmith has no second factor enrolled"


def test_a_node_certificate_expiring_within_30_days_is_a_finding(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, certs = sqlite_settings.key_dir, sqlite_settings.tls_dir
    ca = pki.Issued(pki.load_private_key(keys / CA_KEY), pki.load_certificate(certs / CA_CERT))
    pinned = tmp_path / "us1.pem"
    pki.write_certificate(pinned, pki.issue_client_cert(ca, "US1", valid_days=20).cert)
    argv = ["modality", "add", "US1", "--host", "10.0.0.9", "--cert", str(pinned)]
    assert main([*argv, "--data", str(sqlite_settings.data_dir)], environ={}) == 0
    capsys.readouterr()
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    finding = _only_finding(report)
    assert finding["check"] == "certificates"
    assert finding["message"].startswith("the certificate of node US1 expires in 19 days")
    assert finding["fix"] == (
        "before then: give the node a new certificate: pacs modality remove US1, then "
        "pacs modality add US1 --host 10.0.0.9/32 --allow store --cert NEW.pem"
    )


def test_keys_inside_the_blob_directory_are_a_finding(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    inside = sqlite_settings.blob_dir / "keys"
    shutil.copytree(sqlite_settings.key_dir, inside)
    code, report = _selfcheck(sqlite_settings, capsys, PACS_STORAGE_KEY_DIR=str(inside))
    assert code == 1
    finding = _only_finding(report)
    assert finding["check"] == "key-location"
    assert finding["message"] == f"the key directory {inside} is inside the blob directory"


def test_an_unfinished_key_rotation_is_a_finding(sqlite_settings: Settings, tmp_path: Path) -> None:
    make_ct_series(tmp_path / "ct", slices=2, rows=16, columns=16)
    pacs = open_pacs(sqlite_settings)
    try:
        for path in sorted((tmp_path / "ct").glob("*.dcm")):
            pacs.archive.store(path)
        pacs.keyring.add_version()
        report = selfcheck.run(pacs)
    finally:
        pacs.close()
    findings = [f for f in report.findings if f.check == "key-rotation"]
    assert [f.message for f in findings] == [
        "2 data keys are still wrapped by a key-encryption key older than 2: a rotation did not finish"
    ]
    assert "pacs keys rotate" in findings[0].fix


def test_free_disk_below_the_watermark_is_a_finding(
    sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _selfcheck(sqlite_settings, capsys, PACS_STORAGE_MIN_FREE_MB=str(2**40))
    assert code == 1
    finding = _only_finding(report)
    assert finding["check"] == "disk"
    assert "below the 1099511627776 MiB watermark: new objects are refused (0xA700)" in finding["message"]


def test_an_archive_never_backed_up_is_a_finding(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_ct_series(tmp_path / "ct", slices=2, rows=16, columns=16)
    data = str(sqlite_settings.data_dir)
    assert main(["import", str(tmp_path / "ct"), "--quiet", "--data", data], environ={}) == 0
    capsys.readouterr()
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    finding = _only_finding(report)
    assert finding["message"] == "the archive holds 2 objects and has never been backed up"
    assert "pacs backup" in finding["fix"]


def _backed_up_archive(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_ct_series(tmp_path / "ct", slices=2, rows=16, columns=16)
    data = str(settings.data_dir)
    assert main(["import", str(tmp_path / "ct"), "--quiet", "--data", data], environ={}) == 0
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    argv = ["backup", str(tmp_path / "b.pacsbak"), "--passphrase-file", str(passphrase), "--quiet"]
    assert main([*argv, "--data", data], environ={}) == 0
    capsys.readouterr()


def test_a_backup_older_than_7_days_is_a_finding(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _backed_up_archive(sqlite_settings, tmp_path, capsys)
    pacs = open_pacs(sqlite_settings)
    try:
        assert selfcheck.run(pacs).ok
        report = selfcheck.run(pacs, now=datetime.now(UTC) + timedelta(days=8))
    finally:
        pacs.close()
    assert [f.check for f in report.findings] == ["backup"]
    assert report.findings[0].message.endswith(", 8 days ago")


def test_a_backup_is_found_behind_a_week_of_downloads(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _backed_up_archive(sqlite_settings, tmp_path, capsys)
    pacs = open_pacs(sqlite_settings)
    try:
        for _ in range(1001):
            pacs.audit.append(
                AuditEvent(EventID.EXPORT, Action.READ, user_id="drsmith", details={"what": "zip"})
            )
        report = selfcheck.run(pacs)
    finally:
        pacs.close()
    assert report.ok, report.findings


def test_selfcheck_runs_are_audited(sqlite_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    _selfcheck(sqlite_settings, capsys, PACS_DICOM_PLAINTEXT_PORT="11112")
    pacs = open_pacs(sqlite_settings)
    try:
        details = [json.loads(r.details) for r in pacs.audit.records()]
    finally:
        pacs.close()
    runs = [d for d in details if d.get("what") == "selfcheck"]
    assert runs == [
        {
            "what": "selfcheck",
            "findings": ["the plaintext DICOM port 11112 is open although no node may use it"],
        }
    ]


# PHI grants: nodes that may find, move or get, and who granted it.


def _phi(report: dict) -> tuple[list[str], list[str]]:
    """The phi-grants findings and notes of `report`."""
    return (
        [f["message"] for f in report["findings"] if f["check"] == "phi-grants"],
        [n["message"] for n in report["notes"] if n["check"] == "phi-grants"],
    )


def test_every_phi_grant_is_listed_with_who_granted_it(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(sqlite_settings.data_dir)
    for ae, host, allow in (("WS1", "10.0.0.8", "store,find,get"), ("CT1", "10.0.0.5", "store")):
        argv = ["modality", "add", ae, "--host", host, "--allow", allow, "--issue-cert", str(tmp_path / ae)]
        assert main([*argv, "--data", data], environ={}) == 0
    pacs = open_pacs(sqlite_settings)
    try:
        PacsAdmin(pacs).enrol("WS2", "10.0.0.9", "move", None, user="chief", roles=CHIEF)
    finally:
        pacs.close()
    capsys.readouterr()
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 0, report["findings"]
    today = datetime.now(UTC).date().isoformat()
    assert _phi(report) == (
        [],
        [
            f"PHI grant: node WS1 at 10.0.0.8/32 may find,get; find,get granted by {getpass.getuser()}@cli "
            f"(operator on the appliance (command line)) on {today}",
            f"PHI grant: node WS2 at 10.0.0.9/32 may move; move granted by chief (admin and physician (web)) "
            f"on {today}",
        ],
    )


def test_a_phi_grant_names_who_granted_each_right_since_the_last_enrolment(sqlite_settings: Settings) -> None:
    pacs = open_pacs(sqlite_settings)
    try:
        admin = PacsAdmin(pacs)
        admin.enrol("WS1", "10.0.0.8", "store,find,get", None, user="old", roles=CHIEF)
        admin.remove("WS1", user="old")
        admin.enrol("WS1", "10.0.0.8", "store,find", None, user="chief", roles=CHIEF)
        admin.change_rights("WS1", "store", user="boss", roles=frozenset({"admin"}))
        admin.change_rights("WS1", "store,get", user="deputy", roles=CHIEF)
        admin.change_rights("WS1", "store,find,get", user="chief", roles=CHIEF)
        report = selfcheck.run(pacs)
    finally:
        pacs.close()
    findings, (note,) = _phi(json.loads(report.to_json()))
    assert findings == []
    assert "; find granted by chief (" in note and "; get granted by deputy (" in note
    assert "old" not in note and "boss" not in note


def test_a_phi_grant_no_audit_record_accounts_for_is_a_finding(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["modality", "add", "CT1", "--host", "10.0.0.5", "--issue-cert", str(tmp_path / "c")]
    assert main([*argv, "--data", str(sqlite_settings.data_dir)], environ={}) == 0
    pacs = open_pacs(sqlite_settings)
    try:  # someone with access to the index widens the node behind the audit trail's back
        with pacs.database.write() as session:
            session.execute(text("UPDATE nodes SET permissions = 'store,find' WHERE ae_title = 'CT1'"))
    finally:
        pacs.close()
    capsys.readouterr()
    code, report = _selfcheck(sqlite_settings, capsys)
    assert code == 1
    assert _phi(report)[0] == [
        "node CT1 may find patient data, and no audit record shows who granted it",
    ]


def test_a_phi_grant_to_a_plaintext_node_is_a_finding(
    sqlite_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"PACS_DICOM_PLAINTEXT_PORT": "11112"}
    argv = ["modality", "add", "OLDWS", "--host", "10.1.2.3", "--plaintext", "--allow", "store,find"]
    assert (
        main([*argv, "--issue-cert", str(tmp_path / "c"), "--data", str(sqlite_settings.data_dir)], env) == 0
    )
    capsys.readouterr()
    code, report = _selfcheck(sqlite_settings, capsys, **env)
    assert code == 1
    (finding,) = _phi(report)[0]
    assert finding.startswith("node OLDWS may find every patient's data over UNENCRYPTED DICOM")
