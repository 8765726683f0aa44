"""Ingest throughput of ``Archive.store()`` against a plain write-and-fsync baseline.

What is measured
----------------
1. A synthetic CT series (default 500 slices of 512x512, about 0.5 MB per file, from
   ``tests/data/make_series/``) is written once into a temporary directory.
2. Baseline, on the same file system: the same bytes copied one file at a time with
   plain ``open/write/fsync`` ("fsync"), and with the blob store's full durability
   protocol of a temp file, fsync, rename and a directory fsync ("fsync+rename").
   A page-cache-only copy without any fsync is shown for reference.
3. A fresh archive is created with ``pacs.core.context.initialise`` (encrypted SQLite by
   default; ``--db postgresql`` or ``--db both`` for PostgreSQL, one new database per
   run) and every file is stored with ``archive.store(path)``: sequentially, then with
   ``--threads`` threads (default 4, the files split in contiguous quarters) into
   another fresh archive. Figures: objects/s, MB/s (10^6 bytes), the ratio to both
   baselines, p50/p95 per-object latency and CPU % (process CPU time over wall time,
   100% = one core). After each run the index counts are checked against the files.
4. ``--repeat N`` runs every case N times, interleaved, and reports the median run and
   the min..max range (virtual disks are noisy); ``--tmp-dir /dev/shm`` puts everything
   on tmpfs, where fsync is free, to show the CPU-only ceiling.
5. With ``--profile``, one extra sequential run is profiled with cProfile and the top
   15 functions by cumulative time are printed.

Target (from the issue): at least 3x Orthanc's ~103 objects/s, i.e. >= 300 objects/s
on the 2-core reference machine. The script only prints figures; it never asserts.

Run: ``.venv/bin/python bench/archive_ingest.py [--slices N] [--db sqlite|postgresql|both]``
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from sqlalchemy import func, select

from bench import common
from bench.common import percentile
from pacs.core.context import Context
from storage.models import Instance, Series, Study

ORTHANC_OBJECTS_PER_S = 103.0
TARGET_OBJECTS_PER_S = 300.0


@dataclass
class Run:
    """The figures of one pass over all files."""

    label: str
    objects: int
    nbytes: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    note: str = ""
    cpu_seconds: float = 0.0

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / common.MB / self.seconds if self.seconds else 0.0


def median_run(runs: Sequence[Run]) -> Run:
    """The run with the median throughput (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run.objects_per_s)
    return ordered[(len(ordered) - 1) // 2]


def spread(runs: Sequence[Run]) -> str:
    """``min..max`` objects/s over `runs`."""
    return common.rate_range([run.objects_per_s for run in runs])


# ---------------------------------------------------------------------------
# Baseline: the same bytes, written with plain system calls
# ---------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _baseline(label: str, files: Sequence[Path], target: Path, mode: str) -> Run:
    """Copy every file into `target` with `mode` "nosync", "fsync" or "rename"."""
    target.mkdir()
    temp = target / "tmp"
    temp.mkdir()
    latencies: list[float] = []
    nbytes = 0
    cpu = time.process_time()
    start = time.perf_counter()
    for number, source in enumerate(files):
        began = time.perf_counter()
        data = source.read_bytes()
        final = target / f"{number:06d}.obj"
        if mode == "rename":
            part = temp / f"{number:06d}.part"
            _write_file(part, data, sync=True)
            os.rename(part, final)
            _fsync_dir(target)
        else:
            _write_file(final, data, sync=mode == "fsync")
        latencies.append(time.perf_counter() - began)
        nbytes += len(data)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    shutil.rmtree(target)
    return Run(label, len(files), nbytes, seconds, latencies, cpu_seconds=cpu)


# ---------------------------------------------------------------------------
# The archive under test
# ---------------------------------------------------------------------------


def _store_chunk(pacs: Context, files: Sequence[Path]) -> tuple[list[float], Counter[str], int]:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    nbytes = 0
    for path in files:
        began = time.perf_counter()
        result = pacs.archive.store(path)
        latencies.append(time.perf_counter() - began)
        outcomes[result.outcome.value] += 1
        nbytes += result.size
    return latencies, outcomes, nbytes


def store_all(label: str, pacs: Context, files: Sequence[Path], threads: int) -> Run:
    """Store every file, sequentially (threads=1) or split in `threads` contiguous parts."""
    cpu = time.process_time()
    if threads <= 1:
        start = time.perf_counter()
        latencies, outcomes, nbytes = _store_chunk(pacs, files)
        seconds = time.perf_counter() - start
    else:
        size = -(-len(files) // threads)
        chunks = [files[i : i + size] for i in range(0, len(files), size)]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(lambda chunk: _store_chunk(pacs, chunk), chunks))
        seconds = time.perf_counter() - start
        latencies = [lat for result in results for lat in result[0]]
        outcomes = sum((result[1] for result in results), Counter())
        nbytes = sum(result[2] for result in results)
    cpu = time.process_time() - cpu
    note = ", ".join(f"{count} {name}" for name, count in sorted(outcomes.items()))
    note += "; " + check_index(pacs, len(files))
    return Run(label, len(files), nbytes, seconds, latencies, note, cpu)


def _archive_case(
    label: str, backend: str, workdir: Path, pg_server: str, files: Sequence[Path], threads: int
) -> Run:
    with common.fresh_archive(backend, workdir, pg_server) as pacs:
        return store_all(label, pacs, files, threads)


def check_index(pacs: Context, expected: int) -> str:
    """A one-line consistency check of the index after a run (instances and counts)."""
    with pacs.database.read() as session:
        instances = session.scalar(select(func.count(Instance.id))) or 0
        study_instances = session.scalar(select(func.coalesce(func.sum(Study.num_instances), 0))) or 0
        study_series = session.scalar(select(func.coalesce(func.sum(Study.num_series), 0))) or 0
        series_rows = session.scalar(select(func.count(Series.id))) or 0
        series_instances = session.scalar(select(func.coalesce(func.sum(Series.num_instances), 0))) or 0
    problems = []
    if instances != expected:
        problems.append(f"{instances} instance rows")
    if study_instances != expected or series_instances != expected:
        problems.append(f"counts study={study_instances} series={series_instances}")
    if study_series != series_rows:
        problems.append(f"study says {study_series} series, {series_rows} rows")
    return "index OK" if not problems else "INDEX MISMATCH: " + ", ".join(problems)


def profile_run(pacs: Context, files: Sequence[Path], top: int = 15) -> str:
    """cProfile one sequential pass; return the top `top` entries by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    _store_chunk(pacs, files)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(pstats.SortKey.CUMULATIVE).print_stats(top)
    return out.getvalue()


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def print_table(runs: Sequence[Run], fsync_run: Run, rename_run: Run, spreads: dict[str, str]) -> None:
    """One line per case: throughput, ratios to the baselines, latency, CPU and the target."""
    columns = [
        ("run", 34),
        ("objects", 7),
        ("seconds", 8),
        ("obj/s", 8),
        ("range", max([len(value) for value in spreads.values()] + [5])),
        ("MB/s", 7),
        ("x fsync", 8),
        ("x f+ren", 8),
        ("p50 ms", 8),
        ("p95 ms", 8),
        ("CPU %", 6),
        ("target", 0),
    ]
    rows: list[list[str]] = []
    for run in runs:
        target = ""
        if run.label.startswith("archive"):
            verdict = "met" if run.objects_per_s >= TARGET_OBJECTS_PER_S else "MISSED"
            target = f">= {TARGET_OBJECTS_PER_S:.0f}/s {verdict}"
        rows.append(
            [
                run.label,
                str(run.objects),
                f"{run.seconds:.2f}",
                f"{run.objects_per_s:.1f}",
                spreads.get(run.label, "-"),
                f"{run.mb_per_s:.1f}",
                f"{run.objects_per_s / fsync_run.objects_per_s:.2f}",
                f"{run.objects_per_s / rename_run.objects_per_s:.2f}",
                f"{percentile(run.latencies, 50) * 1000:.2f}",
                f"{percentile(run.latencies, 95) * 1000:.2f}",
                f"{run.cpu_seconds / run.seconds * 100 if run.seconds else 0:.0f}",
                target,
            ]
        )

    def line(cells: Sequence[str]) -> str:
        return common.table_line(cells[:-1], [width for _, width in columns[:-1]]) + "  " + cells[-1]

    header = line([name for name, _ in columns])
    print(header)
    print("-" * len(header))
    for row in rows:
        print(line(row))
    notes = [run for run in runs if run.note]
    if notes:
        print()
        for run in notes:
            print(f"  {run.label}: {run.note}")


def describe_environment(workdir: Path, files: Sequence[Path], pg_server: str, backends: list[str]) -> None:
    common.describe_series(workdir, files)
    print(f"sqlite (stdlib) {sqlite3.sqlite_version}")
    if "postgresql" in backends:
        with psycopg.connect(f"{pg_server}/postgres") as conn:
            row = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
            print(f"postgresql {row[0] if row else '?'}, synchronous_commit={sync[0] if sync else '?'}")
    print()


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    common.add_series_flags(parser)
    common.add_db_flag(parser, both=True, default="sqlite")
    parser.add_argument("--threads", type=int, default=4, help="threads of the concurrent run (default 4)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one sequential run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every case N times, interleaved, and report the median"
    )
    common.add_pg_server_flag(parser)
    common.add_tmp_dir_flag(parser)
    return parser.parse_args(argv)


def make_cases(
    args: argparse.Namespace, workdir: Path, files: Sequence[Path]
) -> list[tuple[str, Callable[[], Run]]]:
    """The three baselines, then per backend a sequential and a threaded store into fresh archives."""
    baselines: list[tuple[str, str]] = [
        ("plain write, no fsync (reference)", "nosync"),
        ("plain open/write/fsync", "fsync"),
        ("write/fsync + rename + dir fsync", "rename"),
    ]
    store_runs: list[tuple[str, int]] = [("sequential", 1)]
    if args.threads > 1:
        store_runs.append((f"{args.threads} threads", args.threads))
    cases: list[tuple[str, Callable[[], Run]]] = [
        (label, partial(_baseline, label, files, workdir / f"baseline-{mode}", mode))
        for label, mode in baselines
    ]
    for backend in common.backends(args.db):
        for label, threads in store_runs:
            full = f"archive {backend}, {label}"
            cases.append(
                (full, partial(_archive_case, full, backend, workdir, args.pg_server, files, threads))
            )
    return cases


def run_cases(cases: Sequence[tuple[str, Callable[[], Run]]], repeat: int) -> dict[str, list[Run]]:
    """Every case `repeat` times, interleaved so that baseline and archive see the same disk conditions."""
    results: dict[str, list[Run]] = {label: [] for label, _ in cases}
    for number in range(repeat):
        for label, case in cases:
            print(f"[{number + 1}/{repeat}] {label} ...", flush=True)
            results[label].append(case())
    return results


def profiles(args: argparse.Namespace, workdir: Path, files: Sequence[Path]) -> list[str]:
    """With ``--profile``: the cProfile of one sequential run on the first backend."""
    if not args.profile:
        return []
    backend = common.backends(args.db)[0]
    print(f"profiling one sequential run on {backend} ...", flush=True)
    with common.fresh_archive(backend, workdir, args.pg_server) as pacs:
        title = f"cProfile, archive {backend}, sequential, top 15 by cumulative time\n"
        return [title, profile_run(pacs, files)]


def print_legend(repeat: int) -> None:
    print()
    print("x fsync / x f+ren: objects/s relative to the plain fsync / fsync+rename baselines")
    print(f"CPU %: process CPU time / wall time (100% = one core busy; {os.cpu_count()} cores here)")
    orthanc, target = ORTHANC_OBJECTS_PER_S, TARGET_OBJECTS_PER_S
    print(f"Orthanc reference ~{orthanc:.0f} objects/s; target >= {target:.0f} objects/s")
    if repeat > 1:
        print(f"each row: the median of {repeat} runs by objects/s; 'range' is min..max objects/s")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    with common.temp_dir("pacs-bench-ingest-", args.tmp_dir) as workdir:
        print(f"generating {args.slices} CT slices of {args.rows}x{args.columns} ...", flush=True)
        files = common.make_series(workdir / "series", args.slices, args.rows, args.columns, 1, "INGEST")
        describe_environment(workdir, files, args.pg_server, common.backends(args.db))
        cases = make_cases(args, workdir, files)
        results = run_cases(cases, args.repeat)
        runs = [median_run(results[label]) for label, _ in cases]
        spreads = {label: spread(results[label]) for label, _ in cases} if args.repeat > 1 else {}
        texts = profiles(args, workdir, files)
        print_legend(args.repeat)
        print_table(runs, runs[1], runs[2], spreads)
        for text in texts:
            print()
            print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
