"""The correction pages in headless Chromium against ``pacs serve``: an admin who is also a physician
edits a patient's name, sees the change in the history and the study list, undoes it, moves the study to
another patient and opens the merge form.

Screenshots of the edit form, the history page, the move form and the merge form are written
under the test's tmp path. Every page is watched for console errors and CSP violations
(:func:`tests.web.viewer_live.watched_page`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pacs.core.context import Context
from tests.storage.study_files import Spec, write
from tests.web.browser import Reader, log_in_reader, wait_for_path
from tests.web.viewer_live import Live, add_readers, serve_archive

DOE = Spec("DOE^JANE", "PID-1001", "19700101", "F", "20240220", "143015", "ACC-2024-0042", "CT CHEST")
ROE = Spec("ROE^RICHARD", "PID-2002", "19650505", "M", "20230101", "080000", "ACC-2023-0001")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Reader]]:
    root = tmp_path_factory.mktemp("corrections-browser")

    def seed(pacs: Context) -> Reader:
        for _ in range(2):
            pacs.archive.store(write(root / "in", DOE))
        pacs.archive.store(write(root / "in", ROE))
        return add_readers(pacs, ["carer"], frozenset({"admin", "physician"}))["carer"]

    with serve_archive(root, seed, []) as served:
        yield served


@pytest.fixture
def page_size() -> tuple[int, int]:
    return 1280, 1000


def test_a_name_edited_in_the_browser_shows_in_the_history_and_the_list_and_is_undone(
    page: Page, live: Live[Reader], tmp_path: Path
) -> None:
    log_in_reader(page, live.seeded)
    page.goto(f"/admin/studies/{DOE.study_uid}/edit")
    expect(page.locator("#edit-study input[name=PatientName]")).to_have_value(DOE.name)
    expect(page.locator("#edit-study")).to_contain_text("at most 16 characters")
    page.screenshot(path=str(tmp_path / "edit-form.png"), full_page=True)

    page.fill("#edit-study input[name=PatientName]", "DOE^JOANNA")
    page.fill("#edit-study textarea[name=reason]", "misspelt at the front desk")
    page.click("#edit-study button[type=submit]")
    wait_for_path(page, f"/admin/studies/{DOE.study_uid}/history")
    expect(page.locator(".flash")).to_contain_text("2 objects now carry the corrected values")
    row = page.locator("#history tbody tr[data-kind=edit]")
    expect(row).to_contain_text("DOE^JANE")
    expect(row).to_contain_text("DOE^JOANNA")
    expect(row).to_contain_text("misspelt at the front desk")
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)

    page.goto("/?name=joanna")
    expect(page.locator("#studies tbody tr[data-study]")).to_have_count(1)

    page.goto(f"/admin/studies/{DOE.study_uid}/history")
    page.fill("#history tr[data-kind=edit] form.undo input[name=reason]", "it was right before")
    page.click("#history tr[data-kind=edit] form.undo button")
    wait_for_path(page, f"/admin/studies/{DOE.study_uid}/history")
    expect(page.locator("#history tr[data-kind=edit]")).to_contain_text("undone by change 2")
    page.screenshot(path=str(tmp_path / "history-undone.png"), full_page=True)
    page.goto("/?name=joanna")
    expect(page.locator("#studies tbody tr[data-study]")).to_have_count(0)
    page.goto("/?name=jane")
    expect(page.locator("#studies tbody tr[data-study]")).to_have_count(1)

    page.goto(f"/admin/studies/{DOE.study_uid}/move")
    page.fill("#move-study input[name=patient_id]", ROE.patient_id)
    page.fill("#move-study textarea[name=reason]", "sent under the wrong patient")
    page.screenshot(path=str(tmp_path / "move-form.png"), full_page=True)
    page.click("#move-study button[type=submit]")
    wait_for_path(page, f"/admin/studies/{DOE.study_uid}/history")
    expect(page.locator("#study-nav")).to_contain_text("ROE^RICHARD")
    expect(page.locator("#history tr[data-kind=move]")).to_contain_text("PID-2002")
    page.goto("/?patient_id=PID-2002")
    expect(page.locator("#studies tbody tr[data-study]")).to_have_count(2)

    page.goto("/admin/patients/merge")  # the same login: a TOTP code is used once
    expect(page.locator("#merge-patients input[name=from_patient]")).to_have_attribute("maxlength", "64")
    expect(page.locator("#merge-patients")).to_contain_text("at most 64 characters")
    page.screenshot(path=str(tmp_path / "merge-form.png"), full_page=True)
