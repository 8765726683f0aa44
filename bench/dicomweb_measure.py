"""The four DICOMweb measurements of ``bench/web_dicomweb.py``, the same requests against either server.

QIDO-RS study search by patient name prefix, WADO-RS frames (multipart/related
octet-stream, PS3.18 8.7.3.5), the series' ``/metadata`` and the series retrieved as
multipart/related ``application/dicom``. Every answer is checked (status, content type,
parts, sizes) before its time counts; a measurement that cannot run is recorded as failed
with the reason, and the others still run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.dicom_servers import BenchError, cpu_seconds
from bench.dicomweb_client import DicomwebClient, Streamed, multipart_parts

FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"'
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'
JSON_ACCEPT = "application/dicom+json"
KINDS = ("qido", "frames-cold", "frames-warm", "metadata", "retrieve")


@dataclass(frozen=True)
class SeriesRef:
    """The CT series both servers hold: its UIDs, instances in slice order and frame size."""

    study_uid: str
    series_uid: str
    sop_uids: list[str]
    frame_bytes: int


@dataclass(frozen=True)
class Plan:
    """What to ask: the name prefixes of the searches, their limit, and how often to repeat."""

    prefixes: list[str]
    limit: int
    warmup: int
    metadata_repeat: int
    retrieve_repeat: int


@dataclass
class Figures:
    """One server's results; `ms` per kind, `cpu_s` the server's CPU time per kind."""

    server: str
    ms: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    cpu_s: dict[str, float] = field(default_factory=dict)
    found: list[int] = field(default_factory=list)  # results of each search
    retrieved: list[Streamed] = field(default_factory=list)
    metadata_bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    note: str = ""
    reference: list[float] = field(default_factory=list)  # Orthanc's core REST frames, for comparison


def search_prefixes(surnames: Sequence[str], count: int, seed: int) -> list[str]:
    """`count` patient-name prefixes (three letters of a surname and ``*``), the same for both servers."""
    rng = random.Random(seed)
    return [f"{rng.choice(surnames)[:3].upper()}*" for _ in range(count)]


def _searches(client: DicomwebClient, root: str, plan: Plan, into: Figures) -> None:
    for number, prefix in enumerate([*plan.prefixes[: plan.warmup], *plan.prefixes]):
        reply = client.get(f"{root}/studies?PatientName={prefix}&limit={plan.limit}", JSON_ACCEPT)
        if reply.status not in (200, 204):
            raise BenchError(f"QIDO: HTTP {reply.status} {_gist(reply.text)}")
        found = json.loads(reply.body) if reply.status == 200 else []
        if not isinstance(found, list) or len(found) > plan.limit:
            raise BenchError(f"QIDO: not a JSON array of at most {plan.limit} studies")
        if number >= plan.warmup:
            into.ms["qido"].append(reply.ms)
            into.found.append(len(found))


def _gist(text: str) -> str:
    """The start of a response body on one line, for an error message."""
    return " ".join(text.split())[:120]


def _series_path(root: str, series: SeriesRef) -> str:
    return f"{root}/studies/{series.study_uid}/series/{series.series_uid}"


def _frames(client: DicomwebClient, root: str, series: SeriesRef, into: list[float]) -> None:
    for sop in series.sop_uids:
        reply = client.get(f"{_series_path(root, series)}/instances/{sop}/frames/1", FRAME_ACCEPT)
        if reply.status != 200:
            raise BenchError(f"frame: HTTP {reply.status} {_gist(reply.text)}")
        parts = multipart_parts(reply)
        if len(parts) != 1 or len(parts[0][1]) != series.frame_bytes:
            sizes = [len(payload) for _, payload in parts]
            raise BenchError(f"frame: parts of {sizes} bytes, expected one of {series.frame_bytes}")
        into.append(reply.ms)


def _metadata(client: DicomwebClient, root: str, series: SeriesRef, plan: Plan, into: Figures) -> None:
    for _ in range(plan.metadata_repeat):
        reply = client.get(f"{_series_path(root, series)}/metadata", JSON_ACCEPT)
        if reply.status != 200:
            raise BenchError(f"metadata: HTTP {reply.status} {_gist(reply.text)}")
        instances = json.loads(reply.body)
        if not isinstance(instances, list) or len(instances) != len(series.sop_uids):
            raise BenchError(f"metadata: {len(instances)} instances, expected {len(series.sop_uids)}")
        into.ms["metadata"].append(reply.ms)
        into.metadata_bytes = len(reply.body)


def _retrieve(client: DicomwebClient, root: str, series: SeriesRef, plan: Plan, into: Figures) -> None:
    for _ in range(plan.retrieve_repeat):
        got = client.stream(_series_path(root, series), DICOM_ACCEPT)
        if got.status != 200 or got.parts != len(series.sop_uids):
            raise BenchError(
                f"retrieve: HTTP {got.status} {got.content_type!r}, {got.parts} parts of "
                f"{len(series.sop_uids)}"
            )
        into.ms["retrieve"].append(got.ms)
        into.retrieved.append(got)


def measure(
    connect: Callable[[], DicomwebClient], root: str, pid: int, series: SeriesRef, plan: Plan, into: Figures
) -> None:
    """All measurements in order, each on a fresh connection, the server's CPU time around each."""
    steps: list[tuple[str, Callable[[DicomwebClient], None]]] = [
        ("qido", lambda client: _searches(client, root, plan, into)),
        ("frames-cold", lambda client: _frames(client, root, series, into.ms["frames-cold"])),
        ("frames-warm", lambda client: _frames(client, root, series, into.ms["frames-warm"])),
        ("metadata", lambda client: _metadata(client, root, series, plan, into)),
        ("retrieve", lambda client: _retrieve(client, root, series, plan, into)),
    ]
    for kind, step in steps:
        print(f"{into.server}: {kind} ...", flush=True)
        client = connect()
        cpu = cpu_seconds(pid)
        try:
            step(client)
        except (BenchError, OSError, ValueError) as exc:
            into.failed[kind] = f"{type(exc).__name__}: {exc}"
            into.ms[kind].clear()
            print(f"{into.server}: {kind} failed: {into.failed[kind]}", flush=True)
        into.cpu_s[kind] = cpu_seconds(pid) - cpu
        client.close()


def orthanc_core_frames(client: DicomwebClient, ids: Sequence[str], frame_bytes: int) -> list[float]:
    """Orthanc's own ``/instances/{id}/frames/0/raw`` of every slice (no DICOMweb UID lookup), in ms."""
    times = []
    for instance in ids:
        reply = client.get(f"/instances/{instance}/frames/0/raw", "application/octet-stream")
        if reply.status != 200 or len(reply.body) != frame_bytes:
            raise BenchError(f"Orthanc raw frame: HTTP {reply.status}, {len(reply.body)} bytes")
        times.append(reply.ms)
    return times
