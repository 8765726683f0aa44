"""Reports and documents in a real headless Chromium, over HTTPS from ``pacs serve``.

One archive is served for the module: a small CT and one of every kind of document in its
study. Chromium trusts the archive's CA; every page is watched for console errors, uncaught
exceptions and Content-Security-Policy violations, any of which fails the test. Screenshots
of the report and the PDF pages are kept under the test's temporary directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from pacs.core.context import Context
from tests.data.make_documents import LONG_AXIS_MM, REPORT_TITLE
from tests.data.make_series import make_ct_series
from tests.web.browser import TIMEOUT_MS, log_in_reader, wait_for_path
from tests.web.documents_helpers import (
    PDF_TITLE,
    DocumentFiles,
    document_url,
    make_document_files,
    store_documents,
)
from tests.web.viewer_live import Live, serve_archive, watched_page

READERS = [f"reader{n}" for n in range(5)]  # at least one per test
# Chromium's built-in PDF viewer (an extension): a frame of it is the PDF being shown.
PDF_VIEWER = "chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/"
# Fetch a panel as the viewer's script does and put its nodes in the page (a function: the CSP forbids eval).
INSERT_PANEL = """
async (url) => {
  const response = await fetch(url);
  const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
  const holder = document.createElement("div");
  holder.id = "inserted-panel";
  holder.replaceChildren(...[...parsed.body.childNodes].map((node) => document.importNode(node, true)));
  document.querySelector("main").replaceChildren(holder);
  return response.status;
}
"""


@dataclass(frozen=True)
class ServedDocuments:
    """The documents' study, their UIDs by name and the files stored."""

    study_uid: str
    sops: dict[str, str]
    files: DocumentFiles

    def url(self, name: str, suffix: str = "") -> str:
        return document_url(self.study_uid, self.sops[name], suffix)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[ServedDocuments]]:
    root = tmp_path_factory.mktemp("documents-e2e")

    def seed(pacs: Context) -> ServedDocuments:
        ct = make_ct_series(
            root / "ct", slices=3, rows=64, columns=64, patient_name="ROWAN^ELSPETH", patient_id="D-1"
        )
        files = make_document_files(root / "documents", ct[0])
        for path in ct:
            pacs.archive.store(path)
        return ServedDocuments(files.subject.study_uid, store_documents(pacs, files), files)

    with serve_archive(root, seed, READERS) as running:
        yield running


@pytest.fixture(scope="module")
def served(live: Live[ServedDocuments]) -> ServedDocuments:
    return live.seeded


@pytest.fixture
def page(browser: Browser, live: Live[ServedDocuments]) -> Iterator[Page]:
    """A reader of its own, logged in, in a fresh watched context."""
    with watched_page(browser, live, 1280, 900) as opened:
        _, unused = live.readers.popitem()  # a TOTP code opens one login only
        log_in_reader(opened, unused)
        yield opened


def _pdf_viewer_shown(page: Page) -> None:
    """Until a frame of Chromium's PDF viewer is in the page."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not any(frame.url.startswith(PDF_VIEWER) for frame in page.frames):
        assert time.monotonic() < deadline, [frame.url for frame in page.frames]
        page.wait_for_timeout(100)


def test_an_sr_report_is_shown_as_text_with_its_headings_and_measurements(
    page: Page, served: ServedDocuments, tmp_path: Path
) -> None:
    page.goto(served.url("comprehensive"))
    expect(page.locator("h1.document-title")).to_have_text(REPORT_TITLE)
    expect(page.locator(".sr-heading")).to_have_text(["Findings", "Liver lesion", "Impressions"])
    measurement = page.locator(".sr-num", has_text="Long Axis")
    expect(measurement).to_be_visible()
    expect(measurement).to_have_text(f"Long Axis: {LONG_AXIS_MM} mm")
    expect(page.get_by_text(f"{LONG_AXIS_MM} mm", exact=True)).to_be_visible()
    expect(page.locator("#document-patient")).to_contain_text("ROWAN, Elspeth")
    expect(page.locator(".document-facts")).to_contain_text("Verified")
    # The document style sheet applies (a section heading is in the accent colour).
    colour = page.locator(".sr-heading").first.evaluate("(node) => getComputedStyle(node).color")
    assert colour == "rgb(29, 95, 167)"
    page.screenshot(path=str(tmp_path / "sr-report.png"), full_page=True)

    page.click("#back-to-study")
    wait_for_path(page, f"/studies/{served.study_uid}")


def test_an_encapsulated_pdf_page_offers_it_in_a_tab_of_its_own_and_as_a_download(
    page: Page, served: ServedDocuments, tmp_path: Path
) -> None:
    page.goto(served.url("pdf"))
    expect(page.locator("h1.document-title")).to_have_text(PDF_TITLE)
    page.screenshot(path=str(tmp_path / "pdf-page.png"), full_page=True)
    with page.context.expect_page() as opened:
        page.click(".document-open")
    tab = opened.value
    try:
        _pdf_viewer_shown(tab)
    finally:
        tab.wait_for_timeout(1500)  # the PDF viewer paints after its frame appears
        tab.screenshot(path=str(tmp_path / "pdf-tab.png"))
    with page.expect_download() as started:
        page.click(".document-download")
    download = started.value
    assert download.suggested_filename == "document.pdf"
    assert Path(download.path()).read_bytes() == served.files.pdf

    assert page.evaluate(INSERT_PANEL, served.url("pdf", "/panel")) == 200
    expect(page.locator("#inserted-panel a.document-open")).to_be_visible()
    expect(page.locator("#inserted-panel iframe")).to_have_count(0)


def test_panels_put_in_a_page_by_script_show_the_document_without_a_script_of_their_own(
    page: Page, served: ServedDocuments
) -> None:
    page.goto(served.url("rtstruct"))  # any page of the app: the panel goes into its <main>
    assert page.evaluate(INSERT_PANEL, served.url("kos", "/panel")) == 200
    panel = page.locator("#inserted-panel article.document-kind-report")
    expect(panel.locator("h2.document-title")).to_have_text("Of Interest")
    expect(panel).to_contain_text("Key Object Description: Lesion best seen on these images.")

    assert page.evaluate(INSERT_PANEL, served.url("rtplan", "/panel")) == 200
    expect(page.locator("#inserted-panel .document-facts")).to_contain_text("Plan1")
