"""OHIF Viewer (its published npm build) in headless Chromium shows a CT study of a live archive.

OHIF is served from its own origin (:mod:`tests.web.ohif_helpers`), listed in the archive's
``[web] cors_origins``, and calls ``pacs serve``'s DICOMweb root over real HTTPS (Chromium trusts
the archive's CA) with a physician's read token: QIDO-RS for its study list and series,
WADO-RS metadata and frames for its cornerstone viewport.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page, Response, expect

from pacs.core.accounts import Accounts
from pacs.core.config import render_config, with_overrides
from pacs.core.context import Context
from pacs.core.tokens import Tokens
from tests.conftest import REPO
from tests.web.browser import PHYSICIAN
from tests.web.dicomweb_helpers import Study, store_study
from tests.web.ohif_helpers import OhifSite, app_config, serve_ohif
from tests.web.viewer_live import PASSWORD, Live, serve_archive

OWNER = "ohif"
OHIF_NAME = "QUIXOTE, DULCINEA"  # the ct_dir fixture's patient, as OHIF writes a person name
ARTIFACTS = REPO / "test-artifacts"
LOAD_MS = 90_000  # OHIF's first start compiles its bundles and web workers: generous, never asserted

# The first cornerstone viewport's canvas: its size and how many pixels are not black.
VIEWPORT_PIXELS = """
() => {
  const canvas = document.querySelector(".cornerstone-canvas");
  if (!canvas || !canvas.width) return null;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  const levels = new Set();
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] + data[i + 1] + data[i + 2] > 48) lit += 1;
    levels.add(data[i]);
  }
  return { width: canvas.width, height: canvas.height, lit, levels: levels.size };
}
"""


@dataclass(frozen=True)
class Seeded:
    """The stored CT study and the secret of the read token OHIF uses."""

    study: Study
    token: str


def _seed(ct_dir: Path, origin: str) -> Any:
    def seed(pacs: Context) -> Seeded:
        settings = with_overrides(pacs.settings, "web", cors_origins=(origin,))
        (pacs.settings.data_dir / "pacs.toml").write_text(render_config(settings))
        study = store_study(pacs, sorted(ct_dir.glob("*.dcm")))
        accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
        accounts.add(OWNER, PHYSICIAN, PASSWORD)
        _, secret = Tokens(pacs.database, accounts, pacs.audit).create(OWNER, "OHIF", {"read"})
        return Seeded(study, secret)

    return seed


@pytest.fixture(scope="module")
def site() -> Iterator[OhifSite]:
    with serve_ohif() as served:
        yield served


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ct_dir: Path, site: OhifSite) -> Iterator[Live[Seeded]]:
    with serve_archive(tmp_path_factory.mktemp("ohif"), _seed(ct_dir, site.origin), []) as served:
        site.config = app_config(f"{served.base_url}/dicomweb", served.seeded.token)
        yield served


@dataclass
class Traffic:
    """What OHIF asked of the archive: the paths answered with success, and every failure."""

    answered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def note(self, response: Response, archive: str) -> None:
        if not response.url.startswith(archive) or response.request.method == "OPTIONS":
            return
        path = urlsplit(response.url).path
        if response.status < 400:
            self.answered.append(path)
        else:
            self.failed.append(f"{response.status} {response.request.method} {response.url}")


@pytest.fixture
def ohif(browser: Browser, live: Live[Seeded], site: OhifSite) -> Iterator[tuple[Page, Traffic]]:
    """A page on OHIF's origin, and its traffic with the archive."""
    context = browser.new_context(base_url=site.origin, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    traffic = Traffic()
    page.on("response", lambda response: traffic.note(response, live.base_url))
    page.set_default_timeout(LOAD_MS)
    try:
        yield page, traffic
    finally:
        context.close()


def study_row(page: Page) -> Locator:
    return page.get_by_role("row", name=re.compile(re.escape(OHIF_NAME)))


def test_ohif_lists_the_ct_study_and_shows_its_image(ohif: tuple[Page, Traffic], live: Live[Seeded]) -> None:
    page, traffic = ohif
    page.goto("/")
    expect(study_row(page)).to_contain_text("SYNTHETIC CT CHEST")
    study_row(page).click()
    page.get_by_role("button", name="Basic Viewer").click()
    page.wait_for_url(lambda url: live.seeded.study.uid in url)
    page.wait_for_function(f"() => ({VIEWPORT_PIXELS})()?.levels > 8", polling=250)
    shown = page.evaluate(VIEWPORT_PIXELS)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ohif.png"))
    # The stored window (40/400) and all six slices, as OHIF read them from the metadata.
    expect(page.get_by_title("Window Level")).to_have_text("W:400L:40")
    expect(page.get_by_text("1 (1/6)", exact=True).first).to_be_visible()
    assert shown["lit"] > shown["width"] * shown["height"] // 10, shown
    page.locator(".cornerstone-canvas").first.hover()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_text("2 (2/6)", exact=True).first).to_be_visible()
    study = f"/dicomweb/studies/{live.seeded.study.uid}"
    assert any(path.startswith(study) and path.endswith("/metadata") for path in traffic.answered)
    assert any(path.startswith(study) and "/frames/" in path for path in traffic.answered)
    assert traffic.failed == []


def test_ohif_filters_its_study_list_through_qido(ohif: tuple[Page, Traffic]) -> None:
    page, traffic = ohif
    page.goto("/")
    expect(study_row(page)).to_be_visible()
    patient = page.get_by_role("row", name="Reset filters").get_by_role("textbox").first
    patient.fill("QUIX")
    expect(study_row(page)).to_be_visible()
    patient.fill("NOBODY")
    expect(study_row(page)).to_have_count(0)
    assert traffic.failed == []
