"""The study care pages in headless Chromium against ``pacs serve``: an admin who is a physician finds a
study in the list, opens its page, deletes it through the confirmation (a reason required by the form),
sees it in the trash and restores it.

Screenshots of each step are written under the test's tmp path. Every page is watched for console
errors and CSP violations (:func:`tests.web.viewer_live.watched_page`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pacs.core.context import Context
from tests.data.make_series import make_ct_series
from tests.web.browser import Reader, log_in, wait_for_path
from tests.web.viewer_live import Live, add_readers, serve_archive

ROWS = "#care-studies tbody tr[data-study]"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Reader]]:
    root = tmp_path_factory.mktemp("care")

    def seed(pacs: Context) -> Reader:
        for name, pid, date in (
            ("QUIXOTE^DULCINEA", "PID-Q-7731", "20240115"),
            ("PANZA^SANCHO", "PID-P-2", "20230302"),
        ):
            for path in make_ct_series(
                root / pid, slices=3, rows=16, columns=16, patient_name=name, patient_id=pid, study_date=date
            ):
                pacs.archive.store(path)
        return add_readers(pacs, ["carer"], frozenset({"admin", "physician"}))["carer"]

    with serve_archive(root, seed, []) as served:
        yield served


@pytest.fixture
def page_size() -> tuple[int, int]:
    return 1400, 900


def test_an_admin_physician_finds_deletes_and_restores_a_study_in_the_browser(
    page: Page, live: Live[Reader], tmp_path: Path
) -> None:
    carer = live.seeded
    log_in(page, carer.name, carer.password, carer.totp.now)
    page.click("#nav-care")
    wait_for_path(page, "/admin/studies")
    expect(page.locator(ROWS)).to_have_count(2)
    page.screenshot(path=str(tmp_path / "care-list.png"), full_page=True)

    page.fill("#care-search input[name=name]", "dulcinea")
    page.click('#care-search button[type="submit"]')
    expect(page.locator(ROWS)).to_have_count(1)
    page.click(f"{ROWS} td.patient a")
    expect(page.locator("#state")).to_contain_text("Active")
    expect(page.locator("#series tbody tr")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "care-show.png"), full_page=True)

    page.click("#delete")
    expect(page.locator("h1")).to_have_text("Delete this study?")
    page.screenshot(path=str(tmp_path / "care-delete.png"), full_page=True)
    page.click("#confirm-delete")  # the reason is required: the browser keeps the form
    expect(page.locator("h1")).to_have_text("Delete this study?")
    page.fill("#delete-study textarea[name=reason]", "sent to the wrong archive")
    page.click("#confirm-delete")
    expect(page.locator("#state")).to_contain_text("In the trash since")
    expect(page.locator("#history tbody")).to_contain_text("sent to the wrong archive")
    page.screenshot(path=str(tmp_path / "care-trashed.png"), full_page=True)

    page.goto("/admin/studies")
    expect(page.locator(ROWS)).to_have_count(1)
    page.click("#show-trash")
    expect(page.locator(ROWS)).to_have_count(1)
    page.click(f"{ROWS} td.patient a")
    page.click("#restore")
    expect(page.locator("#state")).to_contain_text("Active")
    page.goto("/")
    expect(page.locator("#studies tbody tr[data-study]")).to_have_count(2)
