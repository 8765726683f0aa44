"""The first login in a real headless Chromium against ``pacs serve``: the QR code decoded, home at the end.

A served archive of its own (:mod:`tests.web.viewer_live`) holds a small study and one new
account (``newcomer``, a one-time password, no second factor); the page is the watched page
of the web tests' conftest. The QR code is read back from a screenshot with
``zbarimg`` (Debian's zbar-tools, installed by ``scripts/dev-setup.sh``). Screenshots of
the enrolment page, of a wrong code and of a refused weak password are kept under the
test's temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from playwright.sync_api import Page, expect

from pacs.core.context import Context
from tests.data.make_series import make_ct_series
from tests.web.browser import Newcomer, wait_for_path
from tests.web.viewer_live import Live, add_newcomer, serve_archive
from webviewer.auth import WRONG_ENROLMENT_CODE

WEAK = "passwordpassword"
OWN_PASSWORD = "juniper ferries cross at noon"
IMAGE_SIZE = "(img) => [img.complete, img.naturalWidth, img.naturalHeight]"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Newcomer]]:
    root = tmp_path_factory.mktemp("first-login")

    def seed(pacs: Context) -> Newcomer:
        for path in make_ct_series(root / "ct", slices=2, rows=64, columns=64, patient_name="NEW^NORA"):
            pacs.archive.store(path)
        return add_newcomer(pacs, "newcomer")

    with serve_archive(root, seed, []) as running:
        yield running


@pytest.fixture
def newcomer(live: Live[Newcomer]) -> Newcomer:
    return live.seeded


def _zbarimg() -> str:
    found = shutil.which("zbarimg")
    if found is None:
        pytest.fail("zbarimg is missing (apt-get install zbar-tools, or scripts/dev-setup.sh)")
    return found


def _decoded(png: Path) -> str:
    """The text of the one QR code in `png`."""
    result = subprocess.run([_zbarimg(), "--raw", "-q", str(png)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _wrong_code(totp: pyotp.TOTP) -> str:
    """A code valid at no step near now (two steps either way, for a step that ends meanwhile)."""
    now = time.time()
    valid = {totp.at(now + offset * 30) for offset in range(-2, 3)}
    return next(code for code in (f"{n:06d}" for n in range(10**6)) if code not in valid)


def _shown_key(page: Page) -> str:
    return page.locator("#totp-key").inner_text().replace(" ", "")


def _enrolment_qr_code(page: Page, shots: Path) -> str:
    """Check that the QR code is drawn and decodes to the key's URI; return the key."""
    qr = page.locator("#totp-qr")
    expect(qr).to_be_visible()
    complete, width, height = qr.evaluate(IMAGE_SIZE)
    assert complete and width > 0 and height > 0, (complete, width, height)
    page.screenshot(path=shots / "enrolment.png", full_page=True)
    qr.screenshot(path=shots / "qr.png")
    uri = _decoded(shots / "qr.png")
    key = _shown_key(page)
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp"), uri
    assert parse_qs(parts.query)["secret"] == [key]
    assert parse_qs(parts.query)["issuer"] == ["mini-PACS"]
    return key


def test_first_login_decodes_the_qr_code_keeps_the_key_and_ends_on_the_study_list(
    page: Page, newcomer: Newcomer, tmp_path: Path
) -> None:
    visited: list[str] = []
    page.on("framenavigated", lambda frame: visited.append(urlsplit(frame.url).path))
    page.goto("/login")
    page.fill("#username", newcomer.name)
    page.fill("#password", newcomer.password)
    page.click("#submit")
    wait_for_path(page, "/login/enrol")
    key = _enrolment_qr_code(page, tmp_path)

    page.reload()
    assert _shown_key(page) == key
    totp = pyotp.TOTP(key)
    page.fill("#code", _wrong_code(totp))
    page.click("#submit")
    wait_for_path(page, "/login/enrol")
    expect(page.locator(".flash")).to_have_text(WRONG_ENROLMENT_CODE)
    assert _shown_key(page) == key
    page.screenshot(path=tmp_path / "wrong-code.png", full_page=True)

    page.fill("#code", totp.now())
    page.click("#submit")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.click("#continue")
    wait_for_path(page, "/account/password")
    page.fill("#new", WEAK)
    page.fill("#again", WEAK)
    page.click("#submit")
    expect(page.locator(".flash")).to_contain_text("too easy to guess")
    page.screenshot(path=tmp_path / "weak-password.png", full_page=True)

    page.fill("#new", OWN_PASSWORD)
    page.fill("#again", OWN_PASSWORD)
    page.click("#submit")
    wait_for_path(page, "/")
    expect(page.locator("#studies")).to_be_visible()
    expect(page.locator(".who")).to_have_text(newcomer.name)
    after_password = visited[visited.index("/login/enrol") :]
    assert "/login" not in after_password and "/login/totp" not in after_password, visited
