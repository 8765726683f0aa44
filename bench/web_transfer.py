"""A large CR's transfer and a 2x2 comparison of two CTs, for ``bench/web_viewer.py``.

What is measured (after the other figures, on the same archive):

1. Bytes and encoding. A 3000 x 3000 16-bit CR (12 bits used, detector noise,
   ``tests/web/large_frames.py``) is stored. In this process, :func:`webviewer.transfer.parts`
   (the preview, then the frame, losslessly packed) is timed 5 times on its decoded frame:
   the bytes of the raw frame, of the packed frame and of the preview, and the encoding time.
2. The CR in the viewer (headless Chromium, a fresh ``pacs serve``, each condition in a new
   context): on loopback, and with Chromium's network emulation at 50 Mbit/s and 20 ms
   (a VPN from home). From navigation start to the viewer's first rendering (putImageData)
   of the 750 x 750 preview and of the 3000 x 3000 frame, and the frame response's body
   bytes (Resource Timing). Then, in the same page and conditions, the same frame fetched
   raw (no ``Accept``), to compare: time to the last byte, and bytes; and ``fetchFrame``
   again (server caches warm): the whole packed fetch and decode.
3. The 2x2 comparison. A second 500-slice CT of the same patient (an older study, the
   prior) is stored. The viewer opens the first CT; as soon as each step is possible,
   the 2x2 layout is chosen (Shift+4), the prior is opened in the list of other studies
   and its series picked into viewports 2 and 4. Times from navigation start until the
   first image, until the four viewports show full frames, and until the prior is shown
   in both of its viewports.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from bench.common import MB
from bench.web_client import Served
from webviewer import transfer
from webviewer.pixels import Frame
from webviewer.sessions import COOKIE

CR_SIZE = 3000
VPN = ("50 Mbit/s, 20 ms", {"latency": 20, "downloadThroughput": 50e6 / 8, "uploadThroughput": 50e6 / 8})
CONDITIONS = [("loopback", None), VPN]

PUTS_WATCH = """
window.__puts = [];
const put = CanvasRenderingContext2D.prototype.putImageData;
CanvasRenderingContext2D.prototype.putImageData = function (image, ...rest) {
  window.__puts.push([performance.now(), image.width]);
  return put.call(this, image, ...rest);
};
"""

CR_SHOWN_JS = """
(size) => {
  const first = (width) => (window.__puts.find(([, w]) => w === width) ?? [null])[0];
  const entry = performance.getEntriesByType("resource").find((r) => r.name.includes("/frames/"));
  return { preview: first(size / 4), full: first(size), bytes: entry ? entry.encodedBodySize : null,
           url: entry ? entry.name : null };
}
"""

RAW_AND_PACKED_JS = """
async (url) => {
  const began = performance.now();
  const raw = await (await fetch(url, { credentials: "same-origin" })).arrayBuffer();
  const rawMs = performance.now() - began;
  const { fetchFrame } = await import("/static/viewer/transfer.js");
  const again = performance.now();
  const frame = await fetchFrame(url, "the CR");
  return { rawMs, rawBytes: raw.byteLength, packedMs: performance.now() - again,
           same: frame.buffer.byteLength === raw.byteLength };
}
"""

DRAWN_JS = """
(wanted) => wanted.every(([i, uid]) => {
  const v = viewerState.viewports[i];
  return v && (uid === null || v.seriesUid === uid) && v.drawnKey !== null && v.drawnKey === v.sliceKey;
})
"""


@dataclass
class CrLoad:
    """One opening of the CR's viewer under one network condition; ms since navigation start."""

    preview_ms: float = 0.0
    full_ms: float = 0.0
    bytes: int = 0
    raw_ms: float = 0.0  # the same frame fetched raw, in the same page
    raw_bytes: int = 0
    packed_again_ms: float = 0.0  # fetchFrame (fetch, inflate, restore) with the server's caches warm


@dataclass
class TransferResult:
    raw_bytes: int = 0
    packed_bytes: int = 0
    preview_bytes: int = 0
    encode_ms: list[float] = field(default_factory=list)
    loads: dict[str, list[CrLoad]] = field(default_factory=dict)
    compare_first_ms: list[float] = field(default_factory=list)
    compare_layout_ms: list[float] = field(default_factory=list)
    compare_done_ms: list[float] = field(default_factory=list)
    failed: str = ""


@dataclass(frozen=True)
class Studies:
    cr: str
    ct: str
    prior_series: str


def make_cr(directory: Path) -> Path:
    """The 3000 x 3000 CR, written with pydicom."""
    from tests.web.large_frames import cr_pixels, write_image

    directory.mkdir(parents=True, exist_ok=True)
    return write_image(directory / "cr.dcm", cr_pixels(CR_SIZE, CR_SIZE), patient=("BENCH^CR", "BENCH-CR"))


def make_prior(directory: Path, slices: int, ct: Path) -> list[Path]:
    """A CT series of `slices` slices of the patient of `ct`, as an older study."""
    from tests.data.make_series import make_ct_series

    ds = pydicom.dcmread(ct, stop_before_pixels=True)
    return make_ct_series(
        directory,
        slices=slices,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        patient_name=str(ds.PatientName),
        patient_id=str(ds.PatientID),
        study_date="20230110",
        accession="BENCHPRIOR",
        seed=7,
    )


def time_encoding(cr: Path, into: TransferResult, repeat: int = 5) -> None:
    """Bytes of the raw, packed and preview CR, and the time of :func:`webviewer.transfer.parts`."""
    pixels = pydicom.dcmread(cr).pixel_array
    frame = Frame(pixels.astype("<u2").tobytes(), "uint16", CR_SIZE, CR_SIZE, "MONOCHROME2", 1)
    for _ in range(repeat):
        began = time.perf_counter()
        pieces = list(transfer.parts(frame))
        into.encode_ms.append((time.perf_counter() - began) * 1000)
    into.raw_bytes = len(frame.samples)
    into.preview_bytes = len(pieces[0])
    into.packed_bytes = sum(map(len, pieces[1:]))


def _context(browser: Any, served: Served, token: str) -> Any:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": COOKIE, "value": token, "url": served.base_url + "/"}])
    context.add_init_script(PUTS_WATCH)
    return context


def open_cr(
    browser: Any, served: Served, token: str, study: str, condition: dict[str, float] | None
) -> CrLoad:
    """The CR's viewer under `condition` (Chromium's network emulation; None: loopback as it is)."""
    context = _context(browser, served, token)
    try:
        page = context.new_page()
        if condition is not None:
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {"offline": False, **condition})
        page.goto(f"{served.base_url}/studies/{study}", wait_until="commit")
        page.wait_for_function(
            f"() => window.__puts && window.__puts.some(([, w]) => w === {CR_SIZE})", timeout=120_000
        )
        shown = page.evaluate(CR_SHOWN_JS, CR_SIZE)
        again = page.evaluate(RAW_AND_PACKED_JS, shown["url"])
        if not again["same"]:
            raise ValueError("the packed and the raw frame differ in size")
        return CrLoad(
            shown["preview"] or 0.0,
            shown["full"],
            shown["bytes"] or 0,
            again["rawMs"],
            again["rawBytes"],
            again["packedMs"],
        )
    finally:
        context.close()


def open_comparison(browser: Any, served: Served, token: str, studies: Studies, into: TransferResult) -> None:
    """The first CT in 2x2 with the prior's series in viewports 2 and 4; times into `into`."""
    context = _context(browser, served, token)
    try:
        page = context.new_page()
        page.goto(f"{served.base_url}/studies/{studies.ct}", wait_until="commit")
        page.wait_for_function("() => window.viewerState && window.viewerState.ready", timeout=60_000)
        into.compare_first_ms.append(page.evaluate("() => performance.now()"))
        page.keyboard.press("Shift+Digit4")
        page.wait_for_function(DRAWN_JS, arg=[[i, None] for i in range(4)], timeout=60_000)
        into.compare_layout_ms.append(page.evaluate("() => performance.now()"))
        page.click("#priors .prior-toggle")
        for viewport in (1, 3):
            box = page.locator(f'.cell[data-viewport="{viewport}"]').bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, button="middle")
            page.click(f'.series-thumb[data-series="{studies.prior_series}"]')
        wanted = [[1, studies.prior_series], [3, studies.prior_series], [0, None], [2, None]]
        page.wait_for_function(DRAWN_JS, arg=wanted, timeout=60_000)
        into.compare_done_ms.append(page.evaluate("() => performance.now()"))
    finally:
        context.close()


def browser_transfer(served: Served, token: str, studies: Studies, into: TransferResult) -> None:
    """The CR under each condition, then the 2x2 comparison, in one headless Chromium."""
    from playwright.sync_api import sync_playwright

    from bench.web_browser import CHROMIUM

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--ignore-certificate-errors"])
        try:
            for label, condition in CONDITIONS:
                into.loads.setdefault(label, []).append(
                    open_cr(browser, served, token, studies.cr, condition)
                )
            open_comparison(browser, served, token, studies, into)
        finally:
            browser.close()


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def print_transfer(result: TransferResult, slices: int) -> None:
    """The transfer and comparison figures."""
    print(f"3000 x 3000 CR (16-bit, 12 bits used, detector noise): raw {result.raw_bytes / MB:.2f} MB")
    if result.packed_bytes:
        ratio = result.raw_bytes / result.packed_bytes
        print(
            f"  packed {result.packed_bytes / MB:.2f} MB ({ratio:.2f}x smaller), preview 750 x 750 "
            f"{result.preview_bytes / 1e3:.0f} KB; server encoding (preview + frame, in-process) "
            f"{_median(result.encode_ms)} ms"
        )
    if result.failed:
        print(f"  browser run failed: {result.failed}")
    for label, loads in result.loads.items():
        print(
            f"  viewer, {label}: preview on screen at {_median([x.preview_ms for x in loads])} ms, "
            f"full frame at {_median([x.full_ms for x in loads])} ms after navigation start; "
            f"{statistics.median(x.bytes for x in loads) / MB:.2f} MB received"
        )
        print(
            f"    same frame raw: {_median([x.raw_ms for x in loads])} ms for "
            f"{statistics.median(x.raw_bytes for x in loads) / MB:.2f} MB; packed again (caches warm, "
            f"fetch + inflate + restore): {_median([x.packed_again_ms for x in loads])} ms"
        )
    if result.compare_done_ms:
        print(
            f"2x2 comparison of two {slices}-slice CTs (current + prior): first image "
            f"{_median(result.compare_first_ms)} ms, four viewports drawn "
            f"{_median(result.compare_layout_ms)} ms, prior shown in two "
            f"{_median(result.compare_done_ms)} ms after navigation start (UI steps as soon as possible)"
        )
