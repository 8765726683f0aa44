"""What every bench script needs: paths, flags, temp dirs, bench databases, archives, statistics, the series.

The scripts run as ``python bench/NAME.py`` from the repository root; each puts the root on
``sys.path`` before importing this module, so that ``bench``, ``tests`` and the project's
packages import alike whether a script runs directly or is imported by another one.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:  # the project's code is imported only where an archive is made in-process
    from pacs.core.context import Context

ROOT = Path(__file__).resolve().parents[1]
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
MB = 1_000_000


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of a script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)


def add_series_flags(parser: argparse.ArgumentParser, *, rows: bool = True) -> None:
    """``--slices`` and, with `rows`, ``--rows`` and ``--columns`` of the generated CT series."""
    parser.add_argument("--slices", type=int, default=500, help="files in the CT series (default 500)")
    if rows:
        parser.add_argument("--rows", type=int, default=512, help="image rows (default 512)")
        parser.add_argument("--columns", type=int, default=512, help="image columns (default 512)")


def add_db_flag(parser: argparse.ArgumentParser, *, both: bool, default: str) -> None:
    """``--db sqlite|postgresql`` (and ``both`` with `both`)."""
    choices = ("sqlite", "postgresql", "both") if both else ("sqlite", "postgresql")
    parser.add_argument("--db", choices=choices, default=default)


def add_pg_server_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pg-server", default=PG_SERVER, help=f"PostgreSQL server URL (default {PG_SERVER})")


def add_tmp_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where temp dirs go (default: system temp)"
    )


def backends(db: str) -> list[str]:
    """The backends a ``--db`` value names."""
    return ["sqlite", "postgresql"] if db == "both" else [db]


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C: servers stopped, namespace, databases and temp dirs removed."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


# ---------------------------------------------------------------------------
# Temp dirs, ports, databases, archives
# ---------------------------------------------------------------------------


@contextmanager
def temp_dir(prefix: str, parent: Path | None) -> Iterator[Path]:
    """A new directory under `parent` (the system temp dir if None), removed with all it holds on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def bench_database(backend: str, pg_server: str) -> Iterator[str]:
    """'' for the embedded SQLCipher index, else the URL of a new ``bench_<random>`` database (dropped)."""
    if backend != "postgresql":
        yield ""
        return
    name = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_server}/{name}"
    finally:
        with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_archive(backend: str, workdir: Path, pg_server: str) -> Iterator[Context]:
    """A newly initialised archive on `backend`; removed (and its database dropped) on exit."""
    from pacs.core.context import initialise, open_pacs

    with bench_database(backend, pg_server) as db_url:
        data_dir = workdir / f"archive-{backend}-{secrets.token_hex(4)}"
        try:
            settings = initialise(
                data_dir, ae_title="BENCH", hostname="localhost", db_url=db_url, user="bench"
            )
            pacs = open_pacs(settings)
            try:
                yield pacs
            finally:
                pacs.close()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (0 for an empty sequence)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rate_range(rates: Sequence[float]) -> str:
    """``min..max`` of objects/s figures, '-' without any."""
    return f"{min(rates):.0f}..{max(rates):.0f}" if rates else "-"


# ---------------------------------------------------------------------------
# The series and the machine
# ---------------------------------------------------------------------------


def make_series(outdir: Path, slices: int, rows: int, columns: int, number: int, purpose: str) -> list[Path]:
    """The CT series of the test-suite generator, for patient ``BENCH^<purpose>``, ID ``BENCH-<number>``."""
    from tests.data.make_series import make_ct_series

    return make_ct_series(
        outdir,
        slices=slices,
        rows=rows,
        columns=columns,
        patient_name=f"BENCH^{purpose}",
        patient_id=f"BENCH-{number:04d}",
        accession=f"BENCH{number:04d}",
    )


def describe_series(workdir: Path, files: Sequence[Path]) -> None:
    """Python, CPUs and platform, the work dir, and the size of the generated series."""
    sizes = [path.stat().st_size for path in files]
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"work dir {workdir}")
    print(f"series: {len(files)} files, {sum(sizes) / MB:.1f} MB, {sum(sizes) / len(sizes) / MB:.3f} MB/file")


def table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One row of a text table: the first cell left-aligned, the others right-aligned, to `widths`."""
    parts = [cells[0].ljust(widths[0])]
    parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return " ".join(parts)
