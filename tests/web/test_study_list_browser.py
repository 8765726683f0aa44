"""The study list in headless Chromium against ``pacs serve``: found by "jane", "doe jane" and part of
an accession; names, dates in the browser's locale, sex and age shown; sorted by a header from the
keyboard; a study without a patient name opened; a patient's studies one link away.

Screenshots of each step are written under the test's tmp path. Every page is watched for console
errors and CSP violations (:func:`tests.web.viewer_live.watched_page`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pacs.core.context import Context
from tests.storage.study_files import Spec, write
from tests.web.browser import VIEWER_READY, log_in_reader, wait_for_path
from tests.web.viewer_live import Live, serve_archive

DOE = Spec("DOE^JANE", "PID-1001", "19700101", "F", "20240220", "143015", "ACC-2024-0042")
PRIOR = Spec("DOE^JANE", "PID-1001", "19700101", "F", "20190601", "080000", "ACC-2019-0007")
SMITH = Spec("SMITH^JANICE", "PID-2002", "19850315", "F", "20231110", "111500", "ACC-2023-0311")
BABY = Spec("ROE^BABY", "PID-3003", "20240101", "M", "20240320", "090000", "ACC-B-17", age="002M")
NAMELESS = Spec("", "PID-4004", "19600101", "O", "20230505", "", "ACC-N-1")
ROWS = "#studies tbody tr[data-study]"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[None]]:
    root = tmp_path_factory.mktemp("study-list")

    def seed(pacs: Context) -> None:
        for spec in (DOE, PRIOR, SMITH, BABY, NAMELESS):
            pacs.archive.store(write(root / "in", spec))
        cine = Spec(DOE.name, DOE.patient_id, study_uid=DOE.study_uid, accession=DOE.accession, frames=40)
        pacs.archive.store(write(root / "cine", cine))

    with serve_archive(root, seed, ["lister", "sorter", "opener"]) as served:
        yield served


@pytest.fixture
def page_size() -> tuple[int, int]:
    """Wider than the viewer tests' pages: the list's eleven columns side by side."""
    return 1400, 800


def _search(page: Page, field: str, typed: str) -> None:
    page.fill("#search input[name=name]", "")
    page.fill("#search input[name=accession]", "")
    page.fill(f"#search input[name={field}]", typed)
    page.click('#search button[type="submit"]')
    page.wait_for_load_state()
    page.wait_for_function("() => document.body.dataset.localised === 'true'")


def _accessions(page: Page) -> list[str]:
    return [text.strip() for text in page.locator(f"{ROWS} td:nth-child(9)").all_inner_texts()]


def _in_locale(page: Page, iso: str, with_time: bool) -> str:
    """`iso` as this browser's locale writes it (what the page's module must have shown)."""
    text: str = page.evaluate(
        """([iso, withTime]) => new Intl.DateTimeFormat(undefined, {
             dateStyle: "medium", ...(withTime ? { timeStyle: "short" } : {}), timeZone: "UTC",
           }).format(new Date(iso + "Z"))""",
        [iso, with_time],
    )
    return text


def test_found_by_any_name_word_and_part_of_an_accession_with_readable_values(
    page: Page, live: Live[None], tmp_path: Path
) -> None:
    log_in_reader(page, live.readers["lister"])
    expect(page.locator(ROWS)).to_have_count(5)
    page.screenshot(path=str(tmp_path / "study-list.png"), full_page=True)

    for typed in ("jane", "doe jane", "Jane Doe"):
        _search(page, "name", typed)
        assert _accessions(page) == ["ACC-2024-0042", "ACC-2019-0007"], typed
    page.screenshot(path=str(tmp_path / "study-list-jane.png"), full_page=True)

    row = page.locator(f'tr[data-study="{DOE.study_uid}"]')
    expect(row.locator("td.patient a")).to_have_text("DOE, Jane")
    expect(row.locator("td:nth-child(3)")).to_have_text("F")
    expect(row.locator("td.age")).to_have_text("54 y")
    born = _in_locale(page, "1970-01-01T00:00:00", False)
    assert born != "1970-01-01"
    expect(row.locator("td:nth-child(5) time")).to_have_text(born)
    expect(row.locator("td:nth-child(6) time")).to_have_text(_in_locale(page, "2024-02-20T14:30:15", True))
    expect(row.locator("td:nth-child(11)")).to_have_text("41")  # a CT slice and a 40-frame cine

    _search(page, "accession", "2024-00")
    assert _accessions(page) == ["ACC-2024-0042"]
    _search(page, "accession", "b-1")
    assert _accessions(page) == ["ACC-B-17"]
    baby = page.locator(f'tr[data-study="{BABY.study_uid}"]')
    expect(baby.locator("td.patient a")).to_have_text("ROE, Baby")
    expect(baby.locator("td.age")).to_have_text("2 mo")
    page.screenshot(path=str(tmp_path / "study-list-accession.png"), full_page=True)


def test_a_header_sorts_from_the_keyboard_and_again_the_other_way(
    page: Page, live: Live[None], tmp_path: Path
) -> None:
    log_in_reader(page, live.readers["sorter"])
    header = page.locator('th:has(a[data-sort="name"])')
    expect(header).to_have_attribute("aria-sort", "none")
    page.locator('a[data-sort="name"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "sort=name" in url and "dir=asc" in url)
    expect(header).to_have_attribute("aria-sort", "ascending")
    names = page.locator(f"{ROWS} td.patient a")
    expect(names).to_have_text(["(no name)", "DOE, Jane", "DOE, Jane", "ROE, Baby", "SMITH, Janice"])
    page.screenshot(path=str(tmp_path / "study-list-by-name.png"), full_page=True)

    page.locator('a[data-sort="name"]').focus()
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "dir=desc" in url)
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(names).to_have_text(["SMITH, Janice", "ROE, Baby", "DOE, Jane", "DOE, Jane", "(no name)"])

    page.locator('a[data-sort="date"]').click()
    page.wait_for_url(lambda url: "sort=date" in url)
    assert _accessions(page) == ["ACC-B-17", "ACC-2024-0042", "ACC-2023-0311", "ACC-N-1", "ACC-2019-0007"]


def test_a_study_without_a_name_opens_and_a_patients_studies_are_one_link_away(
    page: Page, live: Live[None], tmp_path: Path
) -> None:
    log_in_reader(page, live.readers["opener"])
    doe = page.locator(f'tr[data-study="{DOE.study_uid}"] a.patient-studies')
    expect(doe).to_have_text("2 studies")
    doe.click()
    page.wait_for_url(lambda url: "patient=" in url)
    expect(page.locator("#patient-filter")).to_contain_text("Studies of DOE, Jane (PID-1001)")
    assert _accessions(page) == ["ACC-2024-0042", "ACC-2019-0007"]
    page.screenshot(path=str(tmp_path / "study-list-patient.png"), full_page=True)

    page.click("#all-studies")
    unnamed = page.locator(f'tr[data-study="{NAMELESS.study_uid}"] td.patient a')
    expect(unnamed).to_have_text("(no name)")
    unnamed.click()
    wait_for_path(page, f"/studies/{NAMELESS.study_uid}")
    page.wait_for_function(VIEWER_READY)
    page.screenshot(path=str(tmp_path / "viewer-unnamed.png"))
