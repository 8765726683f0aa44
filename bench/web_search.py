"""Study-list searches for ``bench/web_viewer.py``: the web endpoint ``/`` as the search form asks it,
and the same :class:`storage.search.StudyQuery` through ``Archive.search_studies`` (the view's own
search, without HTTP, session, audit or template).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from sqlalchemy import func, select

from bench.dicom_servers import BenchError
from bench.synthetic_index import MODALITIES, Corpus, month_range
from bench.web_client import Client, get
from pacs.core.context import Context
from storage.models import Study
from storage.search import StudyQuery, restrictions

PAGE_SIZE = 50  # WebConfig.page_size: the view asks search_studies() for one more
COUNTED = 10  # queries of each search whose matches are counted (untimed)
_ROW = re.compile(r'<tr data-study="')


def _dashed(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def query_string(query: StudyQuery) -> str:
    """The query string the search form (and a sort link) sends for `query`."""
    args = {
        "name": query.name,
        "patient_id": query.patient_id,
        "from": _dashed(query.date_from) if query.date_from else "",
        "to": _dashed(query.date_to) if query.date_to else "",
        "modality": query.modality,
        "accession": query.accession,
    }
    if query.sort != "date" or not query.descending:
        args |= {"sort": query.sort, "dir": "desc" if query.descending else "asc"}
    args = {key: value for key, value in args.items() if value}
    return "/?" + urlencode(args) if args else "/"


def by_month(rng: random.Random, corpus: Corpus) -> StudyQuery:
    first, last = month_range(rng)
    return StudyQuery(date_from=f"{first:%Y%m%d}", date_to=f"{last:%Y%m%d}")


def part_of_accession(rng: random.Random, corpus: Corpus) -> StudyQuery:
    """Five digits from the middle of an accession number of the index (``A000012345`` -> ``01234``)."""
    accession = f"A{rng.randint(1, corpus.rows['studies']):09d}"
    return StudyQuery(accession=accession[4:9])


# (label, a new search from the random generator and what the index holds); the synthetic
# index has DOE^JANE patients and JANE among its given names.
SEARCHES: list[tuple[str, Callable[[random.Random, Corpus], StudyQuery]]] = [
    ("name word (jane)", lambda rng, corpus: StudyQuery(name="jane")),
    ("two words (jane doe)", lambda rng, corpus: StudyQuery(name="jane doe")),
    ("surname prefix (smi)", lambda rng, corpus: StudyQuery(name=rng.choice(corpus.surnames)[:3].lower())),
    ("part of patient ID", lambda rng, corpus: StudyQuery(patient_id=rng.choice(corpus.patient_ids)[2:7])),
    ("part of accession", part_of_accession),
    ("date range, one month", by_month),
    ("modality (CT)", lambda rng, corpus: StudyQuery(modality=rng.choice(MODALITIES))),
    ("newest first, no criteria", lambda rng, corpus: StudyQuery()),
    ("sorted by name, no criteria", lambda rng, corpus: StudyQuery(sort="name", descending=False)),
]


@dataclass
class SearchTiming:
    """Latencies (ms) of one search: over HTTPS, through the test client, as bare ``search_studies``;
    rows per page (HTTPS) and per call, and the studies matched by the first :data:`COUNTED` queries."""

    label: str
    rows: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)
    ms: dict[str, list[float]] = field(default_factory=lambda: {"https": [], "local": [], "find": []})


def _page(query: StudyQuery) -> StudyQuery:
    """`query` as the view asks it for the first page: one row more than it shows."""
    return replace(query, limit=PAGE_SIZE + 1, offset=0)


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


def count_matches(pacs: Context, query: StudyQuery) -> int:
    """How many studies `query` matches in all (its pages together), by the search's own WHERE."""
    with pacs.archive.database.read() as session:
        where = restrictions(session, query)
        if where is None:
            return 0
        return int(session.scalar(select(func.count()).select_from(Study).where(*where)) or 0)


def time_finds(
    pacs: Context, corpus: Corpus, timings: dict[str, SearchTiming], n: int, warmup: int, seed: int
) -> None:
    """The same searches as ``Archive.search_studies`` calls with the view's query and limit; the
    matches of the first :data:`COUNTED` queries counted afterwards."""
    for number, (label, make) in enumerate(SEARCHES):
        rng = random.Random(seed * 1000 + number)
        timing = timings.setdefault(label, SearchTiming(label))
        counted: list[StudyQuery] = []
        for iteration in range(warmup + n):
            query = _page(make(rng, corpus))
            began = time.perf_counter()
            found = pacs.archive.search_studies(query)
            if iteration >= warmup:
                timing.ms["find"].append((time.perf_counter() - began) * 1000)
                timing.found.append(len(found))
                if len(counted) < COUNTED:
                    counted.append(query)
        timing.matches += [count_matches(pacs, query) for query in counted]
