"""Frame transfer in Chromium, against ``pacs serve`` over real TLS (hypercorn).

``transfer.js`` as the page loads it fetches each large frame packed and must hand back
exactly the raw samples (SHA-256 compared with pydicom's pixel data) and a preview equal to
the 4 x 4 block means; the viewer of a 3000 x 3000 CR shows the preview first, then the
full frame (Chromium's network throttled to 20 Mbit/s, so that the two are seen apart;
screenshots of both are kept under the test's tmp path). No wall-clock time is asserted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from pacs.core.context import Context
from tests.web.browser import VIEWER_READY, log_in_reader
from tests.web.dicomweb_helpers import frame_url
from tests.web.large_frames import cr_pixels, write_image
from tests.web.test_frame_transfer import block_means
from tests.web.viewer_live import Live, new_context, serve_archive, watched

READER = "radiographer"

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
  // Chromium may add the resource's timing entry after the body's last byte was read (10 s at most).
  const href = new URL(url, location.href).href;
  const entry = await new Promise((resolve) => {
    setTimeout(resolve, 10_000);
    new PerformanceObserver((list, observer) => {
      const found = list.getEntriesByName(href).pop();
      if (found) {
        observer.disconnect();
        resolve(found);
      }
    }).observe({ type: "resource", buffered: true });
  });
  return {
    frame: await hex(frame.buffer),
    rows: frame.headers.get("X-Rows"),
    preview: preview && { hash: await hex(preview.buffer), of: preview.headers["x-preview-of"] },
    encodedBytes: entry.encodedBodySize,
  };
}
"""


@dataclass(frozen=True)
class Frames:
    """The CR's study, and the frame URL and samples of each kind stored."""

    cr_study: str
    frames: dict[str, tuple[str, np.ndarray]]  # kind -> (frame URL, samples)


def _seed(root: Path) -> Callable[[Context], Frames]:
    def seed(pacs: Context) -> Frames:
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
        return Frames(cr_study, frames)

    return seed


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[Frames]]:
    """``pacs serve`` with the CR and a 4 MP frame of each other format, and one physician."""
    root = tmp_path_factory.mktemp("transfer-live")
    with serve_archive(root, _seed(root), [READER]) as running:
        yield running


@pytest.fixture(scope="module")
def context(browser: Browser, live: Live[Frames]) -> Iterator[BrowserContext]:
    """A browser context logged in once (a TOTP code is accepted once) for the module's pages."""
    with new_context(browser, live, 1280, 800, PUTS_WATCH) as logged_in:
        with watched(logged_in.new_page()) as page:
            log_in_reader(page, live.readers[READER])
        yield logged_in


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A new page; console errors, uncaught exceptions and CSP violations fail the test."""
    with watched(context.new_page()) as opened:
        opened.goto("/")
        yield opened


def sha256(pixels: np.ndarray) -> str:
    return hashlib.sha256(pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()).hexdigest()


@pytest.mark.parametrize("kind", ["uint16", "uint8", "int16", "rgb8"])
def test_fetch_frame_in_chromium_gives_exactly_the_raw_samples_after_their_block_mean_preview(
    page: Page, live: Live[Frames], kind: str
) -> None:
    url, pixels = live.seeded.frames[kind]
    got = page.evaluate(FETCH_JS, url)
    rows, columns = pixels.shape[:2]
    assert got["frame"] == sha256(pixels)
    assert got["rows"] == str(rows)
    grid = pixels.reshape(rows, columns, -1)
    assert got["preview"] == {"hash": sha256(block_means(grid)), "of": f"{rows}x{columns}"}
    assert 0 < got["encodedBytes"] < 0.6 * pixels.nbytes


def test_the_viewer_shows_the_crs_preview_then_its_full_frame(
    page: Page, live: Live[Frames], tmp_path: Path
) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    throughput = 20e6 / 8  # 20 Mbit/s, 20 ms: a VPN from home
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": throughput, "uploadThroughput": throughput},
    )
    page.goto(f"/studies/{live.seeded.cr_study}")
    page.wait_for_function(VIEWER_READY, timeout=60_000)
    page.wait_for_function("() => window.__puts.some(([, width]) => width === 750)", timeout=60_000)
    page.screenshot(path=tmp_path / "cr-preview.png")
    page.wait_for_function("() => window.__puts.some(([, width]) => width === 3000)", timeout=60_000)
    page.screenshot(path=tmp_path / "cr-full.png")
    widths = [width for _, width in page.evaluate("() => window.__puts") if width in (750, 3000)]
    assert widths[0] == 750 and widths[-1] == 3000
    assert page.evaluate("() => document.getElementById('viewer-error')?.hidden ?? true")
