"""Flushes per object for ``bench/dicom_ingest.py``: ``strace -f -c`` attached to the server's process tree.

During an (untimed) push of a fresh copy, every process of the server's tree (all threads;
children forked later are followed) is traced for flush system calls; for ours on
PostgreSQL, ``pg_stat_wal.wal_sync`` over the same push counts the index's WAL flushes.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.dicom_push import SeriesTemplate, push
from bench.dicom_servers import BenchError, Target, process_tree, tail

STRACE = "/usr/bin/strace"
FLUSH_CALLS = ("fsync", "fdatasync", "sync_file_range", "msync", "syncfs", "sync")


# ---------------------------------------------------------------------------
# Flushes: strace attached to the server's process tree, PostgreSQL's WAL counter
# ---------------------------------------------------------------------------


@dataclass
class Flushes:
    """Flush system calls the server's process tree made during one push."""

    calls: Counter[str] = field(default_factory=Counter)
    objects: int = 0
    wal_syncs: int | None = None  # PostgreSQL's own WAL flushes (cluster-wide), for ours on PostgreSQL
    failed: str = ""

    def per_object(self) -> str:
        if self.failed or not self.objects:
            return "-"
        text = f"{sum(self.calls.values()) / self.objects:.2f}"
        if self.wal_syncs is not None:
            text += f"+pg {self.wal_syncs / self.objects:.2f}"
        return text

    def detail(self) -> str:
        if self.failed:
            return self.failed
        calls = ", ".join(f"{name} {count}" for name, count in sorted(self.calls.items())) or "none"
        text = f"{calls} for {self.objects} objects"
        if self.wal_syncs is not None:
            text += f"; PostgreSQL WAL flushes {self.wal_syncs} (pg_stat_wal.wal_sync, cluster-wide)"
        return text


def parse_strace_summary(text: str) -> Counter[str]:
    """{syscall: calls} from the table ``strace -c`` writes."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in FLUSH_CALLS and parts[3].isdigit():
            counts[parts[-1]] += int(parts[3])
    return counts


@contextmanager
def traced_flushes(pid: int, logdir: Path, into: Flushes) -> Iterator[None]:
    """``strace -f -c`` attached to each process of `pid`'s tree (all threads, later children too)."""
    if not Path(STRACE).exists():
        raise BenchError(f"{STRACE} not found (apt-get install strace)")
    members = process_tree(pid)
    out, log = logdir / f"strace-{pid}.txt", logdir / f"strace-{pid}.log"
    command = [STRACE, "-f", "-c", "-o", str(out), "-e", f"trace={','.join(FLUSH_CALLS)}"]
    command += [arg for member in members for arg in ("-p", str(member))]
    with open(log, "wb") as err:
        proc = subprocess.Popen(command, stdout=err, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while len(re.findall(r"Process \d+ attached", log.read_text(errors="replace"))) < len(members):
            if proc.poll() is not None:
                raise BenchError(f"strace exited with {proc.returncode}: {tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"strace did not attach to {len(members)} processes: {tail(log)}")
            time.sleep(0.05)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # detaches and writes the summary
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    with suppress(OSError):
        into.calls.update(parse_strace_summary(out.read_text()))


def wal_syncs(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    return int(row[0]) if row else 0


def count_flushes(target: Target, template: SeriesTemplate, workdir: Path) -> Flushes:
    """An untimed push of a fresh copy under strace; flush calls per stored object."""
    flushes = Flushes()
    copies = workdir / f"copy-{secrets.token_hex(4)}"
    try:
        shares = template.copy(copies, len(target.clients))
        os.sync()
        wal_before = wal_syncs(target.db_url) if target.db_url else 0
        with traced_flushes(target.proc.pid, target.logdir, flushes):
            result = push("strace", target, shares)
        if target.db_url:
            time.sleep(1.5)  # backends report their WAL statistics at most once a second
            flushes.wal_syncs = wal_syncs(target.db_url) - wal_before
    finally:
        shutil.rmtree(copies, ignore_errors=True)
    flushes.objects = result.succeeded
    if result.succeeded < result.objects:
        flushes.failed = f"{result.succeeded}/{result.objects} stored under strace: {result.note}"
    target.after()
    return flushes
