"""DICOMweb: QIDO-RS search, WADO-RS frames, series metadata and retrieve, ours beside Orthanc's plugin.

What is measured
----------------
One run, one data set on both servers. A synthetic CT series (default 500 slices of
512x512 int16, ``tests/data/make_series/``) is stored in a fresh archive with
``Archive.store`` beside ``bench/synthetic_index.py``'s ``--studies`` studies (default
100,000; index rows without blobs). Orthanc 1.10 with Debian's DICOMweb plugin 1.7
(``bench/dicomweb_orthanc.py``; in the network namespace of ``bench/dicom_orthanc.py``,
HTTP basic authentication) gets the same CT through ``POST /instances`` and every
instance row of that index as a small object without pixel data
(``bench/dicomweb_corpus.py``): the same patients, studies, series and UIDs. It is
restarted before it is timed. Ours is ``pacs serve`` on free ports of 127.0.0.1 over
HTTPS (its own CA trusted), a new physician's read token (``Authorization: Bearer``);
Orthanc once over HTTPS (its own TLS, ``SslEnabled``, with the libssl shim of
``bench/dicomweb_orthanc.py`` that Debian 12's build needs) and once over plain HTTP. The
ratio and the target are against Orthanc over HTTPS, like for like (our archive serves
HTTPS only); Orthanc's plain-HTTP figures are printed beside them.

Against each server, one keep-alive connection per measurement (``bench/dicomweb_measure.py``):

1. QIDO-RS ``/studies?PatientName=ABC*&limit=50``: ``--searches`` prefixes (three
   letters of a surname the index holds, the same list for both; after 5 untimed):
   p50/p95, and the studies found per query on each side.
2. WADO-RS ``/frames/1`` of every slice with ``Accept: multipart/related;
   type="application/octet-stream"`` (PS3.18 8.7.3.5), checked to be one part of
   rows x columns x 2 bytes: p50/p95 of a first pass (right after the start) and a second.
3. ``/metadata`` of the series (DICOM JSON of its 500 instances): the first request and the
   median of the next ones (``--metadata-repeat``, default 5 in all).
4. The series retrieved as multipart/related ``application/dicom`` (``--retrieve-repeat``,
   default 3), streamed and counted (500 parts): MB/s of the body, time to first byte.

Times run from sending a request to reading its last byte. The server's CPU time per
request is read from /proc. The table gives how many times faster ours is than Orthanc
(its time over ours; our MB/s over its). Target (issue #14): faster than Orthanc's plugin
on each. ``--profile`` adds cProfile of each request kind in-process
(``bench/dicomweb_profile.py``). The script only prints figures; it never asserts.

Run: ``.venv/bin/python -m bench.web_dicomweb [--studies N] [--slices N] [--db sqlite|postgresql]
[--skip-orthanc] [--skip-ours] [--profile]``
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.dicom_orthanc import network_namespace, orthanc_unavailable, orthanc_version
from bench.dicom_servers import NS_ADDR, make_pki
from bench.dicomweb_client import DicomwebClient, bearer_headers
from bench.dicomweb_corpus import corpus_rows, small_object
from bench.dicomweb_measure import (
    KINDS,
    Figures,
    Plan,
    SeriesRef,
    measure,
    orthanc_core_frames,
    search_prefixes,
)
from bench.dicomweb_orthanc import (
    DICOMWEB_ROOT,
    Orthanc,
    loaded_orthanc,
    plugin_unavailable,
    upload_files,
    upload_generated,
)
from bench.dicomweb_profile import profile_requests
from bench.dicomweb_report import print_table
from bench.synthetic_index import analyze, fill_index
from bench.web_client import pacs_serve
from bench.web_orthanc import ORTHANC_HTTP_PORT
from pacs.core.context import Context

OUR_ROOT = "/dicomweb"


def fill(pacs: Context, args: argparse.Namespace, files: Sequence[Path]) -> tuple[SeriesRef, list[str]]:
    """The synthetic index and the CT in our archive; the CT's series and the surnames of the index."""
    print(f"ours: filling {args.studies} studies and storing {len(files)} slices ...", flush=True)
    began = time.perf_counter()
    corpus = fill_index(pacs.database.engine, args.studies, args.seed)
    if args.db == "postgresql":
        analyze(pacs.database.engine)
    study_uid = {pacs.archive.store(path).study_uid for path in files}.pop()
    infos = pacs.archive.study_instances(study_uid)
    print(f"ours: filled in {time.perf_counter() - began:.0f} s", flush=True)
    series = SeriesRef(study_uid, infos[0].series_uid, [info.sop_uid for info in infos], 512 * 512 * 2)
    return series, corpus.surnames


def measure_ours(pacs: Context, workdir: Path, series: SeriesRef, plan: Plan) -> Figures:
    """``pacs serve`` over HTTPS, a physician's read token, the four measurements."""
    figures = Figures("ours", note="HTTPS")
    headers = bearer_headers(pacs, "dicomweb")
    with pacs_serve(pacs, workdir / "serve.log") as served:

        def connect() -> DicomwebClient:
            return DicomwebClient("127.0.0.1", served.port, served.cafile, headers)

        measure(connect, OUR_ROOT, served.proc.pid, series, plan, figures)
    return figures


def load_orthanc(
    orthanc: Orthanc, files: Sequence[Path], rows: list[dict[str, object]], ids: list[str]
) -> None:
    """The CT (its instance ids into `ids`), then the corpus's small objects; the time it took printed."""
    began = time.perf_counter()
    ids += upload_files(orthanc, files)
    print(
        f"orthanc: {len(files)} slices in {time.perf_counter() - began:.0f} s; {len(rows)} small objects ...",
        flush=True,
    )
    seconds = upload_generated(
        orthanc,
        len(rows),
        lambda number: small_object(rows[number]),
        lambda done: print(f"orthanc: {done} ...", flush=True),
    )
    print(f"orthanc: {len(rows)} small objects in {seconds:.0f} s ({len(rows) / seconds:.0f}/s)", flush=True)


def _measure_one(orthanc: Orthanc, series: SeriesRef, plan: Plan, figures: Figures, ids: list[str]) -> None:
    """The four measurements against a running Orthanc, then its own REST frames (for the notes)."""
    print(f"orthanc: {orthanc_version()} over {orthanc.scheme}", flush=True)
    basic = orthanc.client().auth

    def connect() -> DicomwebClient:
        return DicomwebClient(NS_ADDR, ORTHANC_HTTP_PORT, orthanc.cafile, {"Authorization": basic})

    measure(connect, DICOMWEB_ROOT, orthanc.proc.pid, series, plan, figures)
    client = connect()
    figures.reference = orthanc_core_frames(client, ids, series.frame_bytes)
    client.close()


def measure_orthanc(
    workdir: Path, files: Sequence[Path], rows: list[dict[str, object]], series: SeriesRef, plan: Plan
) -> tuple[Figures, Figures]:
    """Orthanc with the plugin in the namespace, loaded, then restarted over HTTPS and over plain HTTP
    for the four measurements each: (HTTPS figures, HTTP figures).
    """
    tls, plain = Figures("orthanc", note="HTTPS"), Figures("orthanc-http", note="HTTP")
    auth = ("bench", secrets.token_urlsafe(12))
    ids: list[str] = []
    with network_namespace(), common.temp_dir("orthanc-", workdir) as home:
        certs = make_pki(home / "pki")
        served = loaded_orthanc(home, certs, auth, lambda orthanc: load_orthanc(orthanc, files, rows, ids))
        if served.why_no_tls:
            tls.note = "HTTPS failed"
            tls.failed = dict.fromkeys(KINDS, served.why_no_tls)
            print(f"orthanc: no HTTPS: {served.why_no_tls}", flush=True)
        else:
            with served.running(tls=True) as orthanc:
                _measure_one(orthanc, series, plan, tls, ids)
        with served.running(tls=False) as orthanc:
            _measure_one(orthanc, series, plan, plain, ids)
    return tls, plain


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    common.add_series_flags(parser, rows=False)
    parser.add_argument("--studies", type=int, default=100_000, help="studies in the index (default 100000)")
    common.add_db_flag(parser, both=False, default="sqlite")
    parser.add_argument("--searches", type=int, default=100, help="timed QIDO searches (default 100)")
    parser.add_argument("--limit", type=int, default=50, help="QIDO limit (default 50)")
    parser.add_argument("--metadata-repeat", type=int, default=5, help="metadata requests (default 5)")
    parser.add_argument("--retrieve-repeat", type=int, default=3, help="series retrieves (default 3)")
    parser.add_argument("--skip-orthanc", action="store_true", help="no Orthanc figures")
    parser.add_argument("--skip-ours", action="store_true", help="no figures of ours (Orthanc only)")
    parser.add_argument("--profile", action="store_true", help="cProfile of each request kind, in-process")
    parser.add_argument("--seed", type=int, default=1, help="random seed of data and searches (default 1)")
    common.add_pg_server_flag(parser)
    common.add_tmp_dir_flag(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    common.exit_on_sigterm()
    started = time.perf_counter()
    why_not = orthanc_unavailable(args.skip_orthanc) or plugin_unavailable()
    with common.temp_dir("pacs-bench-dicomweb-", args.tmp_dir) as workdir:
        print(f"generating {args.slices} CT slices of 512x512 ...", flush=True)
        files = common.make_series(workdir / "series", args.slices, 512, 512, 4, "DICOMWEB")
        common.describe_series(workdir, files)
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"load average {load}; index {args.db}, {args.studies} studies")
        print(f"Orthanc: {f'skipped: {why_not}' if why_not else orthanc_version()}", flush=True)
        ours, orthanc = Figures("ours", note="skipped"), Figures("orthanc", note="skipped")
        plain = Figures("orthanc-http", note="skipped")
        with common.fresh_archive(args.db, workdir, args.pg_server) as pacs:
            series, surnames = fill(pacs, args, files)
            plan = Plan(
                search_prefixes(surnames, args.searches, args.seed),
                args.limit,
                5,
                args.metadata_repeat,
                args.retrieve_repeat,
            )
            if not args.skip_ours:
                ours = measure_ours(pacs, workdir, series, plan)
            if not why_not:
                rows = corpus_rows(pacs.database.engine, series.study_uid)
                orthanc, plain = measure_orthanc(workdir, files, rows, series, plan)
            if args.profile:
                profile_requests(pacs, series, plan)
        print()
        print_table(ours, orthanc, plain, args.slices, args.limit)
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"run took {time.perf_counter() - started:.0f} s; load average now {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
