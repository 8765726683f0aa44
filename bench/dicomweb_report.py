"""The table of ``bench/web_dicomweb.py``: ours beside Orthanc's DICOMweb plugin, with ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from bench.common import MB, percentile
from bench.dicomweb_measure import Figures

WIDTHS = (44, 22, 22, 11, 7, 22, 8)


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


def _ratio(ours: float, theirs: float, higher_is_better: bool) -> str:
    if not (ours and theirs):
        return "-"
    return f"{ours / theirs if higher_is_better else theirs / ours:.2f}x"


def _row(
    label: str,
    ours: tuple[str, float],
    theirs: tuple[str, float],
    plain: tuple[str, float],
    *,
    higher_is_better: bool,
) -> str:
    """One line: our figure, Orthanc's over HTTPS, how many times faster we are and whether that beats
    it (the target), then Orthanc's over plain HTTP and our ratio to that.
    """
    ratio = _ratio(ours[1], theirs[1], higher_is_better)
    verdict = "-" if ratio == "-" else ("met" if float(ratio[:-1]) > 1 else "MISSED")
    cells = [label, ours[0], theirs[0], ratio, verdict, plain[0], _ratio(ours[1], plain[1], higher_is_better)]
    return _line(cells)


def _line(cells: Sequence[str]) -> str:
    return " ".join(
        [cells[0].ljust(WIDTHS[0])]
        + [cell.rjust(width) for cell, width in zip(cells[1:], WIDTHS[1:], strict=True)]
    )


def _cpu(figures: Figures, kind: str, count: int) -> str:
    if kind not in figures.cpu_s or not count:
        return "-"
    return f"{figures.cpu_s[kind] / count * 1000:.1f} ms"


def print_table(ours: Figures, orthanc: Figures, plain: Figures, slices: int, limit: int) -> None:
    """The four measurements (frames cold and warm), then the server CPU per request and notes.

    `orthanc` is Orthanc over HTTPS (the target's side), `plain` over plain HTTP.
    """
    print(
        _line(
            [
                "measurement",
                f"ours ({ours.note})",
                f"Orthanc ({orthanc.note})",
                "ours faster",
                "target",
                f"Orthanc ({plain.note})",
                "vs HTTP",
            ]
        )
    )
    print("-" * (sum(WIDTHS) + len(WIDTHS) - 1))
    searches = len(ours.ms["qido"]) or len(orthanc.ms["qido"]) or len(plain.ms["qido"])
    sides = (ours, orthanc, plain)
    rows: list[tuple[str, Callable[[Figures], tuple[str, float]], bool]] = [
        (f"QIDO /studies?PatientName=ABC*&limit={limit} ({searches}x)", lambda f: _latency(f, "qido"), False),
        (f"WADO-RS frame, multipart (first pass, {slices}x)", lambda f: _latency(f, "frames-cold"), False),
        (f"WADO-RS frame, multipart (second pass, {slices}x)", lambda f: _latency(f, "frames-warm"), False),
        (f"metadata of the {slices}-slice series (first request)", lambda f: _metadata(f, False), False),
        (f"metadata of the {slices}-slice series (again, median)", lambda f: _metadata(f, True), False),
        (f"retrieve of the {slices}-slice series", _throughput, True),
    ]
    for label, figure, higher in rows:
        print(_row(label, *(figure(side) for side in sides), higher_is_better=higher))
    print()
    print("server CPU per request: ours / Orthanc over HTTPS / Orthanc over HTTP")
    for kind in ("qido", "frames-cold", "frames-warm", "metadata", "retrieve"):
        cpu = [_cpu(side, kind, len(side.ms[kind])) for side in sides]
        print(f"  {kind:<12} {cpu[0]:>10} / {cpu[1]} / {cpu[2]}")
    _notes(ours, orthanc, plain)


def _notes(ours: Figures, orthanc: Figures, plain: Figures) -> None:
    """Matches per search on both sides, sizes, failures."""
    searched = orthanc if orthanc.found else plain
    if ours.found and searched.found:
        same = sum(a == b for a, b in zip(ours.found, searched.found, strict=False))
        print(
            f"search results per query: ours {_spread(ours.found)}, Orthanc {_spread(searched.found)}; "
            f"the same count in {same} of {min(len(ours.found), len(searched.found))} queries"
        )
    for side in (orthanc, plain):
        if not side.reference:
            continue
        print(
            f"{side.server}: its core REST /instances/{{id}}/frames/0/raw (no DICOMweb lookup of the UIDs) "
            f"p50 / p95 {percentile(side.reference, 50):.1f} / {percentile(side.reference, 95):.1f} ms"
        )
    for figures in (ours, orthanc, plain):
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
