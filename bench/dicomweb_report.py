"""The table of ``bench/web_dicomweb.py``: ours beside Orthanc's DICOMweb plugin, with ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from bench.common import MB, percentile
from bench.dicomweb_measure import Figures

WIDTHS = (44, 22, 22, 13, 8)


def _latency(figures: Figures, kind: str) -> tuple[str, float]:
    """'p50 / p95 ms' of a kind and its p50 (0 when it failed or has no figures)."""
    times = figures.ms[kind]
    if kind in figures.failed or not times:
        return "failed" if kind in figures.failed else "-", 0.0
    return f"{percentile(times, 50):.1f} / {percentile(times, 95):.1f} ms", percentile(times, 50)


def _metadata(figures: Figures, again: bool) -> tuple[str, float]:
    """The first metadata request's time, or (`again`) the median of the later ones, and that figure."""
    times = figures.ms["metadata"]
    if "metadata" in figures.failed or not times:
        return "failed" if "metadata" in figures.failed else "-", 0.0
    value = statistics.median(times[1:] or times) if again else times[0]
    return f"{value:.0f} ms", value


def _throughput(figures: Figures) -> tuple[str, float]:
    """'median MB/s (min..max)' of the retrieves and the median."""
    if "retrieve" in figures.failed or not figures.retrieved:
        return "failed" if "retrieve" in figures.failed else "-", 0.0
    rates = [got.nbytes / MB / (got.ms / 1000) for got in figures.retrieved]
    return f"{statistics.median(rates):.0f} MB/s ({min(rates):.0f}..{max(rates):.0f})", statistics.median(
        rates
    )


def _row(label: str, ours: tuple[str, float], theirs: tuple[str, float], *, higher_is_better: bool) -> str:
    """One line: our figure, Orthanc's, how many times faster we are, and whether that beats Orthanc."""
    if ours[1] and theirs[1]:
        ratio = ours[1] / theirs[1] if higher_is_better else theirs[1] / ours[1]
        cells = [f"{ratio:.2f}x", "met" if ratio > 1 else "MISSED"]
    else:
        cells = ["-", "-"]
    parts = [label, ours[0], theirs[0], *cells]
    return " ".join(
        [parts[0].ljust(WIDTHS[0])]
        + [cell.rjust(width) for cell, width in zip(parts[1:], WIDTHS[1:], strict=True)]
    )


def _cpu(figures: Figures, kind: str, count: int) -> str:
    if kind not in figures.cpu_s or not count:
        return "-"
    return f"{figures.cpu_s[kind] / count * 1000:.1f} ms"


def print_table(ours: Figures, orthanc: Figures, slices: int, limit: int) -> None:
    """The four measurements (frames cold and warm), then the server CPU per request and notes."""
    header = ["measurement", f"ours ({ours.note})", f"Orthanc ({orthanc.note})", "ours faster", "target"]
    print(
        " ".join(
            [header[0].ljust(WIDTHS[0])] + [h.rjust(w) for h, w in zip(header[1:], WIDTHS[1:], strict=True)]
        )
    )
    print("-" * (sum(WIDTHS) + len(WIDTHS) - 1))
    searches = len(ours.ms["qido"]) or len(orthanc.ms["qido"])
    print(
        _row(
            f"QIDO /studies?PatientName=ABC*&limit={limit} ({searches}x)",
            _latency(ours, "qido"),
            _latency(orthanc, "qido"),
            higher_is_better=False,
        )
    )
    for kind, label in (("frames-cold", "first pass"), ("frames-warm", "second pass")):
        print(
            _row(
                f"WADO-RS frame, multipart ({label}, {slices}x)",
                _latency(ours, kind),
                _latency(orthanc, kind),
                higher_is_better=False,
            )
        )
    for again, label in ((False, "first request"), (True, "again, median")):
        print(
            _row(
                f"metadata of the {slices}-slice series ({label})",
                _metadata(ours, again),
                _metadata(orthanc, again),
                higher_is_better=False,
            )
        )
    print(
        _row(
            f"retrieve of the {slices}-slice series",
            _throughput(ours),
            _throughput(orthanc),
            higher_is_better=True,
        )
    )
    print()
    print("server CPU per request: ours / Orthanc")
    for kind in ("qido", "frames-cold", "frames-warm", "metadata", "retrieve"):
        counts = (len(ours.ms[kind]), len(orthanc.ms[kind]))
        print(f"  {kind:<12} {_cpu(ours, kind, counts[0]):>10} / {_cpu(orthanc, kind, counts[1])}")
    _notes(ours, orthanc)


def _notes(ours: Figures, orthanc: Figures) -> None:
    """Matches per search on both sides, sizes, failures."""
    if ours.found and orthanc.found:
        same = sum(a == b for a, b in zip(ours.found, orthanc.found, strict=False))
        print(
            f"search results per query: ours {_spread(ours.found)}, Orthanc {_spread(orthanc.found)}; "
            f"the same count in {same} of {min(len(ours.found), len(orthanc.found))} queries"
        )
    if orthanc.reference:
        print(
            f"orthanc: its core REST /instances/{{id}}/frames/0/raw (no DICOMweb lookup of the UIDs) "
            f"p50 / p95 {percentile(orthanc.reference, 50):.1f} / {percentile(orthanc.reference, 95):.1f} ms"
        )
    for figures in (ours, orthanc):
        if figures.retrieved:
            got = figures.retrieved[0]
            print(
                f"{figures.server}: retrieve {got.nbytes / MB:.1f} MB in {got.parts} parts, first byte after "
                f"{statistics.median(g.first_byte_ms for g in figures.retrieved):.0f} ms, "
                f"{statistics.median(g.ms for g in figures.retrieved):.0f} ms in all, the client's CPU "
                f"{statistics.median(g.client_cpu_ms for g in figures.retrieved):.0f} ms (medians)"
            )
        if figures.metadata_bytes:
            print(f"{figures.server}: metadata {figures.metadata_bytes / MB:.2f} MB of JSON")
        for kind, why in figures.failed.items():
            print(f"{figures.server}: {kind} failed: {why}")


def _spread(values: Sequence[int]) -> str:
    return f"{min(values)}..{max(values)}" if values else "-"
