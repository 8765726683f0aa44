"""The admin page of the security assessment report: write one, download it, see the earlier ones.

Only an admin reaches it; a new report needs the form's CSRF token; a report is what
``pacs selfcheck --report`` writes (kept, hashed, audited) and names the finding the test made.
The page is looked at in headless Chromium (``test-artifacts/assessment/admin-page.png``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Route, sync_playwright

from pacs.core.audit import EventID
from pacs.ops import selfcheck
from pacs.ops.assessment_history import ReportHistory
from pacs.ops.assessment_report import ReportDesk
from tests.ops.test_assessment import enrol_plaintext
from tests.web.admin.admin_helpers import make_admin_web
from tests.web.web_helpers import ADMIN, PHYSICIAN, Browser, Web, is_redirect_to
from webviewer import assessment

PAGE = "/admin/assessment"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "assessment"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def desk(web: Web) -> ReportDesk:
    """The page offers the reports of the test's archive, as ``pacs serve`` sets it up."""
    found = ReportDesk(web.pacs)
    assessment.attach(web.app, found)
    return found


def _new_report(browser: Browser) -> None:
    response = browser.post(PAGE, {})
    assert is_redirect_to(response, PAGE), response.status_code


def _link(page: str, element_id: str) -> str:
    found = re.search(rf'<a href="([^"]+)" id="{element_id}">', page)
    assert found, f"no {element_id} on the page"
    return found.group(1)


def test_before_any_report_the_page_offers_to_write_one(boss: Browser) -> None:
    page = boss.get(PAGE)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert 'id="no-report"' in page.text and 'id="new-report"' in page.text
    assert 'id="nav-assessment"' in page.text


def test_an_admin_writes_a_report_that_names_the_finding_and_downloads_it(web: Web, boss: Browser) -> None:
    enrol_plaintext(web.pacs)
    _new_report(boss)
    (entry,) = ReportHistory(web.pacs.settings.data_dir).entries()
    page = boss.get(PAGE).text
    findings = selfcheck.run(web.pacs).findings
    assert entry.findings == len(findings) and "plaintext-dicom" in [f.check for f in findings]
    expected = "1 finding" if len(findings) == 1 else f"{len(findings)} findings"
    assert f"A new report was written: {expected}." in page
    assert f'<td id="latest-findings">{len(findings)}</td>' in page and entry.sha256 in page
    html = boss.get(_link(page, "latest-html"))
    assert html.status_code == 200
    assert html.headers["Content-Disposition"] == f"attachment; filename={entry.html}"
    assert html.mimetype == "text/html"
    assert hashlib.sha256(html.data).hexdigest() == entry.sha256
    assert b'<li data-check="plaintext-dicom">' in html.data and b"give it TLS" in html.data
    pdf = boss.get(_link(page, "latest-pdf"))
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF-")


def test_a_report_written_on_the_page_is_audited_as_the_admin(web: Web, boss: Browser) -> None:
    _new_report(boss)
    (entry,) = ReportHistory(web.pacs.settings.data_dir).entries()
    written = [
        json.loads(r.details)
        for r in web.audit(str(EventID.APPLICATION_ACTIVITY), user="boss")
        if json.loads(r.details)["what"] == "assessment report"
    ]
    findings = [f.message for f in selfcheck.run(web.pacs).findings]
    assert written == [
        {
            "what": "assessment report",
            "findings": findings,
            "sha256": entry.sha256,
            "formats": ["html", "pdf"],
        }
    ]
    assert entry.by == "boss"


def test_the_page_lists_the_earlier_reports(web: Web, boss: Browser) -> None:
    _new_report(boss)
    _new_report(boss)
    newest, earlier = ReportHistory(web.pacs.settings.data_dir).entries()
    page = boss.get(PAGE).text
    table = re.search(r'<table class="grid" id="earlier">(.*?)</table>', page, re.S)
    assert table and earlier.sha256[:16] in table.group(1) and newest.sha256 not in table.group(1)
    assert f"/admin/assessment/{earlier.html}" in table.group(1)
    assert newest.sha256 in page


def test_only_an_admin_reaches_the_page_and_the_reports(web: Web, boss: Browser) -> None:
    _new_report(boss)
    (entry,) = ReportHistory(web.pacs.settings.data_dir).entries()
    doctor = web.logged_in(web.user("dr.who", PHYSICIAN))
    for path in (PAGE, f"{PAGE}/{entry.html}", f"{PAGE}/{entry.pdf}"):
        assert doctor.get(path).status_code == 403, path
        assert is_redirect_to(web.browser().get(path), "/login"), path
    assert doctor.post(PAGE, {}, form_page="/account/password").status_code == 403
    assert len(ReportHistory(web.pacs.settings.data_dir).entries()) == 1


def test_a_new_report_needs_the_forms_csrf_token(web: Web, boss: Browser) -> None:
    assert boss.client.post(PAGE, data={}).status_code == 400
    assert ReportHistory(web.pacs.settings.data_dir).entries() == []


def test_only_kept_reports_can_be_downloaded(boss: Browser) -> None:
    for name in ("index.jsonl", "..%2Fpacs.toml", "assessment-20260101T000000Z.html"):
        assert boss.get(f"{PAGE}/{name}").status_code == 404, name


def test_the_page_in_chromium(web: Web, boss: Browser) -> None:
    enrol_plaintext(web.pacs)
    _new_report(boss)
    _new_report(boss)

    def answer(route: Route) -> None:
        path = route.request.url.removeprefix("https://pacs.test")
        response = boss.get(path)
        route.fulfill(status=response.status_code, headers=dict(response.headers), body=response.data)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.route("https://pacs.test/**", answer)
            page.goto(f"https://pacs.test{PAGE}")
            newest = ReportHistory(web.pacs.settings.data_dir).entries()[0]
            assert page.locator("#latest-findings").inner_text() == str(newest.findings)
            assert page.locator("#earlier tbody tr").count() == 1
            assert page.locator("#new-report button").is_visible()
            page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)
        finally:
            browser.close()


def test_an_app_without_the_desk_has_no_page_and_no_menu_entry(web: Web) -> None:
    bare = make_admin_web(web.pacs)
    admin = bare.logged_in(bare.user("chief", ADMIN))
    assert admin.get(PAGE).status_code == 404
    assert 'id="nav-assessment"' not in admin.get("/admin/users").text
