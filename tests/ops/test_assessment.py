"""The security assessment report: it names a finding a test made, with its fix, and renders.

A plaintext node enrolled by the test is in the report as selfcheck's finding with its fix,
in the node table as a plaintext exception and in the controls as a finding. Users show
their factors, the history of a second report lists its predecessor by hash, every run is
kept 0600 and audited. The HTML is looked at in headless Chromium and the PDF's pages are
turned into images with ``pdftoppm`` (both kept in ``test-artifacts/assessment/``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from pacs.core import events, pki
from pacs.core.accounts import Accounts
from pacs.core.audit import EventID
from pacs.core.context import CA_CERT, CA_KEY, Context, initialise, open_pacs
from pacs.core.nodes import NodeRegistry
from pacs.ops import selfcheck
from pacs.ops.assessment_history import INDEX, REPORTS, ReportHistory, ReportHistoryError, ReportNotFoundError
from pacs.ops.assessment_report import write_report

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "assessment"
CHROMIUM = "/usr/bin/chromium"
PDFTOPPM = "/usr/bin/pdftoppm"


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Context]:
    """A fresh archive on the embedded index, its ports closed."""
    settings = initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    opened = open_pacs(settings)
    try:
        yield opened
    finally:
        opened.close()


def enrol_plaintext(pacs: Context, ae_title: str = "OLDUS") -> None:
    """Enrol a node that may send unencrypted DICOM: a finding of selfcheck."""
    settings = pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    NodeRegistry(pacs.database).add(
        ae_title,
        host="10.0.0.7",
        certificate=pki.issue_client_cert(ca, ae_title).cert,
        cert_issued=True,
        permissions=frozenset({"store"}),
        plaintext=True,
    )


def _text(html: bytes) -> str:
    """The report's text, tags removed and white space folded."""
    return " ".join(re.sub(r"<[^>]+>", " ", html.decode()).split())


def test_a_plaintext_node_enrolled_is_named_in_the_report_with_its_fix(pacs: Context) -> None:
    enrol_plaintext(pacs)
    (finding,) = selfcheck.run(pacs).findings
    written = write_report(pacs, by="auditor@cli", pdf=False)
    html = written.html.decode()
    item = re.search(r'<li data-check="plaintext-dicom">(.*?)</li>', html, re.S)
    assert item, "the finding is not in the report"
    assert finding.message in _text(item.group(1).encode())
    assert f"Fix: {finding.fix}" in _text(item.group(1).encode())
    node = re.search(r'<tr data-node="OLDUS">(.*?)</tr>', html, re.S)
    assert node and "plaintext exception" in node.group(1) and "10.0.0.7/32" in node.group(1)
    exception = "Plaintext exceptions: OLDUS may send without TLS (the plaintext port is off"
    assert exception in _text(written.html)
    assert re.search(r"Enrolled nodes and their rights</td><td><span class=\"state state-finding\">", html)
    assert "1 finding to fix" in _text(written.html)


def test_a_fresh_archive_reports_no_findings_and_the_configured_tls_profile(pacs: Context) -> None:
    written = write_report(pacs, by="auditor@cli", pdf=False)
    text = _text(written.html)
    assert "No findings: every check of pacs selfcheck passed" in text
    assert text.count("Not running — profile of the configuration") == 2
    assert "AE title PACS" in text and "host name localhost" in text
    assert "index SQLCipher" in text and "hash chain intact" in text
    assert "last successful backup never" in text
    assert "alerts not configured" in text
    assert "Plaintext exceptions: none." in text and "No web user." in text


def test_users_are_listed_with_their_factors(pacs: Context) -> None:
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    accounts.add("dr.lee", frozenset({"physician"}), "copper otters guard the sluice")
    totp = pyotp.TOTP(accounts.begin_totp_enrolment("dr.lee"))
    codes = accounts.confirm_totp("dr.lee", totp.at(time.time() - 30))
    assert codes is not None
    accounts.add("boss", frozenset({"admin"}), "nine quiet herons over marsh")
    accounts.add("dr.gone", frozenset({"physician"}), "nine quiet herons over marsh")
    accounts.set_disabled("dr.gone")
    pacs.audit.append(events.login_succeeded("dr.lee", source="192.0.2.5"))
    when = pacs.audit.search(user_id="dr.lee", limit=1)[0].recorded_at[:16].replace("T", " ")
    html = write_report(pacs, by="auditor@cli", pdf=False).html.decode()
    lee = _text(re.search(r'<tr data-user="dr.lee">(.*?)</tr>', html, re.S).group(1).encode())  # type: ignore[union-attr]
    boss = _text(re.search(r'<tr data-user="boss">(.*?)</tr>', html, re.S).group(1).encode())  # type: ignore[union-attr]
    gone = _text(re.search(r'<tr data-user="dr.gone">(.*?)</tr>', html, re.S).group(1).encode())  # type: ignore[union-attr]
    assert lee == f"dr.lee physician confirmed {len(codes)} 0 must change password {when}"
    assert boss == "boss admin not enrolled 0 0 must change password none recorded"
    assert gone == "dr.gone physician not enrolled 0 0 disabled none recorded"


def test_a_second_report_lists_its_predecessor_and_every_run_is_kept_private(pacs: Context) -> None:
    first = write_report(pacs, by="auditor@cli", pdf=False)
    enrol_plaintext(pacs)
    second = write_report(pacs, by="boss", pdf=False)
    earlier = re.findall(r'<tr class="earlier">(.*?)</tr>', second.html.decode(), re.S)
    assert len(earlier) == 1
    assert first.entry.sha256 in earlier[0] and first.entry.html in earlier[0]
    assert "This is the first report of this archive." in _text(first.html)
    history = ReportHistory(pacs.settings.data_dir)
    assert [e.sha256 for e in history.entries()] == [second.entry.sha256, first.entry.sha256]
    assert [e.findings for e in history.entries()] == [1, 0]
    directory = pacs.settings.data_dir / REPORTS
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert history.path(second.entry.html).read_bytes() == second.html
    lines = [json.loads(line) for line in (directory / INDEX).read_text().splitlines()]
    assert [line["sha256"] for line in lines] == [first.entry.sha256, second.entry.sha256]


def test_only_kept_report_names_are_served(pacs: Context) -> None:
    write_report(pacs, by="boss", pdf=False)
    history = ReportHistory(pacs.settings.data_dir)
    for name in ("index.jsonl", "../pacs.toml", "assessment-20260101T000000Z.html"):
        with pytest.raises(ReportNotFoundError):
            history.path(name)


def test_a_report_is_audited_with_its_hash_and_findings(pacs: Context) -> None:
    enrol_plaintext(pacs)
    written = write_report(pacs, by="boss", pdf=False)
    records = pacs.audit.search(event_id=str(EventID.APPLICATION_ACTIVITY), user_id="boss", limit=10)
    details = [json.loads(r.details) for r in records]
    (report,) = [d for d in details if d["what"] == "assessment report"]
    assert report["sha256"] == written.entry.sha256
    assert report["findings"] == [written.report.findings[0].message]
    assert report["formats"] == ["html"]
    assert any(d["what"] == "selfcheck" for d in details)


def test_the_pdf_is_a_pdf_with_pages_that_show_the_finding(pacs: Context, tmp_path: Path) -> None:
    if not Path(PDFTOPPM).is_file():
        pytest.fail(f"{PDFTOPPM} is missing (apt-get install poppler-utils)")
    enrol_plaintext(pacs)
    written = write_report(pacs, by="boss", pdf=True)
    assert written.pdf is not None and written.pdf.startswith(b"%PDF-")
    assert written.entry.pdf and ReportHistory(pacs.settings.data_dir).path(written.entry.pdf).is_file()
    text = subprocess.run(
        ["/usr/bin/pdftotext", "-", "-"], input=written.pdf, capture_output=True, check=True
    )
    assert "give it TLS (pacs modality remove OLDUS" in " ".join(text.stdout.decode().split())
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(written.pdf)
    subprocess.run([PDFTOPPM, "-png", "-r", "70", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for page in pages:
        with Image.open(page) as image:
            assert image.convert("L").getextrema()[0] < 64, f"{page.name} is blank"
        shutil.copy(page, ARTIFACTS / f"pdf-{page.name}")


def test_the_html_renders_in_chromium_with_the_finding_visible(pacs: Context, tmp_path: Path) -> None:
    enrol_plaintext(pacs)
    report = tmp_path / "report.html"
    report.write_bytes(write_report(pacs, by="boss", pdf=False).html)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(report.as_uri())
            finding = page.locator('li[data-check="plaintext-dicom"]')
            assert finding.is_visible()
            assert "give it TLS" in finding.inner_text()
            assert page.locator("script").count() == 0
            assert page.locator("#verdict").inner_text().startswith("1 finding to fix")
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()


def test_a_reports_directory_that_cannot_be_written_is_one_line_of_error(pacs: Context) -> None:
    (pacs.settings.data_dir / REPORTS).write_text("not a directory")
    with pytest.raises(ReportHistoryError, match=r"^cannot read the reports in .*/reports: Not a directory$"):
        write_report(pacs, by="boss", pdf=False)
    history = ReportHistory(pacs.settings.data_dir)
    with pytest.raises(ReportHistoryError, match=r"^cannot keep the report in .*/reports: "):
        history.keep(datetime.now(UTC), b"<p>x</p>", None, findings=0, by="boss", stem="assessment-x")
