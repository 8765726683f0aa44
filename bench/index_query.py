"""Study-list query latency of ``Archive.find("STUDY", ...)`` on a large synthetic index.

What is measured
----------------
1. A fresh archive is created per backend (encrypted SQLite and/or PostgreSQL, one new
   database per run) and its index is filled directly with SQLAlchemy Core bulk inserts:
   ``--studies`` studies (default 100,000) of ~40% as many patients (surname^given names
   from a few hundred surnames, skewed like real ones), dates spread over ten years,
   modalities CT/MR/US/CR/DX, 1-3 series per study and one instance row per series
   (fake blob ids and wrapped keys). Every NOT NULL column is filled, ``name_norm`` is
   ``normalise_name(name)``, ``patient_key`` is built like ``storage.index.patient_key``
   and the study/series counts agree with the rows. No blobs are written.
   PostgreSQL is ANALYZEd after the load (autovacuum would do so within a minute);
   SQLite is left as the application leaves it (it never runs ANALYZE) unless
   ``--sqlite-analyze`` is given.
2. Four study-list searches, each asking for the usual study-list return keys
   (PatientName, PatientID, PatientBirthDate, StudyDate, StudyTime, AccessionNumber,
   StudyDescription, ModalitiesInStudy, NumberOfStudyRelatedSeries,
   NumberOfStudyRelatedInstances, StudyInstanceUID) with ``limit=50``:
   a patient-name prefix (``SMI*``-like, a real surname's first letters, random per
   iteration), a one-month StudyDate range, an exact PatientID, and the plain
   "newest 50" list. Each runs ``--iterations`` times (default 200) after
   ``--warmup`` untimed runs. Reported: p50/p95/max of the whole ``find()`` call and,
   separately, of the SQL statement it issued run on its own through the same engine
   (so database time and Python result-building time can be told apart), and the
   mean number of rows returned.
3. The SQL of one name-prefix search is printed with ``EXPLAIN QUERY PLAN`` (SQLite) or
   ``EXPLAIN (ANALYZE, BUFFERS)`` (PostgreSQL) so index use is visible.

Target (from the issue): p95 < 50 ms for every search. The script only prints figures;
it never asserts.

Run: ``.venv/bin/python bench/index_query.py [--studies N] [--db sqlite|postgresql|both]``
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.dataset import Dataset
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench import common
from bench.common import percentile
from bench.synthetic_index import Corpus, analyze, fill_index, month_range
from pacs.core.context import Context

TARGET_P95_MS = 50.0

# The study-level keys a viewer's C-FIND asks for (the web study list once did too).
STUDY_LIST_KEYS = (
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


# ---------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------


def identifier(**matching: str) -> Dataset:
    """A STUDY-level identifier with the study-list return keys, plus `matching` values."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_LIST_KEYS:
        setattr(ds, keyword, matching.get(keyword, ""))
    return ds


def name_prefix(rng: random.Random, corpus: Corpus) -> Dataset:
    return identifier(PatientName=f"{rng.choice(corpus.surnames)[:3]}*")


def date_month(rng: random.Random, corpus: Corpus) -> Dataset:
    first, last = month_range(rng)
    return identifier(StudyDate=f"{first:%Y%m%d}-{last:%Y%m%d}")


def patient_id(rng: random.Random, corpus: Corpus) -> Dataset:
    return identifier(PatientID=rng.choice(corpus.patient_ids))


def newest(rng: random.Random, corpus: Corpus) -> Dataset:
    return identifier()


SEARCHES: list[tuple[str, Callable[[random.Random, Corpus], Dataset]]] = [
    ("name prefix (SMI*)", name_prefix),
    ("study date, one month", date_month),
    ("exact patient ID", patient_id),
    ("newest 50", newest),
]


@dataclass
class Timing:
    """Latencies (ms) of one search, and the slowest call's identifier and SQL."""

    label: str
    find_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    truncated: bool = False
    slowest: tuple[float, Dataset | None, str, Any] = (-1.0, None, "", None)


class StatementCapture:
    """Remembers the last SELECT on `engine` with its parameters (for re-running and EXPLAIN)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statement = ""
        self.parameters: Any = None
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.statement, self.parameters = statement, parameters

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def run_search(
    pacs: Context,
    label: str,
    make: Callable[[random.Random, Corpus], Dataset],
    corpus: Corpus,
    *,
    iterations: int,
    warmup: int,
    seed: int,
    budget: float,
) -> Timing:
    """Time `iterations` find() calls (after `warmup`), and the bare SQL of each.

    Stops early (``truncated``) once `budget` seconds have been spent on timed calls.
    """
    rng = random.Random(seed)
    timing = Timing(label)
    capture = StatementCapture(pacs.database.engine)
    deadline = None
    try:
        for number in range(warmup + iterations):
            if number == warmup:
                deadline = time.monotonic() + budget
            elif deadline is not None and time.monotonic() > deadline:
                timing.truncated = True
                break
            ds = make(rng, corpus)
            began = time.perf_counter()
            found = pacs.archive.find("STUDY", ds, limit=50)
            find_ms = (time.perf_counter() - began) * 1000
            statement, parameters = capture.statement, capture.parameters
            with pacs.database.read() as session:
                conn = session.connection()
                began = time.perf_counter()
                conn.exec_driver_sql(statement, parameters).fetchall()
                sql_ms = (time.perf_counter() - began) * 1000
            if number >= warmup:
                timing.find_ms.append(find_ms)
                timing.sql_ms.append(sql_ms)
                timing.rows.append(len(found))
                if find_ms > timing.slowest[0]:
                    timing.slowest = (find_ms, ds, statement, parameters)
    finally:
        capture.remove()
    return timing


def explain(pacs: Context, timing: Timing) -> str:
    """The plan of the slowest call of `timing`, as the backend reports it."""
    find_ms, ds, statement, parameters = timing.slowest
    if ds is None:
        return "  (no timed call)"
    sqlite = pacs.database.is_sqlite
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
    with pacs.database.read() as session:
        rows = session.connection().exec_driver_sql(prefix + statement, parameters).all()
    if sqlite:
        plan = "\n".join(f"  {row[0]:>3} {row[1]:>3}  {row[3]}" for row in rows)
    else:
        plan = "\n".join(f"  {row[0]}" for row in rows)
    matching = {
        keyword: str(ds[keyword].value) for keyword in STUDY_LIST_KEYS if keyword in ds and ds[keyword].value
    }
    shown = " ".join(statement.split())
    return (
        f"slowest call of the run: {find_ms:.1f} ms, matching {matching or '(nothing: universal)'}\n"
        f"SQL: {shown}\nparameters: {parameters}\n{plan}"
    )


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def print_table(results: Sequence[tuple[str, Timing]]) -> None:
    header = (
        f"{'backend':<11} {'search':<24} {'n':>4} {'rows':>5} "
        f"{'find p50':>9} {'find p95':>9} {'find max':>9} {'SQL p50':>8} {'SQL p95':>8}"
        f"  target p95 < {TARGET_P95_MS:.0f} ms"
    )
    print(header)
    print("-" * len(header))
    for backend, timing in results:
        p95 = percentile(timing.find_ms, 95)
        verdict = "met" if p95 < TARGET_P95_MS else "MISSED"
        rows = sum(timing.rows) / len(timing.rows) if timing.rows else 0
        print(
            f"{backend:<11} {timing.label:<24} {len(timing.find_ms):>4} {rows:>5.1f} "
            f"{percentile(timing.find_ms, 50):>9.2f} {p95:>9.2f} {max(timing.find_ms, default=0):>9.2f} "
            f"{percentile(timing.sql_ms, 50):>8.2f} {percentile(timing.sql_ms, 95):>8.2f}  {verdict}"
        )


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.parser_for(__doc__)
    parser.add_argument("--studies", type=int, default=100_000, help="studies in the index (default 100000)")
    common.add_db_flag(parser, both=True, default="both")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per search (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per search first (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of data and queries (default 1)")
    parser.add_argument(
        "--budget",
        type=float,
        default=90.0,
        help="stop a search after this many seconds of timed calls (default 90)",
    )
    parser.add_argument(
        "--sqlite-analyze", action="store_true", help="run ANALYZE on SQLite too (the application never does)"
    )
    parser.add_argument(
        "--explain-all", action="store_true", help="print the plan of every search, not only the name prefix"
    )
    common.add_pg_server_flag(parser)
    common.add_tmp_dir_flag(parser)
    return parser.parse_args(argv)


def fill(backend: str, engine: Engine, args: argparse.Namespace) -> tuple[Corpus, bool]:
    """The synthetic index, ANALYZEd on PostgreSQL (or with ``--sqlite-analyze``); whether it was."""
    print(f"{backend}: filling {args.studies} studies ...", flush=True)
    began = time.perf_counter()
    corpus = fill_index(engine, args.studies, args.seed)
    filled = time.perf_counter() - began
    counts = ", ".join(f"{count} {name}" for name, count in corpus.rows.items())
    print(f"{backend}: inserted {counts} in {filled:.1f} s", flush=True)
    analysed = backend == "postgresql" or args.sqlite_analyze
    if analysed:
        began = time.perf_counter()
        analyze(engine)
        print(f"{backend}: ANALYZE in {time.perf_counter() - began:.1f} s", flush=True)
    return corpus, analysed


def measure_backend(backend: str, args: argparse.Namespace, workdir: Path) -> tuple[list[Timing], list[str]]:
    """Fill a fresh archive on `backend`, time every search; the timings and the plans to print."""
    timings: list[Timing] = []
    plans: list[str] = []
    with common.fresh_archive(backend, workdir, args.pg_server) as pacs:
        corpus, analysed = fill(backend, pacs.database.engine, args)
        for number, (label, make) in enumerate(SEARCHES):
            print(f"{backend}: {label} x {args.iterations} ...", flush=True)
            timing = run_search(
                pacs,
                label,
                make,
                corpus,
                iterations=args.iterations,
                warmup=args.warmup,
                seed=args.seed * 1000 + number,
                budget=args.budget,
            )
            timings.append(timing)
            if number == 0 or args.explain_all:
                title = "EXPLAIN QUERY PLAN" if pacs.database.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS)"
                stats = "ANALYZEd" if analysed else "never ANALYZEd, as the application leaves it"
                plans.append(f"{backend} ({stats}), {label}, {title}:\n{explain(pacs, timing)}")
    return timings, plans


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    results: list[tuple[str, Timing]] = []
    plans: list[str] = []
    with common.temp_dir("pacs-bench-query-", args.tmp_dir) as workdir:
        for backend in common.backends(args.db):
            timings, shown = measure_backend(backend, args, workdir)
            results += [(backend, timing) for timing in timings]
            plans += shown
    print()
    print(
        f"{args.studies} studies; latencies in ms; 'find' is Archive.find(), 'SQL' the same statement"
        " run bare; rows = mean rows returned (limit 50)"
    )
    truncated = [f"{backend} {timing.label}" for backend, timing in results if timing.truncated]
    if truncated:
        budget, wanted = args.budget, args.iterations
        print(f"stopped after --budget {budget:g} s (n < {wanted}): {', '.join(truncated)}")
    print()
    print_table(results)
    for plan in plans:
        print()
        print(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
