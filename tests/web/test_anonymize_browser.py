"""The anonymize page in headless Chromium against ``pacs serve``: the form, its options and the ZIP download.

A user with the admin and physician roles opens the study's page, follows its link to the form,
chooses the options and downloads the copy; the ZIP is checked for every marked identifying
value and the page for CSP violations. Screenshots go under the test's tmp path.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import Page, expect

from pacs.core.context import Context
from tests.ops.anonymize_helpers import STUDY_UID, MarkedStudy, found_in, store_marked_study
from tests.web.browser import Reader, wait_for_path
from tests.web.viewer_live import Live, add_readers, serve_archive

CARER = "carer"


def _seed(pacs: Context) -> tuple[MarkedStudy, Reader]:
    """The marked study, and a user with both roles who enrolled TOTP and chose a password."""
    study = store_marked_study(pacs, pacs.settings.data_dir.parent / "marked")
    return study, add_readers(pacs, [CARER], frozenset({"admin", "physician"}))[CARER]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[tuple[MarkedStudy, Reader]]]:
    with serve_archive(tmp_path_factory.mktemp("anonymize"), _seed, []) as served:
        yield served


def _log_in(page: Page, reader: Reader) -> None:
    page.goto("/login")
    page.fill("#username", reader.name)
    page.fill("#password", reader.password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")
    page.fill("#code", reader.totp.now())
    page.click("#submit")
    wait_for_path(page, "/")


def test_the_form_downloads_a_zip_without_identifying_values(
    page: Page, live: Live[tuple[MarkedStudy, Reader]], tmp_path: Path
) -> None:
    study, carer = live.seeded
    _log_in(page, carer)
    page.goto(f"/admin/studies/{STUDY_UID}")
    page.click("#anonymize")
    wait_for_path(page, f"/admin/studies/{STUDY_UID}/anonymize")
    expect(page.locator("#burned-in")).to_contain_text("3 of 7 objects")
    page.fill("input[name=patient_name]", "CASE^BROWSER")
    page.check("input[name=dates][value=shift]")
    page.check("input[name=clean_descriptors]")
    page.screenshot(path=str(tmp_path / "anonymize-form.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#anonymize button[type=submit]")
    assert download.value.suggested_filename == "anonymized-study.zip"
    data = Path(download.value.path()).read_bytes()
    values = study.identifying_values()
    assert found_in(data, values) == set()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("MANIFEST.json"))
        copies = [
            pydicom.dcmread(io.BytesIO(archive.read(n))) for n in archive.namelist() if n.endswith(".dcm")
        ]
        assert all(found_in(archive.read(name), values) == set() for name in archive.namelist())
    assert manifest["deidentification"] == ["basic", "modified_dates", "clean_descriptors"]
    assert len(copies) == 4 and {str(ds.PatientName) for ds in copies} == {"CASE^BROWSER"}
    assert {ds.LongitudinalTemporalInformationModified for ds in copies} == {"MODIFIED"}
