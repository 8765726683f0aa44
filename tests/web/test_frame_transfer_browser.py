"""Frame transfer in Chromium, against ``pacs serve`` over real TLS (hypercorn).

``transfer.js`` as the page loads it fetches each large frame packed and must hand back
exactly the raw samples (SHA-256 compared with pydicom's pixel data) and a preview equal to
the 4 x 4 block means; the viewer of a 3000 x 3000 CR shows the preview first, then the
full frame (Chromium's network throttled to 20 Mbit/s, so that the two are seen apart;
screenshots of both are kept under the test's tmp path). No wall-clock time is asserted.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from pacs.core.accounts import Accounts
from pacs.core.context import CA_CERT, initialise, open_pacs
from tests.conftest import _free_port, pacs_serve
from tests.web.browser import (
    CHROMIUM,
    CSP_WATCH,
    PHYSICIAN,
    TIMEOUT_MS,
    VIEWER_READY,
    Reader,
    log_in_reader,
    trust_ca_for_chromium,
)
from tests.web.dicomweb_helpers import frame_url
from tests.web.large_frames import cr_pixels, write_image
from tests.web.test_frame_transfer import block_means

PASSWORD, NEW_PASSWORD = "amber lynx under pines", "seven paper lanterns drift"

# Runs before the page's scripts: every image the viewer renders (putImageData) as [ms, width].
PUTS_WATCH = """
window.__puts = [];
const put = CanvasRenderingContext2D.prototype.putImageData;
CanvasRenderingContext2D.prototype.putImageData = function (image, ...rest) {
  window.__puts.push([performance.now(), image.width]);
  return put.call(this, image, ...rest);
};
"""

# transfer.js's fetchFrame in the page: SHA-256 of the frame and of the preview, and what came.
FETCH_JS = """
async (url) => {
  const { fetchFrame } = await import("/static/viewer/transfer.js");
  const hex = async (buffer) => [...new Uint8Array(await crypto.subtle.digest("SHA-256", buffer))]
    .map((byte) => byte.toString(16).padStart(2, "0")).join("");
  let preview = null;
  const frame = await fetchFrame(url, "the frame", undefined, (headers, buffer) => {
    preview = { headers: Object.fromEntries(headers), buffer };
  });
  const entry = performance.getEntriesByName(new URL(url, location.href).href).pop();
  return {
    frame: await hex(frame.buffer),
    rows: frame.headers.get("X-Rows"),
    preview: preview && { hash: await hex(preview.buffer), of: preview.headers["x-preview-of"] },
    encodedBytes: entry.encodedBodySize,
  };
}
"""


@dataclass
class Live:
    base_url: str
    home: Path
    reader: Reader
    cr_study: str
    frames: dict[str, tuple[str, np.ndarray]]  # kind -> (frame URL, samples)


def _seed(root: Path, pacs: Any) -> tuple[str, dict[str, tuple[str, np.ndarray]]]:
    grey = cr_pixels(2000, 2000, seed=1)
    arrays = {
        "uint16": cr_pixels(),
        "uint8": (grey >> 4).astype(np.uint8),
        "int16": grey.astype(np.int16) - 2048,
        "rgb8": np.stack([grey >> 4, (grey >> 3) & 0xFF, 255 - (grey >> 4)], axis=-1).astype(np.uint8),
    }
    frames, cr_study = {}, ""
    for kind, pixels in arrays.items():
        stored = pacs.archive.store(write_image(root / f"{kind}.dcm", pixels))
        frames[kind] = (frame_url(stored.study_uid, stored.series_uid, stored.sop_uid, 1), pixels)
        cr_study = cr_study or stored.study_uid
    return cr_study, frames


def _reader(pacs: Any) -> Reader:
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    accounts.add("radiographer", PHYSICIAN, PASSWORD)
    totp = pyotp.TOTP(accounts.begin_totp_enrolment("radiographer"))
    assert accounts.confirm_totp("radiographer", totp.at(time.time() - 30)) is not None
    accounts.change_password("radiographer", NEW_PASSWORD)
    return Reader("radiographer", NEW_PASSWORD, totp)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """``pacs serve`` with the CR and a 4 MP frame of each other format, and one physician."""
    root = tmp_path_factory.mktemp("transfer-live")
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    pacs = open_pacs(settings)
    try:
        cr_study, frames = _seed(root, pacs)
        reader = _reader(pacs)
    finally:
        pacs.close()
    trust_ca_for_chromium(root / "home", settings.tls_dir / CA_CERT)
    port, log = _free_port(), root / "serve.log"
    process = pacs_serve(
        settings.data_dir,
        log,
        PACS_DICOM_PORT=str(_free_port()),
        PACS_DICOM_WORKERS="1",
        PACS_WEB_PORT=str(port),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        banner = process.stdout.readline() if ready else ""
        assert "web viewer on https://" in banner, (banner, log.read_text())
        yield Live(f"https://localhost:{port}", root / "home", reader, cr_study, frames)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stdout is not None
            process.stdout.close()


@pytest.fixture(scope="module")
def browser(live: Live) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, env={**os.environ, "HOME": str(live.home)}
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def context(browser: Browser, live: Live) -> Iterator[BrowserContext]:
    """A browser context logged in once (a TOTP code is accepted once) for the module's pages."""
    context = browser.new_context(base_url=live.base_url, viewport={"width": 1280, "height": 800})
    context.add_init_script(CSP_WATCH)
    context.add_init_script(PUTS_WATCH)
    log_in_reader(context.new_page(), live.reader)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A new page; console errors, uncaught exceptions and CSP violations fail the test."""
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    opened.on("console", lambda message: message.type == "error" and problems.append(message.text))
    opened.on("pageerror", lambda error: problems.append(f"uncaught {error}"))
    opened.goto("/")
    yield opened
    opened.close()
    assert problems == []


def sha256(pixels: np.ndarray) -> str:
    return hashlib.sha256(pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()).hexdigest()


@pytest.mark.parametrize("kind", ["uint16", "uint8", "int16", "rgb8"])
def test_fetch_frame_in_chromium_gives_exactly_the_raw_samples_after_their_block_mean_preview(
    page: Page, live: Live, kind: str
) -> None:
    url, pixels = live.frames[kind]
    got = page.evaluate(FETCH_JS, url)
    rows, columns = pixels.shape[:2]
    assert got["frame"] == sha256(pixels)
    assert got["rows"] == str(rows)
    grid = pixels.reshape(rows, columns, -1)
    assert got["preview"] == {"hash": sha256(block_means(grid)), "of": f"{rows}x{columns}"}
    assert 0 < got["encodedBytes"] < 0.6 * pixels.nbytes


def test_the_viewer_shows_the_crs_preview_then_its_full_frame(page: Page, live: Live, tmp_path: Path) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    throughput = 20e6 / 8  # 20 Mbit/s, 20 ms: a VPN from home
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": throughput, "uploadThroughput": throughput},
    )
    page.goto(f"/studies/{live.cr_study}")
    page.wait_for_function(VIEWER_READY, timeout=60_000)
    page.wait_for_function("() => window.__puts.some(([, width]) => width === 750)", timeout=60_000)
    page.screenshot(path=tmp_path / "cr-preview.png")
    page.wait_for_function("() => window.__puts.some(([, width]) => width === 3000)", timeout=60_000)
    page.screenshot(path=tmp_path / "cr-full.png")
    widths = [width for _, width in page.evaluate("() => window.__puts") if width in (750, 3000)]
    assert widths[0] == 750 and widths[-1] == 3000
    assert page.evaluate("() => document.getElementById('viewer-error')?.hidden ?? true")
