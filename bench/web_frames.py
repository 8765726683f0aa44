"""Frame requests for ``bench/web_viewer.py``: every frame of the CT once in slice order, the requests
before the viewer's first image, and the memory of ``pacs serve``'s web worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from bench.dicom_servers import BenchError, cpu_seconds, process_tree
from bench.web_client import Client, get
from pacs.core.context import Context


@dataclass
class Latencies:
    """Request latencies (ms) of one kind, pooled over repeats, with the server CPU they cost."""

    label: str
    ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_known: bool = False
    nbytes: list[int] = field(default_factory=list)
    failed: str = ""


def frame_paths(pacs: Context, study_uid: str) -> list[str]:
    return [
        f"/dicomweb/studies/{study_uid}/series/{info.series_uid}/instances/{info.sop_uid}/frames/1"
        for info in pacs.archive.study_instances(study_uid)
    ]


def time_frames(client: Client, paths: Sequence[str], into: Latencies, pid: int | None = None) -> None:
    """GET every path once, in order; check each is a whole frame."""
    cpu = cpu_seconds(pid) if pid else 0.0
    for path in paths:
        reply = get(client, path)
        expected = int(reply.headers.get("x-rows", 0)) * int(reply.headers.get("x-columns", 0)) * 2
        if reply.status != 200 or len(reply.body) != expected:
            raise BenchError(
                f"frame request: HTTP {reply.status}, {len(reply.body)} bytes (expected {expected})"
            )
        into.ms.append(reply.ms)
        into.nbytes.append(len(reply.body))
    if pid:
        into.cpu_s += cpu_seconds(pid) - cpu
        into.cpu_known = True


def chain_paths(pacs: Context, study_uid: str, first_frame: str) -> list[tuple[str, str]]:
    """The requests between opening the viewer and its first image, in the order it makes them."""
    instances = pacs.archive.study_instances(study_uid)
    series = f"/dicomweb/studies/{study_uid}/series"
    return [
        ("viewer page", f"/studies/{study_uid}"),
        ("viewer.js (static)", "/static/viewer.js"),
        ("series list", series),
        (f"instance list ({len(instances)})", f"{series}/{instances[0].series_uid}/instances"),
        ("frame 1 (cached)", first_frame),
    ]


def time_chain(
    client: Client, chain: Sequence[tuple[str, str]], into: dict[str, dict[str, list[float]]], kind: str
) -> None:
    """Each request of the first-image chain 20 times (after 2 untimed), one after the other."""
    for label, path in chain:
        times = into.setdefault(label, {}).setdefault(kind, [])
        for iteration in range(22):
            reply = get(client, path)
            if reply.status != 200:
                raise BenchError(f"{label}: HTTP {reply.status}")
            if iteration >= 2:
                times.append(reply.ms)


def web_worker_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (MB) of the web worker of ``pacs serve`` (of `pid` itself if it has none)."""
    worker = pid
    for member in process_tree(pid)[1:]:
        with suppress(OSError):
            if Path(f"/proc/{member}/comm").read_text().strip() == "pacs-web":
                worker = member
    fields = {}
    for line in Path(f"/proc/{worker}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)
