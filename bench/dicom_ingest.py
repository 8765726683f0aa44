"""Network ingest: dcmtk ``storescu`` pushing a CT series over mutual TLS into ``pacs serve`` and its peers.

What is measured
----------------
1. A synthetic CT series (default 500 slices of 512x512, about 0.5 MB per file, from
   ``tests/data/make_series/``) is generated once, as a template. Before every push (every
   repeat, every server, every strace or py-spy run) a copy is written with new UIDs, outside
   the timed window: the series is split into one contiguous share per association, each
   share a study of its own (new Study, Series and Frame of Reference UIDs) and every object
   a new SOP Instance UID (also in the file meta). The UIDs keep their length and are
   rewritten in place in the encoded elements, so the files stay byte-for-byte the template
   otherwise. No server ever sees an object twice. ``os.sync()`` runs before the timer starts.
2. Ours: ``pacs init`` of a fresh data directory (encrypted SQLite by default; with
   ``--db postgresql`` a new ``bench_<random>`` database, dropped at the end), ``pacs modality
   add AE --host 127.0.0.1 --issue-cert DIR`` for each of N nodes (BENCHCT1.., one
   certificate each), then ``pacs serve`` on free ports of 127.0.0.1 (``PACS_DICOM_PORT``,
   ``PACS_DICOM_BIND``, ``PACS_WEB_*``). Once it prints its "listening" line, dcmtk
   ``/usr/bin/storescu +tls client.key client.crt +cf ca.crt`` pushes. A C-STORE is answered
   only after the object is encrypted, flushed and indexed. After the push the server is
   stopped and ``pacs verify`` re-authenticates every stored object; its count is shown.
3. dcmtk ``storescp +tls -rc`` (client certificates required; a throwaway CA made with
   the ``openssl`` command, independent of the archive's own PKI code) writing plain files: no index,
   no encryption, no fsync, the TLS/DIMSE ceiling of this client here. ``--fork`` (one
   process per association) for the concurrent push.
4. Orthanc (Debian's package, ``apt-get install orthanc``), if installed and if we are root:
   it cannot bind to loopback only, so it runs in its own network namespace ``pacsbench``
   behind a veth pair 10.200.0.1 (here) / 10.200.0.2 (there), MTU 65535 like loopback, with
   DICOM TLS and mutual authentication (``DicomTlsRemoteCertificateRequired``),
   ``SyncStorageArea`` (fsync) on, HTTP off, storage and index in a temporary directory.
   ``storescp`` is run in the namespace too ("via veth") to show what the veth hop costs.
   The namespace and the veth pair are removed at the end, whatever happens.
5. Every server is measured on 1 association and on N concurrent ones (``--concurrency``,
   default 4): N storescu processes started together, each pushing its share (125 slices);
   objects/s = all successes over the wall time until the last one finished. Every push goes
   into a freshly started server.
6. Flushes per object: after the timed runs, one more (untimed) push per row into a fresh
   server while ``strace -f -c -e trace=fsync,fdatasync,sync_file_range,msync,syncfs,sync``
   is attached to every process of the server's tree (all threads; children forked later are
   followed): flush calls / objects stored. Flushes that need no such call (files opened
   O_SYNC/O_DSYNC, io_uring) are not seen. With ``--db postgresql`` the index's WAL flushes
   happen in PostgreSQL's processes: ``pg_stat_wal.wal_sync`` over the same push is shown as
   "+pg" (cluster-wide, so other clients of that server count too).
7. ``--profile``: two more single-association pushes into fresh servers while ``py-spy record
   --subprocesses`` samples ours at 100 Hz (``bench/dicom_profile.py``).
8. ``--repeat N`` runs every case N times, interleaved, and reports the median run and the
   min..max range (virtual disks and 2-vCPU machines are noisy).

Every dcmtk process (client and servers) gets ``TCP_NODELAY=1``, without which dcmtk stalls
about 40 ms per object. Figures per row: objects/s and MB/s (10^6 bytes of the files pushed),
the ratios to storescp over loopback and to Orthanc with the same number of associations,
flushes per object, server CPU (CPU time of the process tree over wall time, 100% = one core;
and CPU ms per object), peak RSS (VmHWM from /proc/<pid>/status, sampled every 50 ms during
the push and summed over the process tree: ``pacs serve``'s supervisor, DICOM and web
workers; storescp's forked children) and the max PDV the server granted. Objects are counted
from storescu's "Received Store Response (Success)" lines.

Targets (issue #10): ours >= 1.3x Orthanc on one association and on N, measured in the same
run, with encryption and one flush per object; stretch >= 0.5x storescp. The script prints
"target met/MISSED" lines; it never asserts.

Run (as root for the Orthanc rows): ``.venv/bin/python bench/dicom_ingest.py [--slices N]
[--db sqlite|postgresql] [--skip-orthanc] [--skip-flushes] [--concurrency N] [--profile]
[--repeat N]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from bench import common
from bench.dicom_flushes import STRACE, Flushes, count_flushes
from bench.dicom_orthanc import NETNS, network_namespace, orthanc_server, orthanc_unavailable, orthanc_version
from bench.dicom_profile import profile_ours
from bench.dicom_push import Push, SeriesTemplate, median_push, push_fresh, spread
from bench.dicom_servers import (
    STORESCP,
    STORESCU,
    BenchError,
    BenchPki,
    Target,
    make_pki,
    our_server,
    storescp_server,
)

TARGET = 1.3  # x Orthanc, on 1 association and on N
STRETCH = 0.5  # x storescp
FAILURES = (BenchError, OSError, subprocess.SubprocessError, psycopg.Error)


@dataclass(frozen=True)
class Case:
    key: str  # "ours-1", "orthanc-n", ...
    label: str
    server: Callable[[], AbstractContextManager[Target]]


def peer(pushes: dict[str, Push], kind: str, suffix: str) -> Push | None:
    """The `kind` ("scp", "orthanc", ...) push on 1 ("1") or N ("n") associations, if it has a figure."""
    found = pushes.get(f"{kind}-{suffix}")
    return found if found is not None and not found.failed and found.objects_per_s else None


def ratio(result: Push, other: Push | None) -> str:
    return f"{result.objects_per_s / other.objects_per_s:.2f}" if other and result.objects_per_s else "-"


def print_table(
    pushes: dict[str, Push], order: Sequence[str], spreads: dict[str, str], flushes: dict[str, Flushes]
) -> None:
    """One line per case; `spreads` (key -> min..max objects/s) adds a 'range' column."""
    columns = [
        ("run", max(len(pushes[key].label) for key in order)),
        *[("objects", 8), ("seconds", 7), ("obj/s", 6)],
        *([("range", max([5, *(len(value) for value in spreads.values())]))] if spreads else []),
        *[("MB/s", 5), ("x scp", 5), ("x Orthanc", 9)],
        ("flushes/obj", max([11, *(len(flush.per_object()) for flush in flushes.values())])),
        *[("srv CPU%", 8), ("CPU ms/obj", 10), ("peak RSS MB", 11), ("PDV", 6)],
    ]

    def line(cells: Sequence[str]) -> str:
        return common.table_line(cells, [width for _, width in columns])

    header = line([name for name, _ in columns])
    print(header)
    print("-" * len(header))
    for key in order:
        result, suffix = pushes[key], key.rsplit("-", 1)[1]
        if result.failed:
            print(line([result.label, *["-"] * (len(columns) - 1)]))
            continue
        cells = [
            result.label,
            f"{result.succeeded}/{result.objects}",
            f"{result.seconds:.2f}",
            f"{result.objects_per_s:.1f}",
            *([spreads.get(key, "-")] if spreads else []),
            f"{result.mb_per_s:.1f}",
            ratio(result, peer(pushes, "scp", suffix)),
            ratio(result, peer(pushes, "orthanc", suffix)),
            flushes[key].per_object() if key in flushes else "-",
            f"{result.server_cpu / result.seconds * 100 if result.seconds else 0:.0f}",
            f"{result.server_cpu / result.succeeded * 1000 if result.succeeded else 0:.1f}",
            f"{result.peak_rss_kb / 1024:.0f}",
            result.pdv or "-",
        ]
        print(line(cells))
    print()
    for key in order:
        print(f"  {pushes[key].label}: {pushes[key].failed or pushes[key].note}")
        if key in flushes:
            print(f"    flushes (strace, separate push): {flushes[key].detail()}")


def verdict(what: str, ours: Push | None, other: Push | None, name: str, wanted: float) -> str:
    if ours is None or ours.failed or not ours.objects_per_s:
        return f"{what}: no figure for ours"
    if other is None:
        return f"{what}: no {name} figure in this run"
    got = ours.objects_per_s / other.objects_per_s
    figures = f"ours {ours.objects_per_s:.1f}/s = {got:.2f}x {name} {other.objects_per_s:.1f}/s"
    return f"{what}: {figures}; >= {wanted}x: {'met' if got >= wanted else 'MISSED'}"


def verdicts(pushes: dict[str, Push], concurrency: int) -> None:
    print()
    counts = [("1", "1 association"), *([("n", f"{concurrency} associations")] if concurrency > 1 else [])]
    for goal, kind, name, wanted in (
        ("target", "orthanc", "Orthanc", TARGET),
        ("stretch", "scp", "storescp", STRETCH),
    ):
        for suffix, what in counts:
            other = peer(pushes, kind, suffix)
            print(verdict(f"{goal} ({what})", pushes.get(f"ours-{suffix}"), other, name, wanted))
    scp, veth, orthanc, ours = (peer(pushes, kind, "1") for kind in ("scp", "veth", "orthanc", "ours"))
    if scp and veth and orthanc:
        hop = 1 / veth.objects_per_s - 1 / scp.objects_per_s
        if hop > 0 and 1 / orthanc.objects_per_s > hop:
            loopback = 1 / (1 / orthanc.objects_per_s - hop)
            versus = f", and ours {ours.objects_per_s / loopback:.2f}x that" if ours else ""
            print(
                f"  the veth hop costs ~{hop * 1000:.2f} ms/object (storescp rows); Orthanc on one "
                f"association without it would be ~{loopback:.0f}/s{versus}"
            )
    for kind, name in (("ours", "ours"), ("orthanc", "Orthanc"), ("scp", "storescp")):
        one, many = peer(pushes, kind, "1"), peer(pushes, kind, "n")
        if one and many:
            print(f"  {name}: {concurrency} associations = {many.objects_per_s / one.objects_per_s:.2f}x one")


def describe_environment(
    workdir: Path, files: Sequence[Path], args: argparse.Namespace, orthanc: str
) -> None:
    common.describe_series(workdir, files)
    print("  (the template; every push sends a copy with new Study/Series/SOP Instance UIDs)")
    dcmtk = subprocess.run([STORESCU, "--version"], capture_output=True, text=True, check=False).stdout
    print(f"client: {(dcmtk.splitlines() or ['?'])[0].strip()} (+tls, TCP_NODELAY=1)")
    print(f"index: {'PostgreSQL at ' + args.pg_server if args.db == 'postgresql' else 'SQLCipher'}")
    print(f"Orthanc: {orthanc}")
    print()


def print_legend(args: argparse.Namespace, why_not: str) -> None:
    print()
    print("TLS only: storescp writes plain files, with no fsync, no index and no encryption")
    print("x scp, x Orthanc: objects/s relative to storescp over loopback and to Orthanc, same associations")
    print("flushes/obj: fsync, fdatasync, sync_file_range, msync, syncfs, sync calls per stored object")
    print("  (strace attached to the server's process tree during a separate, untimed push)")
    print(f"srv CPU%: server process tree CPU time / wall time (100% = one core; {os.cpu_count()} here)")
    print("peak RSS: VmHWM summed over the server's process tree; PDV: the max PDV the server granted")
    if args.repeat > 1:
        print(f"each row: the median of {args.repeat} runs by objects/s; 'range' is min..max objects/s")
    if why_not:
        print(f"Orthanc: skipped: {why_not}")
    print()


def make_cases(args: argparse.Namespace, workdir: Path, certs: BenchPki, orthanc: str | None) -> list[Case]:
    """scp, (veth), ours, (Orthanc) on 1 association, then the same on N."""
    n, db, pg = args.concurrency, args.db, args.pg_server
    cases = []
    for clients, suffix, what in [
        (1, "1", "1 association"),
        *([(n, "n", f"{n} associations")] if n > 1 else []),
    ]:
        fork = " --fork" if clients > 1 else ""
        cases.append(
            Case(
                f"scp-{suffix}",
                f"storescp{fork} (TLS only), {what}",
                partial(storescp_server, workdir, clients, certs),
            )
        )
        if orthanc and clients == 1:
            cases.append(
                Case(
                    "veth-1",
                    f"storescp via veth (TLS only), {what}",
                    partial(storescp_server, workdir, 1, certs, NETNS),
                )
            )
        cases.append(
            Case(f"ours-{suffix}", f"ours, {db}, {what}", partial(our_server, workdir, clients, db, pg))
        )
        if orthanc:
            cases.append(
                Case(
                    f"orthanc-{suffix}",
                    f"{orthanc} (mTLS, fsync), {what}",
                    partial(orthanc_server, workdir, clients, certs),
                )
            )
    return cases


def measure(
    cases: Sequence[Case], args: argparse.Namespace, template: SeriesTemplate, workdir: Path
) -> tuple[dict[str, list[Push]], dict[str, Flushes]]:
    """The timed pushes (repeats interleaved, so every server sees the same disk), then the strace ones."""
    results: dict[str, list[Push]] = {case.key: [] for case in cases}
    for repeat in range(args.repeat):
        for case in cases:
            print(f"[{repeat + 1}/{args.repeat}] {case.label} ...", flush=True)
            try:
                with case.server() as target:
                    results[case.key].append(push_fresh(case.label, target, template, workdir))
            except FAILURES as exc:
                results[case.key].append(Push(case.label, len(template.files), 0, failed=f"failed: {exc}"))
    flushes: dict[str, Flushes] = {}
    for case in cases if not args.skip_flushes else ():
        print(f"[strace] {case.label} ...", flush=True)
        try:
            with case.server() as target:
                flushes[case.key] = count_flushes(target, template, workdir)
        except FAILURES as exc:
            flushes[case.key] = Flushes(failed=f"failed: {exc}")
    return results, flushes


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    add = parser.add_argument
    common.add_series_flags(parser)
    common.add_db_flag(parser, both=False, default="sqlite")
    common.add_pg_server_flag(parser)
    add("--skip-orthanc", action="store_true", help="no Orthanc rows")
    add("--skip-flushes", action="store_true", help="no strace pushes (no flushes/obj figures)")
    add("--concurrency", type=int, default=4, help="associations of the concurrent push (default 4)")
    add("--profile", action="store_true", help="also py-spy two single-association pushes (wall, GIL)")
    add("--repeat", type=int, default=1, help="run every case N times, interleaved; report the median")
    common.add_tmp_dir_flag(parser)
    return parser.parse_args(argv)


def missing_tool(args: argparse.Namespace) -> str:
    """The first of storescu, storescp (and strace) that is not installed, with its package."""
    tools = [(STORESCU, "dcmtk"), (STORESCP, "dcmtk"), *([] if args.skip_flushes else [(STRACE, "strace")])]
    for tool, package in tools:
        if not Path(tool).exists():
            return f"{tool} not found (apt-get install {package})"
    return ""


def measure_all(
    args: argparse.Namespace, workdir: Path, template: SeriesTemplate, orthanc: str | None, why_not: str
) -> tuple[list[Case], dict[str, list[Push]], dict[str, Flushes], str]:
    """Every case, Orthanc's in the network namespace; without them if the namespace cannot be set up."""
    certs = make_pki(workdir / "pki")
    try:
        with network_namespace() if orthanc else nullcontext():
            cases = make_cases(args, workdir, certs, orthanc)
            results, flushes = measure(cases, args, template, workdir)
    except BenchError as exc:  # the namespace could not be set up
        why_not = str(exc)
        cases = make_cases(args, workdir, certs, None)
        results, flushes = measure(cases, args, template, workdir)
    return cases, results, flushes, why_not


def profiles(args: argparse.Namespace, workdir: Path, template: SeriesTemplate) -> str:
    """With ``--profile``: py-spy of ours, wall time and GIL, each during its own push."""
    text = ""
    for mode in ("wall", "gil") if args.profile else ():
        print(f"profiling ours with py-spy ({mode}) during a single-association push ...", flush=True)
        try:
            text += "\n" + profile_ours(workdir, template, args.db, args.pg_server, mode, 15)
        except FAILURES as exc:
            text += f"\nprofile ({mode}) failed: {exc}\n"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    missing = missing_tool(args)
    if missing:
        print(missing, file=sys.stderr)
        return 1
    common.exit_on_sigterm()
    with common.temp_dir("pacs-bench-dicom-", args.tmp_dir) as workdir:
        print(f"generating {args.slices} CT slices of {args.rows}x{args.columns} ...", flush=True)
        files = common.make_series(workdir / "template", args.slices, args.rows, args.columns, 2, "NETWORK")
        template = SeriesTemplate.scan(files)
        why_not = orthanc_unavailable(args.skip_orthanc)
        orthanc = None if why_not else orthanc_version()
        describe_environment(workdir, files, args, orthanc or f"skipped: {why_not}")
        cases, results, flushes, why_not = measure_all(args, workdir, template, orthanc, why_not)
        profile_text = profiles(args, workdir, template)
        print_legend(args, why_not)
        pushes = {key: median_push(runs) for key, runs in results.items()}
        spreads = {key: spread(runs) for key, runs in results.items()} if args.repeat > 1 else {}
        print_table(pushes, [case.key for case in cases], spreads, flushes)
        verdicts(pushes, args.concurrency)
        print(profile_text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
