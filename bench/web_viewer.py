"""Web viewer: frame latency, first image and scrolling in Chromium, and study-list search.

What is measured
----------------
Per index backend (encrypted SQLite and/or PostgreSQL, ``--db``), a fresh archive is made
with ``bench/common.py``'s ``fresh_archive`` (a new ``bench_<random>`` database on the
local PostgreSQL server, dropped at the end) and filled with the synthetic index of
``bench/synthetic_index.py`` (as in ``bench/index_query.py``): ``--studies`` studies
(default 100,000; PostgreSQL is ANALYZEd afterwards, SQLite left as the application
leaves it). A synthetic CT series (default 500 slices of 512x512 int16,
``tests/data/make_series/``) is stored with ``Archive.store``. Then ``pacs serve`` runs
as a subprocess (its defaults: one DICOM worker per core and one web worker process) with
both listeners on free ports of 127.0.0.1. Every user below is a new physician account,
logged in with password, TOTP enrolment and the forced password change, as a person would.

1. Frames. Over HTTPS (``http.client``, one keep-alive connection, the CA of the data
   directory trusted, the ``__Host-pacs`` session cookie kept), right after ``pacs serve``
   started: every frame ``/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1``
   once in slice order ("cold": decrypt, parse and decode, the server's caches empty; the
   blobs are in the OS page cache, as just written) and then once more ("warm": from the
   server's decoded-frame cache). Per request the time from sending it to having read the
   whole body; p50/p95/max, and the server's CPU time per request (process tree, /proc).
   The same two passes with Flask's test client in this process (``WebServer(pacs).app``,
   fresh caches), which leaves out TLS, HTTP and the network: the application's own time.
   Then the requests the viewer makes before its first image (viewer page, viewer.js,
   series list, instance list, a cached frame), 20 times each, over HTTPS and in-process;
   and the memory (VmRSS, VmHWM) of ``pacs serve``'s web worker after the frame passes.
   Orthanc (Debian's package, if installed and we are root; ``--skip-orthanc``): it cannot
   listen on loopback only, so, as in ``bench/dicom_ingest.py`` (whose namespace code,
   ``bench/dicom_orthanc.py``, is reused), it runs in a network namespace behind a veth pair, with HTTP basic
   authentication and HTTPS (a certificate from a throwaway CA) if its HTTPS works, else
   plain HTTP (Debian's 1.10.1 crashes on the first HTTPS request on Debian 12; the note
   says which). The same CT is uploaded with ``POST /instances``, Orthanc is restarted,
   and ``/instances/{id}/preview`` (an 8-bit PNG) is timed for every slice twice (first
   after the restart, then again).
2. Browser. Headless Chromium (Playwright, ``/usr/bin/chromium``), a new context holding
   the session cookie of a fresh login, against a freshly started ``pacs serve``:
   ``page.goto`` of the study's viewer page until ``window.viewerState.ready``. Reported:
   ``viewerState.firstImageMs`` (from the viewer script's start) and the time from
   navigation start (``performance.now()`` at the moment ``ready`` is set, caught by an
   init script; ``performance.timeOrigin`` is navigation start), with the page's resource
   timings (HTML, series list, instance list, first frame). Then, cold (frames not yet
   in the browser, the server's caches as cold as the prefetcher left them): ArrowDown
   is dispatched as soon as the current slice has been drawn (a new ``putImageData`` on
   the viewer's image canvas, counted by the init script), through all slices: slices
   shown per second. Once the prefetch has finished (``viewerState.inFlight === 0`` and
   every frame fetched), back to the first slice, and one ArrowDown per animation frame
   from a ``requestAnimationFrame`` loop inside the page: ``framesDrawn`` per second of
   wall time, the animation frames per second the browser ran (the ceiling: headless
   Chromium runs them at ~60 Hz), the time the viewer's ``draw()`` took per slice (an upper
   bound: how far into the animation frame our later callback started), the longest gap
   between two animation frames and the number of gaps over 20 ms. Last, the viewer is
   opened again in a new context (server caches warm) for a second first-image time.
3. Study-list search: the web endpoint ``/`` with query arguments as the search form
   (or a sort link) sends them, over HTTPS with a logged-in session: a name word
   (``name=jane``), two words in the other order than stored (``jane doe`` for
   ``DOE^JANE``), the first three letters of a surname, part of a patient ID, part of an
   accession number, a one-month date range, a modality (``modality=CT``, etc.), the
   newest page without criteria and all studies sorted by patient name; ``--searches``
   timed requests each (default 100, after 5 untimed). The same searches through the
   Flask test client in this process, and as bare ``Archive.search_studies`` with the
   view's ``StudyQuery`` (limit 51), so that HTTP and page (session, audit, template)
   overhead can be told apart from the index query. The studies each of the first 10
   queries matches in all are counted (untimed), and the rows on each page.

4. Transfer and comparison (``bench/web_transfer.py``, after the above, unless ``--skip-transfer``):
   a 3000 x 3000 CR's bytes raw, packed and as a preview, and the server's encoding time;
   in Chromium (``--skip-browser`` leaves it out) the time to its preview and to its full
   frame on screen, on loopback and at an emulated 50 Mbit/s with 20 ms latency, beside
   the same frame fetched raw; and the time to open a 2x2 comparison of the 500-slice CT
   with a prior 500-slice CT of the same patient.

``--repeat N`` does the measurements (not the fill) N times, each with fresh server
processes; latencies are pooled, single figures reported as median (min..max).

Targets (from the issue): frames of 4 MP or more travel losslessly packed, preview first;
frame request p50 <= 10 ms (Orthanc's preview takes ~30 ms
there); first image < 300 ms; scrolling >= 60 slices/s (Orthanc's previews manage
~24/s); study-list search p95 < 50 ms. The script only prints figures; it never asserts.
Other work on the machine makes the figures noisy; the CPU count and load are printed.

Run: ``.venv/bin/python bench/web_viewer.py [--slices N] [--studies N]
[--db sqlite|postgresql|both] [--skip-browser] [--skip-orthanc] [--skip-transfer] [--repeat N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.dicom_orthanc import NETNS, network_namespace, orthanc_unavailable, orthanc_version
from bench.dicom_servers import NS_ADDR, BenchError, make_pki
from bench.synthetic_index import Corpus, analyze, fill_index
from bench.web_browser import CHROMIUM, browser_run
from bench.web_client import LocalClient, login, new_user, pacs_serve
from bench.web_frames import Latencies, chain_paths, frame_paths, time_chain, time_frames, web_worker_mb
from bench.web_orthanc import orthanc_previews
from bench.web_report import FRAME_KINDS, BackendResult, print_results
from bench.web_search import time_finds, time_searches
from bench.web_transfer import (
    Studies,
    TransferResult,
    browser_transfer,
    make_cr,
    make_prior,
    print_transfer,
    time_encoding,
)
from pacs.core.context import Context
from pacs.serve.https import WebServer
from webviewer.sessions import COOKIE

FAILURES = (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError)


@dataclass
class Work:
    """What one repeat requests: the frames, the first-image chain, the searches and their seed."""

    corpus: Corpus
    paths: list[str]
    chain: list[tuple[str, str]]
    searches: int
    seed: int


def fill(
    pacs: Context, backend: str, args: argparse.Namespace, files: Sequence[Path], into: BackendResult
) -> tuple[Corpus, str]:
    """The synthetic index (ANALYZEd on PostgreSQL) and the CT; the corpus and the CT's study UID."""
    print(f"{backend}: filling {args.studies} studies ...", flush=True)
    began = time.perf_counter()
    corpus = fill_index(pacs.database.engine, args.studies, args.seed)
    if backend == "postgresql":
        analyze(pacs.database.engine)
    into.fill_s = time.perf_counter() - began
    began = time.perf_counter()
    study_uid = {pacs.archive.store(path).study_uid for path in files}.pop()
    into.store_s = time.perf_counter() - began
    print(
        f"{backend}: index filled in {into.fill_s:.0f} s, {len(files)} CT slices stored in "
        f"{into.store_s:.1f} s",
        flush=True,
    )
    return corpus, study_uid


def over_https(pacs: Context, log: Path, tag: str, work: Work, result: BackendResult) -> None:
    """Frames cold and warm, the web worker's memory, the first-image chain and the searches, over HTTPS."""
    with pacs_serve(pacs, log) as served:
        client = served.client()
        login(client, *new_user(pacs, "https"))
        print(f"{tag}: {len(work.paths)} frames over HTTPS, cold then warm ...", flush=True)
        time_frames(client, work.paths, result.frames["https-cold"], served.proc.pid)
        time_frames(client, work.paths, result.frames["https-warm"], served.proc.pid)
        rss, hwm = web_worker_mb(served.proc.pid)
        result.web_rss_mb.append(rss)
        result.web_hwm_mb.append(hwm)
        time_chain(client, work.chain, result.chain, "https")
        print(f"{tag}: study-list searches over HTTPS ...", flush=True)
        time_searches(client, work.corpus, result.searches, "https", work.searches, 5, work.seed)
        if client.connects > 2:
            result.notes.append(f"the HTTPS client had to reconnect {client.connects - 1} times")
        client.close()


def in_browser(pacs: Context, log: Path, tag: str, study_uid: str, result: BackendResult) -> None:
    """The viewer in headless Chromium against a fresh ``pacs serve``; a failure is noted, not raised."""
    with pacs_serve(pacs, log) as served:
        client = served.client()
        login(client, *new_user(pacs, "browser"))
        client.close()
        print(f"{tag}: viewer in headless Chromium ...", flush=True)
        try:
            result.browser.append(browser_run(served, client.cookies[COOKIE], study_uid))
        except Exception as exc:  # Playwright's errors: report, go on with the rest
            result.browser_failed = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            print(f"{tag}: browser run failed: {result.browser_failed}", flush=True)


def in_process(pacs: Context, tag: str, work: Work, result: BackendResult) -> None:
    """The same frames, chain and searches through Flask's test client, then the searches as bare
    ``Archive.search_studies`` calls."""
    print(f"{tag}: in-process test client and Archive.search_studies ...", flush=True)
    local = LocalClient(WebServer(pacs).app)
    login(local, *new_user(pacs, "local"))
    time_frames(local, work.paths, result.frames["local-cold"])
    time_frames(local, work.paths, result.frames["local-warm"])
    time_chain(local, work.chain, result.chain, "local")
    time_searches(local, work.corpus, result.searches, "local", work.searches, 5, work.seed)
    time_finds(pacs, work.corpus, result.searches, work.searches, 5, work.seed)


@dataclass(frozen=True)
class Inputs:
    """The generated objects: the CT, and for the transfer figures the CR and the prior CT."""

    ct: Sequence[Path]
    cr: Path | None
    prior: Sequence[Path]


def measure_transfer(
    pacs: Context, log: Path, tag: str, ct_study: str, inputs: Inputs, args: argparse.Namespace
) -> TransferResult:
    """The CR and the prior stored, the CR's encoding timed, then the browser's figures (a fresh server)."""
    result = TransferResult()
    assert inputs.cr is not None
    print(f"{tag}: storing the CR and the prior CT, timing the packing ...", flush=True)
    cr = pacs.archive.store(inputs.cr)
    stored = [pacs.archive.store(path) for path in inputs.prior]
    time_encoding(inputs.cr, result)
    studies = Studies(cr.study_uid, ct_study, stored[0].series_uid)
    if args.skip_browser:
        return result
    with pacs_serve(pacs, log) as served:
        client = served.client()
        login(client, *new_user(pacs, "transfer"))
        client.close()
        print(f"{tag}: the CR and the 2x2 comparison in headless Chromium ...", flush=True)
        for _ in range(args.repeat):
            try:
                browser_transfer(served, client.cookies[COOKIE], studies, result)
            except Exception as exc:  # Playwright's errors: report, go on
                result.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                print(f"{tag}: transfer run failed: {result.failed}", flush=True)
    return result


def measure_backend(
    backend: str, args: argparse.Namespace, workdir: Path, inputs: Inputs
) -> tuple[BackendResult, TransferResult | None]:
    files = inputs.ct
    result = BackendResult(backend)
    result.frames = {key: Latencies(label) for key, label in FRAME_KINDS}
    with common.fresh_archive(backend, workdir, args.pg_server) as pacs:
        corpus, study_uid = fill(pacs, backend, args, files, result)
        paths = frame_paths(pacs, study_uid)
        chain = chain_paths(pacs, study_uid, paths[0])
        for repeat in range(args.repeat):
            tag = f"{backend} [{repeat + 1}/{args.repeat}]"
            work = Work(corpus, paths, chain, args.searches, args.seed + repeat)
            over_https(pacs, workdir / f"serve-{backend}-{repeat}-a.log", tag, work, result)
            if not args.skip_browser:
                in_browser(pacs, workdir / f"serve-{backend}-{repeat}-b.log", tag, study_uid, result)
            in_process(pacs, tag, work, result)
        if inputs.cr is None:
            return result, None
        log = workdir / f"serve-{backend}-transfer.log"
        return result, measure_transfer(pacs, log, backend, study_uid, inputs, args)


def measure_orthanc(
    args: argparse.Namespace, workdir: Path, files: Sequence[Path], why_not: str
) -> tuple[list[Latencies], str]:
    """Orthanc's previews in the network namespace (unless `why_not`); the two passes and a note."""
    orthanc = [
        Latencies("Orthanc /preview, first after start"),
        Latencies("Orthanc /preview, second pass"),
    ]
    if why_not:
        return orthanc, f"skipped: {why_not}"
    note = ""
    try:
        with network_namespace():
            certs = make_pki(workdir / "pki")
            for repeat in range(args.repeat):
                print(f"orthanc [{repeat + 1}/{args.repeat}]: upload, restart, previews ...", flush=True)
                note = orthanc_previews(workdir, files, certs, orthanc)
        where = f"in netns {NETNS} via veth ({NS_ADDR})"
        note = f"{orthanc_version()} over {note}; {where}; its previews are 8-bit PNGs"
    except FAILURES as exc:
        note = f"failed: {exc}"
        for latencies in orthanc:
            latencies.failed = note
    return orthanc, note


def describe_environment(files: Sequence[Path], args: argparse.Namespace, orthanc: str) -> None:
    sizes = [path.stat().st_size for path in files]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}")
    print(f"platform: {platform.platform()}")
    print(f"series: {len(files)} CT slices of 512x512 int16, {sum(sizes) / 1e6:.1f} MB")
    print(f"index: {args.studies} synthetic studies; backends: {args.db}")
    print(f"browser: {'skipped' if args.skip_browser else CHROMIUM + ' (headless, Playwright)'}")
    print(f"Orthanc: {orthanc}")
    print()


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    parser.add_argument("--slices", type=int, default=500, help="slices of the CT series (default 500)")
    parser.add_argument("--studies", type=int, default=100_000, help="studies in the index (default 100000)")
    common.add_db_flag(parser, both=True, default="both")
    parser.add_argument("--skip-browser", action="store_true", help="no Chromium measurements")
    parser.add_argument("--skip-orthanc", action="store_true", help="no Orthanc preview figures")
    parser.add_argument(
        "--skip-transfer", action="store_true", help="no CR transfer or 2x2 comparison figures"
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure N times, fresh servers each time")
    parser.add_argument(
        "--searches", type=int, default=100, help="timed requests per study-list search (default 100)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of data and searches (default 1)")
    common.add_pg_server_flag(parser)
    common.add_tmp_dir_flag(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    if not args.skip_browser and not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: use --skip-browser", file=sys.stderr)
        return 1
    common.exit_on_sigterm()
    started = time.perf_counter()
    with common.temp_dir("pacs-bench-web-", args.tmp_dir) as workdir:
        print(f"generating {args.slices} CT slices of 512x512 ...", flush=True)
        files = common.make_series(workdir / "series", args.slices, 512, 512, 3, "VIEWER")
        why_not = orthanc_unavailable(args.skip_orthanc)
        describe_environment(files, args, f"skipped: {why_not}" if why_not else orthanc_version())
        orthanc, orthanc_note = measure_orthanc(args, workdir, files, why_not)
        inputs = Inputs(files, None, [])
        if not args.skip_transfer:
            print(f"generating the 3000 x 3000 CR and a prior CT of {args.slices} slices ...", flush=True)
            cr = make_cr(workdir / "cr")
            inputs = Inputs(files, cr, make_prior(workdir / "prior", args.slices, files[0]))
        measured = [measure_backend(backend, args, workdir, inputs) for backend in common.backends(args.db)]
        print_results([result for result, _ in measured], orthanc, orthanc_note, args)
        for result, transfer in measured:
            if transfer is not None:
                print()
                print(f"{result.backend}: transfer")
                print_transfer(transfer, args.slices)
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"run took {time.perf_counter() - started:.0f} s; load average now {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
