"""``bench/dicom_ingest.py --profile``: py-spy sampling ``pacs serve`` during a single-association push.

The push is separate from the measured ones (sampling slows the server down) and uses
its own fresh-UID copy of the series. ``--subprocesses`` follows the DICOM worker
processes that ``pacs serve`` forks. "wall": every thread, idle included; the
association's two pynetdicom threads (acceptor/C-STORE handler and DUL socket reader)
are reported with their top functions in % and in ms per object, which add up to the
per-object latency. "gil": only the thread holding the GIL in the DICOM worker that served the
association, i.e. where its Python CPU goes.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.dicom_push import Push, SeriesTemplate, push_fresh
from bench.dicom_servers import BenchError, our_server, tail

PROFILE_RATE = 100  # samples per second
_PLUMBING = {"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run"}
Sample = tuple[str, str, list[str], int]  # (process id, thread name or '', frames outermost first, samples)


def py_spy_command() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_ours(
    workdir: Path, template: SeriesTemplate, backend: str, pg_server: str, mode: str, top: int
) -> str:
    """A single-association push into a fresh server while py-spy samples it (`mode` "wall" or "gil")."""
    spy = py_spy_command()
    if spy is None:
        raise BenchError("py-spy not found (pip install py-spy)")
    raw = workdir / f"py-spy-{mode}.txt"
    flags = ["--idle", "--threads"] if mode == "wall" else ["--gil", "--threads"]
    with our_server(workdir, 1, backend, pg_server) as server:
        command = [
            spy,
            "record",
            "--pid",
            str(server.proc.pid),
            "--subprocesses",
            "--rate",
            str(PROFILE_RATE),
        ]
        command += [*flags, "--format", "raw", "--nolineno", "--output", str(raw)]
        with open(workdir / "py-spy.log", "wb") as out:
            spy_proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.0)  # let it attach
            result = push_fresh("profile", server, template, workdir)
        finally:
            spy_proc.send_signal(signal.SIGINT)
            try:
                spy_proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
                spy_proc.wait()
    if not raw.exists():
        raise BenchError(f"py-spy wrote nothing: {tail(workdir / 'py-spy.log')}")
    samples = parse_collapsed(raw.read_text())
    head = (
        f"py-spy ({mode}), ours, 1 association, {result.succeeded} objects in {result.seconds:.2f} s "
        f"= {result.objects_per_s:.1f}/s while sampled at {PROFILE_RATE} Hz"
    )
    if mode == "wall":
        return head + "\n" + wall_report(samples, result, top)
    return head + "\n" + gil_report(samples, result, top)


def _short(frame: str) -> str:
    """'name (path/to/module.py)' -> 'name (module.py)'."""
    match = re.fullmatch(r"(.*) \((.*)\)", frame)
    if not match:
        return frame
    return f"{match.group(1)} ({Path(match.group(2)).name})"


def parse_collapsed(text: str) -> list[Sample]:
    """(process id, thread name or '', frames outermost first, samples) from py-spy's raw output."""
    samples = []
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames, process = stack.split(";"), ""
        # --subprocesses: 'process PID:"cmdline"' frames, the outermost process first
        while frames and frames[0].startswith("process "):
            process = frames.pop(0).split(":", 1)[0].removeprefix("process ")
        thread = ""
        if frames and frames[0].startswith("thread ("):
            thread = frames.pop(0).split(": ", 1)[-1]
        frames = [_short(frame) for frame in frames if frame.split(" (")[0] not in _PLUMBING]
        samples.append((process, thread, frames, int(count_text)))
    return samples


def _tops(samples: Sequence[Sample]) -> tuple[Counter[str], Counter[str], int]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for _, _, frames, count in samples:
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def _lines(counter: Counter[str], total: int, per_object: float, top: int) -> list[str]:
    return [
        f"    {count / total * 100:5.1f}%  {count * per_object:5.2f} ms/obj  {frame}"
        for frame, count in counter.most_common(top)
    ]


def wall_report(samples: Sequence[Sample], result: Push, top: int) -> str:
    """Where the wall time of the association's threads goes, in % and ms per object."""
    roles = [
        ("association thread (pynetdicom acceptor: DIMSE, C-STORE handler)", "AcceptorThread"),
        ("DUL thread (pynetdicom: socket reads, PDU decoding, spooling)", "(run_reactor)"),
    ]
    lines = ["(own time in the reactors' waits is the thread waiting for the other one or for the network)"]
    per_object = 1000 / PROFILE_RATE / max(result.succeeded, 1)
    for title, marker in roles:
        own, inclusive, total = _tops([sample for sample in samples if marker in sample[1]])
        if not total:
            lines.append(f"no samples of the {title}")
            continue
        lines += ["", f"{title}: {total} samples (idle included)", f"  inclusive (top {top}):"]
        lines += _lines(inclusive, total, per_object, top)
        lines.append(f"  own (top {min(top, 10)}):")
        lines += _lines(own, total, per_object, min(top, 10))
    return "\n".join(lines) + "\n"


def gil_report(samples: Sequence[Sample], result: Push, top: int) -> str:
    """Which code holds the GIL of the DICOM worker that served the association (one core at most)."""
    workers = {process for process, thread, _, _ in samples if "AcceptorThread" in thread}
    own, inclusive, total = _tops([sample for sample in samples if not workers or sample[0] in workers])
    if not total:
        return "py-spy collected no samples\n"
    busy = total / PROFILE_RATE / result.seconds * 100 if result.seconds else 0
    per_object = 1000 / PROFILE_RATE / max(result.succeeded, 1)
    where = f"process {', '.join(sorted(workers))}" if workers else "all processes"
    lines = [
        f"GIL of {where} held in {total} samples (~{busy:.0f}% of the push), "
        f"{total * per_object:.2f} ms per object"
    ]
    lines += [f"  inclusive (top {top}):", *_lines(inclusive, total, per_object, top)]
    lines += [f"  own (top {top}):", *_lines(own, total, per_object, top)]
    return "\n".join(lines) + "\n"
