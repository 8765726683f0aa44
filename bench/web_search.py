"""Study-list searches for ``bench/web_viewer.py``: the web endpoint ``/`` as the search form asks it,
and bare ``Archive.find`` with the identifier the view builds.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from bench.dicom_servers import BenchError
from bench.synthetic_index import MODALITIES, Corpus, month_range
from bench.web_client import Client, get
from pacs.core.context import Context
from webviewer.studies import Search
from webviewer.studies import identifier as study_identifier

PAGE_SIZE = 50  # WebConfig.page_size: the view asks find() for one more
_ROW = re.compile(r'<tr data-study="')


def _dashed(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def query_string(search: Search) -> str:
    """The query string the search form sends for `search`."""
    args = {
        "name": search.name,
        "patient_id": search.patient_id,
        "from": _dashed(search.date_from) if search.date_from else "",
        "to": _dashed(search.date_to) if search.date_to else "",
        "modality": search.modality,
    }
    args = {key: value for key, value in args.items() if value}
    return "/?" + urlencode(args) if args else "/"


def by_month(rng: random.Random, corpus: Corpus) -> Search:
    first, last = month_range(rng)
    return Search(date_from=f"{first:%Y%m%d}", date_to=f"{last:%Y%m%d}")


# (label, a new search from the random generator and what the index holds)
SEARCHES: list[tuple[str, Callable[[random.Random, Corpus], Search]]] = [
    ("name prefix (name=SMI)", lambda rng, corpus: Search(name=rng.choice(corpus.surnames)[:3])),
    ("patient ID", lambda rng, corpus: Search(patient_id=rng.choice(corpus.patient_ids))),
    ("date range, one month", by_month),
    ("modality (modality=CT)", lambda rng, corpus: Search(modality=rng.choice(MODALITIES))),
    ("newest page, no criteria", lambda rng, corpus: Search()),
]


@dataclass
class SearchTiming:
    """Latencies (ms) of one search: over HTTPS, through the test client, as bare ``find``; rows per page."""

    label: str
    rows: list[int] = field(default_factory=list)
    ms: dict[str, list[float]] = field(default_factory=lambda: {"https": [], "local": [], "find": []})


def time_searches(
    client: Client,
    corpus: Corpus,
    timings: dict[str, SearchTiming],
    kind: str,
    n: int,
    warmup: int,
    seed: int,
) -> None:
    """`n` timed requests (after `warmup`) of every search through `client`."""
    for number, (label, make) in enumerate(SEARCHES):
        rng = random.Random(seed * 1000 + number)
        timing = timings.setdefault(label, SearchTiming(label))
        for iteration in range(warmup + n):
            reply = get(client, query_string(make(rng, corpus)))
            if reply.status != 200:
                raise BenchError(f"study list: HTTP {reply.status}")
            if iteration >= warmup:
                timing.ms[kind].append(reply.ms)
                if kind == "https":
                    timing.rows.append(len(_ROW.findall(reply.text)))


def time_finds(
    pacs: Context, corpus: Corpus, timings: dict[str, SearchTiming], n: int, warmup: int, seed: int
) -> None:
    """The same searches as bare ``Archive.find`` calls with the view's identifier and limit."""
    for number, (label, make) in enumerate(SEARCHES):
        rng = random.Random(seed * 1000 + number)
        timing = timings.setdefault(label, SearchTiming(label))
        for iteration in range(warmup + n):
            query = study_identifier(make(rng, corpus))
            began = time.perf_counter()
            pacs.archive.find("STUDY", query, limit=PAGE_SIZE + 1, offset=0)
            if iteration >= warmup:
                timing.ms["find"].append((time.perf_counter() - began) * 1000)
