"""Reports and documents in a real headless Chromium, over HTTPS from ``pacs serve``.

One archive is served for the module: a small CT and one of every kind of document in its
study. Chromium trusts the archive's CA; every page is watched for console errors, uncaught
exceptions and Content-Security-Policy violations, any of which fails the test. Screenshots
of the report and the PDF pages are kept under the test's temporary directory.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright

from pacs.core.accounts import Accounts
from pacs.core.context import CA_CERT, initialise, open_pacs
from tests.conftest import _free_port, pacs_serve
from tests.data.make_documents import LONG_AXIS_MM, REPORT_TITLE
from tests.data.make_series import make_ct_series
from tests.web.browser import (
    CHROMIUM,
    CSP_WATCH,
    PHYSICIAN,
    TIMEOUT_MS,
    Reader,
    log_in_reader,
    trust_ca_for_chromium,
    wait_for_path,
)
from tests.web.documents_helpers import (
    PDF_TITLE,
    DocumentFiles,
    document_url,
    make_document_files,
    store_documents,
)

PASSWORD = "copper otters guard the sluice"
NEW_PASSWORD = "nine quiet herons over marsh"
READERS = 5
START_TIMEOUT = 60.0
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
    """The running server, its CA, the reader, and the documents' UIDs by name."""

    base_url: str
    home: Path
    ca: Path
    readers: list[Reader]  # one per test: a TOTP code opens one login only
    study_uid: str
    sops: dict[str, str]
    files: DocumentFiles

    def url(self, name: str, suffix: str = "") -> str:
        return document_url(self.study_uid, self.sops[name], suffix)


def _add_reader(accounts: Accounts, name: str) -> Reader:
    accounts.add(name, PHYSICIAN, PASSWORD)
    totp = pyotp.TOTP(accounts.begin_totp_enrolment(name))
    # The previous step confirms the enrolment: the current one stays usable for the login.
    assert accounts.confirm_totp(name, totp.at(time.time() - 30)) is not None
    accounts.change_password(name, NEW_PASSWORD)
    return Reader(name, NEW_PASSWORD, totp)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedDocuments]:
    root = tmp_path_factory.mktemp("documents-e2e")
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    ct = make_ct_series(
        root / "ct", slices=3, rows=64, columns=64, patient_name="ROWAN^ELSPETH", patient_id="D-1"
    )
    files = make_document_files(root / "documents", ct[0])
    pacs = open_pacs(settings)
    try:
        for path in ct:
            pacs.archive.store(path)
        sops = store_documents(pacs, files)
        accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
        readers = [_add_reader(accounts, f"reader{n}") for n in range(READERS)]
    finally:
        pacs.close()
    home = root / "home"
    trust_ca_for_chromium(home, settings.tls_dir / CA_CERT)
    port = _free_port()
    log = root / "serve.log"
    process = pacs_serve(
        settings.data_dir,
        log,
        PACS_DICOM_PORT=str(_free_port()),
        PACS_DICOM_WORKERS="1",
        PACS_WEB_PORT=str(port),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        banner = process.stdout.readline() if ready else ""
        assert "web viewer on https://" in banner, (banner, log.read_text())
        base_url = f"https://localhost:{port}"
        yield ServedDocuments(
            base_url, home, settings.tls_dir / CA_CERT, readers, files.subject.study_uid, sops, files
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def browser(served: ServedDocuments) -> Iterator[Browser]:
    """Headless Chromium whose HOME trusts the archive's CA (and Playwright's own client too)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NODE_EXTRA_CA_CERTS", str(served.ca))
        playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, env={**os.environ, "HOME": str(served.home)}
        )
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser, served: ServedDocuments) -> Iterator[Page]:
    """A reader of its own, logged in, in a fresh context; console errors and CSP violations fail the test."""
    context = browser.new_context(base_url=served.base_url, viewport={"width": 1280, "height": 900})
    context.add_init_script(CSP_WATCH)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A PDF opened in a tab of its own has no page to say its icon is none: Chromium asks for one.
        if message.type == "error" and urlsplit(message.location.get("url", "")).path != "/favicon.ico":
            problems.append(f"console error on {message.page.url if message.page else '?'}: {message.text}")

    def on_page_error(error: Error) -> None:
        problems.append(f"uncaught {error.name}: {error.message}")

    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    opened.on("console", on_console)
    opened.on("pageerror", on_page_error)
    try:
        log_in_reader(opened, served.readers.pop())
        yield opened
    finally:
        context.close()
    assert problems == [], "\n".join(problems)


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
