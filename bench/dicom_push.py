"""Pushing with dcmtk ``storescu`` for ``bench/dicom_ingest.py``: fresh-UID copies, the push, its probes.

- :class:`SeriesTemplate`: the generated series, copied before every push with new Study,
  Series, Frame of Reference and SOP Instance UIDs (same lengths, rewritten in place in
  the encoded elements), so that no server ever sees an object twice.
- :func:`push`: one storescu per share, all at once; objects/s from the wall time until
  the last one finished, server CPU, peak RSS sampled over the server's process tree.

The flushes a push makes are counted by ``bench/dicom_flushes.py``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.tag import Tag

from bench.common import MB, rate_range
from bench.dicom_servers import STORESCU, BenchError, Target, Tls, cpu_seconds, hwm_kb, process_tree, tail

TROUBLE = re.compile(r"error|exception|traceback|abort|refus|reject|denied|fail|timed? ?out", re.IGNORECASE)
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as in the template
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
# element -> which new UID it gets: one per object ("sop"), or one per share (a study of its own)
REWRITTEN = {
    Tag(0x0002, 0x0003): "sop",  # Media Storage SOP Instance UID (file meta)
    Tag(0x0008, 0x0018): "sop",
    Tag(0x0020, 0x000D): "study",
    Tag(0x0020, 0x000E): "series",
    Tag(0x0020, 0x0052): "frame",  # Frame of Reference UID
}


# ---------------------------------------------------------------------------
# Fresh UIDs for every push
# ---------------------------------------------------------------------------


def new_uid(length: int) -> str:
    """A random UID under UID_ROOT of exactly `length` characters."""
    digits = length - len(UID_ROOT)
    if digits < 20:
        raise BenchError(f"template UIDs of {length} characters leave too few random digits")
    return UID_ROOT + str(10 ** (digits - 1) + secrets.randbelow(9 * 10 ** (digits - 1)))


def _encoded(tag: int, value: str) -> bytes:
    """The element as Explicit VR Little Endian encodes it: tag, 'UI', length, value padded with NUL."""
    raw = value.encode("ascii")
    raw += b"\0" * (len(raw) % 2)
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"UI" + struct.pack("<H", len(raw)) + raw


@dataclass
class SeriesTemplate:
    """The series as generated, and where in each file the UIDs to rewrite are."""

    files: list[Path]
    spots: list[list[tuple[int, int, str]]]  # per file: (offset of the value, its length, which UID)

    @classmethod
    def scan(cls, files: Sequence[Path]) -> SeriesTemplate:
        spots = []
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.file_meta.TransferSyntaxUID != EXPLICIT_VR_LE:
                raise BenchError(f"{path.name}: the template must be Explicit VR Little Endian")
            data = path.read_bytes()
            found = []
            for tag, which in REWRITTEN.items():
                element = (ds.file_meta if tag >> 16 == 2 else ds).get(tag)
                if element is None:
                    continue
                encoded = _encoded(tag, str(element.value))
                offset = data.find(encoded)
                if offset < 0 or data.find(encoded, offset + 1) >= 0:
                    raise BenchError(f"{path.name}: {element.keyword} not found exactly once")
                found.append((offset + 8, len(str(element.value)), which))
            if {"sop", "study", "series"} - {which for _, _, which in found}:
                raise BenchError(f"{path.name}: no SOP, Study or Series Instance UID")
            spots.append(found)
        return cls(list(files), spots)

    def shares(self, count: int) -> list[list[int]]:
        """File indexes split into `count` contiguous shares (one per association)."""
        size = -(-len(self.files) // count)
        return [list(range(i, min(i + size, len(self.files)))) for i in range(0, len(self.files), size)]

    def copy(self, outdir: Path, count: int) -> list[list[Path]]:
        """The series split into `count` shares, each a study of its own, every UID new."""
        result = []
        for number, indexes in enumerate(self.shares(count)):
            directory = outdir / f"share-{number + 1}"
            directory.mkdir(parents=True)
            shared: dict[str, str] = {}
            written = []
            for index in indexes:
                data = bytearray(self.files[index].read_bytes())
                sop = ""
                for offset, length, which in self.spots[index]:
                    if which == "sop":
                        uid = sop = sop or new_uid(length)
                    else:
                        uid = shared.get(which) or shared.setdefault(which, new_uid(length))
                    data[offset : offset + length] = uid.encode("ascii")
                path = directory / self.files[index].name
                path.write_bytes(data)
                written.append((path, sop))
            first, sop = written[0]
            if pydicom.dcmread(first, stop_before_pixels=True).SOPInstanceUID != sop:
                raise BenchError(f"rewriting the UIDs of {first.name} went wrong")
            result.append([path for path, _ in written])
        return result


# ---------------------------------------------------------------------------
# The push
# ---------------------------------------------------------------------------


@dataclass
class Push:
    """The figures of one push (one or several storescu processes) into one server."""

    label: str
    objects: int
    nbytes: int
    seconds: float = 0.0
    succeeded: int = 0
    server_cpu: float = 0.0
    peak_rss_kb: int = 0
    pdv: str = ""
    note: str = ""
    failed: str = ""
    kind: str = ""  # "ours", "orthanc", "storescp"
    client_seconds: list[float] = field(default_factory=list)

    @property
    def objects_per_s(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        share = self.nbytes * self.succeeded / self.objects if self.objects else 0
        return share / MB / self.seconds if self.seconds else 0.0


class TreeSampler(threading.Thread):
    """Polls VmHWM of every process in a tree every 50 ms: processes that come and go are caught too."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()

    def sample(self) -> None:
        for member in process_tree(self.pid):
            self.peaks[member] = max(self.peaks.get(member, 0), hwm_kb(member))

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.sample()

    def finish(self) -> int:
        """Stop; the peak RSS in kB, summed over the processes seen."""
        self.done.set()
        self.join()
        self.sample()
        return sum(self.peaks.values())


def storescu_command(
    tls: Tls, calling: str, called: str, host: str, port: int, files: Sequence[Path]
) -> list[str]:
    return [STORESCU, "-v", *tls.dcmtk(), "-aet", calling, "-aec", called, host, str(port), *map(str, files)]


def summarise_storescu(log: Path) -> tuple[int, str, str]:
    """(successes, max PDV granted, a note on anything but success) from a storescu -v log."""
    text = log.read_text(errors="replace")
    responses = Counter(re.findall(r"Received Store Response \(([^)]*)\)", text))
    pdv = re.search(r"Max Send PDV: (\d+)", text)
    problems = [f"{count} {status}" for status, count in responses.items() if status != "Success"]
    errors = [re.sub(r"file: \S+:?", "", line) for line in text.splitlines() if line.startswith(("F:", "E:"))]
    problems += [line for line in errors if line.strip() not in ("E: Store Failed,", "E:")][:2]
    return responses.get("Success", 0), pdv.group(1) if pdv else "", "; ".join(problems)


def server_problems(log: Path | None, lines: int = 2) -> str:
    """The last `lines` lines of a server log that look like trouble (else its last lines)."""
    if log is None:
        return "-"
    with suppress(OSError):
        found = [
            line.strip() for line in log.read_text(errors="replace").splitlines() if TROUBLE.search(line)
        ]
        return " | ".join(found[-lines:]) or tail(log, lines)
    return "-"


def push(label: str, target: Target, shares: Sequence[Sequence[Path]]) -> Push:
    """Push every share through its own storescu (client i of `target`), all at once, and measure."""
    if len(shares) > len(target.clients):
        raise BenchError(f"{len(shares)} shares for {len(target.clients)} clients")
    files = [path for share in shares for path in share]
    env = {**os.environ, "TCP_NODELAY": "1"}
    result = Push(label, len(files), sum(path.stat().st_size for path in files), kind=target.kind)
    os.sync()  # the copies' and earlier runs' dirty pages must not be written back during this push
    sampler = TreeSampler(target.proc.pid)
    sampler.start()
    cpu = cpu_seconds(target.proc.pid)
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    start = time.perf_counter()
    try:
        for number, ((tls, calling), share) in enumerate(zip(target.clients, shares, strict=False)):
            log = target.logdir / f"storescu-{secrets.token_hex(3)}-{number}.log"
            command = storescu_command(tls, calling, target.called, target.host, target.port, share)
            with open(log, "wb") as out:
                procs.append((subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env), log))
        for proc, _ in procs:
            proc.wait()
            result.client_seconds.append(time.perf_counter() - start)
    finally:
        for proc, _ in procs:  # only when interrupted
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        result.peak_rss_kb = sampler.finish()
    result.seconds = time.perf_counter() - start
    result.server_cpu = cpu_seconds(target.proc.pid) - cpu
    notes, pdvs = [], set()
    for proc, log in procs:
        ok, pdv, note = summarise_storescu(log)
        result.succeeded += ok
        pdvs.update([pdv] if pdv else [])
        if note or proc.returncode:
            notes.append(f"storescu exit {proc.returncode}: {note}" if proc.returncode else note)
    if result.succeeded < result.objects:
        notes.append(f"server log: {server_problems(target.log)}")
    result.pdv = "/".join(sorted(pdvs))
    if len(procs) > 1:
        fastest, slowest = min(result.client_seconds), max(result.client_seconds)
        notes.append(f"{len(procs)} storescu finished after {fastest:.1f}..{slowest:.1f} s")
    result.note = "; ".join(notes)
    return result


def push_fresh(label: str, target: Target, template: SeriesTemplate, workdir: Path) -> Push:
    """A new copy of the series (untimed), pushed over all of `target`'s clients, then `target.after`."""
    copies = workdir / f"copy-{secrets.token_hex(4)}"
    try:
        result = push(label, target, template.copy(copies, len(target.clients)))
    finally:
        shutil.rmtree(copies, ignore_errors=True)
    result.note = "; ".join(filter(None, [target.after(), result.note]))
    return result


def median_push(runs: Sequence[Push]) -> Push:
    """The run with the median throughput (the lower middle one for an even count); failures rank lowest."""
    ordered = sorted(runs, key=lambda run: (not run.failed, run.objects_per_s))
    return ordered[(len(ordered) - 1) // 2]


def spread(runs: Sequence[Push]) -> str:
    """``min..max`` objects/s over `runs`."""
    return rate_range([run.objects_per_s for run in runs if not run.failed])
