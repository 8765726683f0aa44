"""The viewer in headless Chromium (Playwright) for ``bench/web_viewer.py``: first image, scrolling."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import percentile
from bench.web_client import Served
from webviewer.sessions import COOKIE

CHROMIUM = "/usr/bin/chromium"

# Runs before the viewer's script: notes performance.now() (ms since navigation start)
# when viewerState.ready becomes true, and counts putImageData calls on the canvas the
# viewer draws onto #viewport, i.e. new images rendered (not mere re-composites).
INIT_SCRIPT = """
(() => {
  const marks = { readyAt: null, puts: 0, canvas: null };
  window.__bench = marks;
  let state;
  Object.defineProperty(window, "viewerState", {
    configurable: true,
    get() { return state; },
    set(value) {
      state = value;
      let ready = value.ready;
      Object.defineProperty(value, "ready", {
        configurable: true,
        enumerable: true,
        get() { return ready; },
        set(flag) {
          if (flag && !ready) marks.readyAt = performance.now();
          ready = flag;
        },
      });
    },
  });
  const proto = CanvasRenderingContext2D.prototype;
  const put = proto.putImageData;
  proto.putImageData = function (...args) {
    if (marks.canvas !== null && this.canvas === marks.canvas) marks.puts += 1;
    return put.apply(this, args);
  };
  const drawImage = proto.drawImage;
  proto.drawImage = function (source, ...rest) {
    if (this.canvas.id === "viewport") marks.canvas = source;
    return drawImage.call(this, source, ...rest);
  };
})();
"""

TIMINGS_JS = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  const end = (test) => {
    const entry = resources.find((r) => test(new URL(r.name).pathname));
    return entry ? entry.responseEnd : null;
  };
  const s = window.viewerState;
  const error = document.getElementById("viewer-error");
  return {
    readyAt: window.__bench.readyAt,
    firstImageMs: s.firstImageMs,
    connect: nav.connectEnd - nav.connectStart,
    htmlWait: nav.responseStart - nav.requestStart,
    html: nav.responseEnd,
    script: end((p) => p.endsWith("/viewer.js")),
    modules: Math.max(0, ...resources.filter((r) => r.name.endsWith(".js")).map((r) => r.responseEnd)),
    series: end((p) => p.endsWith("/series")),
    instances: end((p) => p.endsWith("/instances")),
    frame: end((p) => p.includes("/frames/")),
    error: error.hidden ? "" : error.textContent,
  };
}
"""

# Cold: ArrowDown as soon as the current slice is on screen, from the first to the last.
COLD_SCROLL_JS = """
async () => {
  const s = window.viewerState;
  const marks = window.__bench;
  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  const last = s.total - 1;
  const requests = s.frameRequests;
  let maxWait = 0;
  const began = performance.now();
  while (s.index < last) {
    const before = marks.puts;
    const pressed = performance.now();
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    while (marks.puts === before) {
      await nextFrame();
      if (performance.now() - pressed > 60000) throw new Error(`stalled at slice ${s.index + 1}`);
    }
    maxWait = Math.max(maxWait, performance.now() - pressed);
  }
  const seconds = (performance.now() - began) / 1000;
  return { slices: last, seconds, maxWait, requests: s.frameRequests - requests };
}
"""

PREFETCHED_JS = (
    "() => window.viewerState.inFlight === 0 && window.viewerState.frameRequests >= window.viewerState.total"
)

# Prefetched: back to slice 1, then one ArrowDown per animation frame to the last slice.
RAF_SCROLL_JS = """
async () => {
  const s = window.viewerState;
  const marks = window.__bench;
  const key = (name) =>
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: name, bubbles: true }));
  const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  key("Home");
  await nextFrame();
  await nextFrame();
  const last = s.total - 1;
  const drawn = s.framesDrawn;
  const puts = marks.puts;
  const gaps = [];
  const busy = [];
  return await new Promise((resolve) => {
    let previous = null;
    const began = performance.now();
    const step = (now) => {
      if (previous !== null) {
        gaps.push(now - previous);
        busy.push(performance.now() - now); // this frame's earlier callbacks: the viewer's draw()
      }
      previous = now;
      if (s.index < last) {
        key("ArrowDown");
        requestAnimationFrame(step);
        return;
      }
      requestAnimationFrame((end) => {
        gaps.push(end - previous);
        const seconds = (performance.now() - began) / 1000;
        resolve({
          seconds,
          slices: last,
          drawn: s.framesDrawn - drawn,
          rendered: marks.puts - puts,
          animationFrames: gaps.length,
          maxGap: Math.max(...gaps),
          longGaps: gaps.filter((gap) => gap > 20).length,
          drawMs: busy.sort((a, b) => a - b),
        });
      });
    };
    requestAnimationFrame(step);
  });
}
"""


@dataclass
class PageLoad:
    """One opening of the viewer page, in ms since navigation start."""

    ready: float = 0.0  # performance.now() when viewerState.ready was set
    first_image: float = 0.0  # viewerState.firstImageMs: from the viewer script's start
    connect: float = 0.0  # TCP + TLS connection of the page
    html_wait: float = 0.0  # request sent -> first byte of the HTML
    html: float = 0.0  # responses complete: ...
    script: float = 0.0
    modules: float = 0.0  # the last of the page's scripts (viewer.js and its modules)
    series: float = 0.0  # 0: not requested (the page carries the lists)
    instances: float = 0.0
    frame: float = 0.0

    @classmethod
    def of(cls, timings: dict[str, Any]) -> PageLoad:
        return cls(
            ready=timings["readyAt"] or 0.0,
            first_image=timings["firstImageMs"] or 0.0,
            connect=timings["connect"] or 0.0,
            html_wait=timings["htmlWait"] or 0.0,
            html=timings["html"] or 0.0,
            script=timings["script"] or 0.0,
            modules=timings["modules"] or 0.0,
            series=timings["series"] or 0.0,
            instances=timings["instances"] or 0.0,
            frame=timings["frame"] or 0.0,
        )


@dataclass
class BrowserRun:
    cold: PageLoad = field(default_factory=PageLoad)  # fresh pacs serve, new browser context
    warm: PageLoad = field(default_factory=PageLoad)  # opened again, new context, server caches warm
    cold_fps: float = 0.0  # slices shown per second, next slice as soon as one is drawn
    cold_max_wait_ms: float = 0.0
    cold_requests: int = 0
    prefetch_wait_s: float = 0.0
    fps: float = 0.0  # framesDrawn per second, prefetched, one ArrowDown per animation frame
    rendered_fps: float = 0.0  # new images rendered per second (putImageData on the image canvas)
    raf_fps: float = 0.0  # animation frames per second the browser ran meanwhile
    max_gap_ms: float = 0.0
    long_gaps: int = 0
    draw_p50_ms: float = 0.0  # time of the viewer's draw() callback per animation frame
    draw_p95_ms: float = 0.0
    errors: list[str] = field(default_factory=list)


def open_viewer(browser: Any, served: Served, token: str, study_uid: str) -> tuple[Any, Any, dict[str, Any]]:
    """A new context with the session cookie; the viewer page, once its first image is drawn."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": COOKIE, "value": token, "url": served.base_url + "/"}])
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{served.base_url}/studies/{study_uid}", wait_until="commit")
    page.wait_for_function("() => window.viewerState && window.viewerState.ready", timeout=60_000)
    timings = page.evaluate(TIMINGS_JS)
    timings["pageerrors"] = errors
    return context, page, timings


def browser_run(served: Served, token: str, study_uid: str) -> BrowserRun:
    from playwright.sync_api import sync_playwright  # only needed without --skip-browser

    run = BrowserRun()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--ignore-certificate-errors"])
        try:
            context, page, timings = open_viewer(browser, served, token, study_uid)
            run.cold = PageLoad.of(timings)
            cold = page.evaluate(COLD_SCROLL_JS)
            run.cold_fps = cold["slices"] / cold["seconds"] if cold["seconds"] else 0.0
            run.cold_max_wait_ms, run.cold_requests = cold["maxWait"], cold["requests"]
            began = time.perf_counter()
            page.wait_for_function(PREFETCHED_JS, timeout=300_000)
            run.prefetch_wait_s = time.perf_counter() - began
            scroll = page.evaluate(RAF_SCROLL_JS)
            seconds = scroll["seconds"] or 1e-9
            run.fps, run.rendered_fps = scroll["drawn"] / seconds, scroll["rendered"] / seconds
            run.raf_fps = scroll["animationFrames"] / seconds
            run.max_gap_ms, run.long_gaps = scroll["maxGap"], scroll["longGaps"]
            run.draw_p50_ms = percentile(scroll["drawMs"], 50)
            run.draw_p95_ms = percentile(scroll["drawMs"], 95)
            shown = page.evaluate(TIMINGS_JS)["error"]
            run.errors += [
                problem for problem in [timings["error"], shown, *timings["pageerrors"]] if problem
            ]
            context.close()
            context, page, timings = open_viewer(browser, served, token, study_uid)
            run.warm = PageLoad.of(timings)
            run.errors += [problem for problem in [timings["error"], *timings["pageerrors"]] if problem]
            context.close()
        finally:
            browser.close()
    return run
