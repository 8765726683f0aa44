"""The assessment page under a real ``pacs serve``: a report written there probes both of its ports.

Chromium logs in as an admin, writes a report on the page and downloads it: the TLS profile of
the DICOM and the web port was taken on the wire by the serving process itself
(``test-artifacts/assessment/admin-page-live.png``).
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from pacs.core.context import Context
from tests.web.browser import Reader, log_in
from tests.web.viewer_live import add_readers, chromium, serve_archive

PAGE = "/admin/assessment"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "assessment"


def test_under_pacs_serve_the_page_writes_a_report_of_both_ports_probed(tmp_path: Path) -> None:
    def seed(pacs: Context) -> dict[str, Reader]:
        return add_readers(pacs, ["chief"], roles=frozenset({"admin", "physician"}))

    with serve_archive(tmp_path, seed, []) as live, chromium(live) as browser:
        chief = live.seeded["chief"]
        context = browser.new_context(base_url=live.base_url, viewport={"width": 1100, "height": 800})
        try:
            page = context.new_page()
            log_in(page, chief.name, chief.password, chief.totp.now)
            page.goto(PAGE)
            page.click("#new-report button")
            expect(page.locator("#latest-findings")).to_have_text("0", timeout=60_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "admin-page-live.png"), full_page=True)
            with page.expect_download() as download:
                page.click("#latest-html")
            report = download.value.path().read_text()
        finally:
            context.close()
    assert report.count("Probed on the wire") == 2 and "Not running" not in report
