"""The figures of ``bench/web_viewer.py``, per backend, and their tables."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.common import percentile
from bench.web_browser import BrowserRun, PageLoad
from bench.web_frames import Latencies
from bench.web_search import SearchTiming

TARGET_FRAME_P50_MS = 10.0
TARGET_FIRST_IMAGE_MS = 300.0
TARGET_FPS = 60.0
TARGET_SEARCH_P95_MS = 50.0


@dataclass
class BackendResult:
    backend: str
    frames: dict[str, Latencies] = field(default_factory=dict)
    browser: list[BrowserRun] = field(default_factory=list)
    browser_failed: str = ""
    searches: dict[str, SearchTiming] = field(default_factory=dict)
    fill_s: float = 0.0
    store_s: float = 0.0
    web_rss_mb: list[float] = field(default_factory=list)  # web worker VmRSS after the frame passes
    web_hwm_mb: list[float] = field(default_factory=list)
    chain: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


FRAME_KINDS = [
    ("https-cold", "HTTPS pacs serve, cold"),
    ("https-warm", "HTTPS pacs serve, warm"),
    ("local-cold", "test client in-process, cold"),
    ("local-warm", "test client in-process, warm"),
]


def _median(values: Sequence[float], digits: int = 0, repeat: int = 1) -> str:
    if not values:
        return "-"
    text = f"{statistics.median(values):.{digits}f}"
    if repeat > 1 and len(values) > 1:
        text += f" ({min(values):.{digits}f}..{max(values):.{digits}f})"
    return text


def print_frames(results: Sequence[BackendResult], orthanc: Sequence[Latencies], orthanc_note: str) -> None:
    header = (
        f"{'backend':<11} {'path':<36} {'n':>5} {'p50':>7} {'p95':>7} {'max':>7} {'mean':>7} "
        f"{'req/s':>6} {'KB':>5} {'CPU ms':>6}  target p50 <= {TARGET_FRAME_P50_MS:.0f} ms"
    )
    print(header)
    print("-" * len(header))
    rows = [(result.backend, lat) for result in results for lat in result.frames.values()]
    rows += [("orthanc", lat) for lat in orthanc]
    for backend, lat in rows:
        if lat.failed or not lat.ms:
            print(f"{backend:<11} {lat.label:<36} {lat.failed or 'no figures'}")
            continue
        mean = statistics.fmean(lat.ms)
        kilobytes = statistics.fmean(lat.nbytes) / 1024
        p50 = percentile(lat.ms, 50)
        cpu = f"{lat.cpu_s / len(lat.ms) * 1000:.1f}" if lat.cpu_known else "-"
        verdict = ("met" if p50 <= TARGET_FRAME_P50_MS else "MISSED") if lat.label.startswith("HTTPS") else ""
        print(
            f"{backend:<11} {lat.label:<36} {len(lat.ms):>5} {p50:>7.2f} {percentile(lat.ms, 95):>7.2f} "
            f"{max(lat.ms):>7.2f} {mean:>7.2f} {1000 / mean:>6.0f} {kilobytes:>5.0f} {cpu:>6}  {verdict}"
        )
    if orthanc_note:
        print(f"orthanc: {orthanc_note}")


def _print_page_load(name: str, loads: Sequence[PageLoad], repeat: int) -> None:
    """One opening of the viewer (medians over the runs): first image, and when its parts arrived."""

    def at(attribute: str) -> str:
        return _median([float(getattr(load, attribute)) for load in loads], 0, repeat)

    def fetched(attribute: str) -> str:
        return (
            "in the page"
            if statistics.median(getattr(load, attribute) for load in loads) == 0
            else at(attribute)
        )

    started = _median([load.ready - load.first_image for load in loads], 0, repeat)
    verdict = "met" if statistics.median(load.ready for load in loads) < TARGET_FIRST_IMAGE_MS else "MISSED"
    print(
        f"  first image, {name}: navigation -> ready {at('ready')} ms, viewerState.firstImageMs "
        f"{at('first_image')} ms (target < {TARGET_FIRST_IMAGE_MS:.0f} ms: {verdict})"
    )
    print(
        f"    connection {at('connect')} ms, HTML first byte after {at('html_wait')} ms; responses "
        f"complete at: HTML {at('html')}, viewer.js {at('script')}, all its modules {at('modules')}, "
        f"series list {fetched('series')}, instance list {fetched('instances')}, "
        f"first frame {at('frame')}; viewer script started at {started}"
    )


def print_browser(result: BackendResult, repeat: int) -> None:
    runs = result.browser
    if not runs:
        if result.browser_failed:
            print(f"{result.backend}: browser run failed: {result.browser_failed}")
        return

    def pick(value: Callable[[BrowserRun], float], digits: int = 0) -> str:
        return _median([value(run) for run in runs], digits, repeat)

    def median(value: Callable[[BrowserRun], float]) -> float:
        return statistics.median(value(run) for run in runs)

    plural = "s" if len(runs) > 1 else ""
    print(f"{result.backend} ({len(runs)} run{plural}; times in ms since navigation start):")
    _print_page_load("cold server", [run.cold for run in runs], repeat)
    _print_page_load("warm server (opened again)", [run.warm for run in runs], repeat)
    verdict = "met" if median(lambda r: r.cold_fps) >= TARGET_FPS else "MISSED"
    print(
        f"  cold scroll (next slice as soon as one is drawn): {pick(lambda r: r.cold_fps, 1)} slices/s, "
        f"longest wait {pick(lambda r: r.cold_max_wait_ms)} ms, {pick(lambda r: r.cold_requests)} frame "
        f"requests meanwhile (target >= {TARGET_FPS:.0f}: {verdict})"
    )
    fps, raf = median(lambda r: r.fps), median(lambda r: r.raf_fps)
    if fps >= TARGET_FPS:
        verdict = "met"
    elif fps >= 0.95 * raf:
        verdict = f"a new slice every animation frame; headless Chromium runs ~{raf:.0f}/s, the ceiling"
    else:
        verdict = "MISSED"
    print(
        f"  prefetched scroll (one ArrowDown per animation frame): {pick(lambda r: r.fps, 1)} framesDrawn/s, "
        f"{pick(lambda r: r.rendered_fps, 1)} new images/s; the browser ran "
        f"{pick(lambda r: r.raf_fps, 1)} animation frames/s (target >= {TARGET_FPS:.0f}: {verdict})"
    )
    print(
        f"    draw() per slice p50 {pick(lambda r: r.draw_p50_ms, 2)} ms, "
        f"p95 {pick(lambda r: r.draw_p95_ms, 2)} ms; longest gap between animation frames "
        f"{pick(lambda r: r.max_gap_ms, 1)} ms, "
        f"{pick(lambda r: r.long_gaps)} gaps > 20 ms; prefetch done {pick(lambda r: r.prefetch_wait_s, 1)} s "
        "after the cold scroll"
    )
    for error in sorted({error for run in runs for error in run.errors}):
        print(f"  viewer error: {error}")


def _matches(timing: SearchTiming) -> str:
    """The studies the first queries matched in all: mean (min..max)."""
    if not timing.matches:
        return "-"
    low, high = min(timing.matches), max(timing.matches)
    mean = statistics.fmean(timing.matches)
    return f"{mean:.0f}" if low == high else f"{mean:.0f} ({low}..{high})"


def print_searches(results: Sequence[BackendResult], studies: int) -> None:
    header = (
        f"{'backend':<11} {'search':<28} {'n':>4} {'matches':>20} {'rows':>5} {'HTTPS p50':>9} {'p95':>7} "
        f"{'max':>7} {'local p50':>9} {'p95':>7} {'find p50':>8} {'p95':>7}  "
        f"target p95 < {TARGET_SEARCH_P95_MS:.0f} ms"
    )
    print(
        f"study list, {studies} studies, ms per request/call; find: Archive.search_studies with the "
        "view's query (limit 51)"
    )
    print("matches: studies found in all, mean (min..max) of the first queries; rows: mean rows on the page")
    print(header)
    print("-" * len(header))
    for result in results:
        for timing in result.searches.values():
            https, local, find = timing.ms["https"], timing.ms["local"], timing.ms["find"]
            p95 = percentile(https, 95)
            verdict = "met" if p95 < TARGET_SEARCH_P95_MS else "MISSED"
            if timing.found and min(timing.found) == 0:
                verdict += f", {timing.found.count(0)} searches found nothing"
            rows = statistics.fmean(timing.rows) if timing.rows else 0.0
            matches = _matches(timing)
            print(
                f"{result.backend:<11} {timing.label:<28} {len(https):>4} {matches:>20} {rows:>5.1f} "
                f"{percentile(https, 50):>9.2f} {p95:>7.2f} {max(https, default=0):>7.2f} "
                f"{percentile(local, 50):>9.2f} {percentile(local, 95):>7.2f} "
                f"{percentile(find, 50):>8.2f} {percentile(find, 95):>7.2f}  {verdict}"
            )


def print_chain(results: Sequence[BackendResult]) -> None:
    header = (
        f"{'backend':<11} {'request':<22} {'n':>3} {'HTTPS p50':>9} {'p95':>7} {'local p50':>9} {'p95':>7}"
    )
    print("requests of the viewer before its first image, one at a time, server caches warm; ms")
    print(header)
    print("-" * len(header))
    for result in results:
        for label, kinds in result.chain.items():
            https, local = kinds.get("https", []), kinds.get("local", [])
            print(
                f"{result.backend:<11} {label:<22} {len(https):>3} {percentile(https, 50):>9.2f} "
                f"{percentile(https, 95):>7.2f} {percentile(local, 50):>9.2f} {percentile(local, 95):>7.2f}"
            )


def print_results(
    results: Sequence[BackendResult],
    orthanc: Sequence[Latencies],
    orthanc_note: str,
    args: argparse.Namespace,
) -> None:
    """Every table: frames, browser, first-image chain, searches, then the fill and memory lines."""
    print()
    print(f"frames: {args.slices} slices, one keep-alive connection, one request at a time; ms per request")
    print("CPU ms: server process tree CPU time per request (/proc); KB: mean response body")
    print()
    print_frames(results, orthanc, orthanc_note)
    if not args.skip_browser:
        print()
        for result in results:
            print_browser(result, args.repeat)
    print()
    print_chain(results)
    print()
    print_searches(results, args.studies)
    print()
    for result in results:
        rss = _median(result.web_rss_mb, 0, args.repeat)
        hwm = _median(result.web_hwm_mb, 0, args.repeat)
        print(
            f"{result.backend}: fill {result.fill_s:.0f} s, CT store {result.store_s:.1f} s; "
            f"pacs serve's web worker after both frame passes: RSS {rss} MB, peak {hwm} MB "
            f"(the decoded frames alone: {args.slices * 2**19 / 2**20:.0f} MiB)"
        )
        for note in result.notes:
            print(f"  note: {note}")
