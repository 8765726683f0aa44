"""Study-list query latency of ``Archive.find("STUDY", ...)`` on a large synthetic index.

What is measured
----------------
1. A fresh archive is created per backend (encrypted SQLite and/or PostgreSQL, one new
   database per run) and its index is filled directly with SQLAlchemy Core bulk inserts:
   ``--studies`` studies (default 100,000) of ~40% as many patients (surname^given names
   from a few hundred surnames, skewed like real ones), dates spread over ten years,
   modalities CT/MR/US/CR/DX, 1-3 series per study and one instance row per series
   (fake blob ids and wrapped keys). Every NOT NULL column is filled, ``name_norm`` is
   ``normalise_name(name)``, ``patient_key`` is built like ``storage.index.patient_key``
   and the study/series counts agree with the rows. No blobs are written.
   PostgreSQL is ANALYZEd after the load (autovacuum would do so within a minute);
   SQLite is left as the application leaves it (it never runs ANALYZE) unless
   ``--sqlite-analyze`` is given.
2. Four study-list searches, each asking for the usual study-list return keys
   (PatientName, PatientID, PatientBirthDate, StudyDate, StudyTime, AccessionNumber,
   StudyDescription, ModalitiesInStudy, NumberOfStudyRelatedSeries,
   NumberOfStudyRelatedInstances, StudyInstanceUID) with ``limit=50``:
   a patient-name prefix (``SMI*``-like, a real surname's first letters, random per
   iteration), a one-month StudyDate range, an exact PatientID, and the plain
   "newest 50" list. Each runs ``--iterations`` times (default 200) after
   ``--warmup`` untimed runs. Reported: p50/p95/max of the whole ``find()`` call and,
   separately, of the SQL statement it issued run on its own through the same engine
   (so database time and Python result-building time can be told apart), and the
   mean number of rows returned.
3. The SQL of one name-prefix search is printed with ``EXPLAIN QUERY PLAN`` (SQLite) or
   ``EXPLAIN (ANALYZE, BUFFERS)`` (PostgreSQL) so index use is visible.

Target (from the issue): p95 < 50 ms for every search. The script only prints figures;
it never asserts.

Run: ``.venv/bin/python bench/index_query.py [--studies N] [--db sqlite|postgresql|both]``
"""

from __future__ import annotations

import argparse
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from pydicom.dataset import Dataset
from sqlalchemy import Connection, Table, event, text
from sqlalchemy.engine import Engine

from pacs.core.context import Pacs, initialise, open_pacs
from storage.db import Instance, Patient, Series, Study
from storage.header import normalise_name

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
TARGET_P95_MS = 50.0
UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"
BATCH = 5000
FIRST_DAY = date(2015, 1, 1)
DAYS = 3652  # ten years


def _words(text: str) -> list[str]:
    """The unique whitespace-separated words of `text`, in order."""
    return list(dict.fromkeys(text.split()))


# A few hundred surnames (English, German, French, Dutch, Italian, Spanish, Nordic, Slavic...).
SURNAMES = _words(
    """
SMITH JOHNSON WILLIAMS BROWN JONES MILLER DAVIS WILSON ANDERSON TAYLOR THOMAS MOORE MARTIN JACKSON
THOMPSON WHITE HARRIS CLARK LEWIS ROBINSON WALKER YOUNG ALLEN KING WRIGHT SCOTT HILL GREEN ADAMS
BAKER NELSON CARTER MITCHELL ROBERTS TURNER PHILLIPS CAMPBELL PARKER EVANS EDWARDS COLLINS STEWART
MORRIS MURPHY COOK ROGERS MORGAN COOPER PETERSON BAILEY REED KELLY HOWARD COX WARD RICHARDSON WATSON
BROOKS WOOD JAMES BENNETT GRAY HUGHES PRICE SANDERS MYERS LONG ROSS FOSTER POWELL JENKINS PERRY
RUSSELL SULLIVAN BELL COLEMAN BUTLER HENDERSON BARNES FISHER HAMILTON GRAHAM WALLACE WEST COLE HAYES
GIBSON BRYANT ELLIS STEVENS MURRAY FORD MARSHALL OWENS MCDONALD HARRISON KENNEDY WELLS ALEXANDER
GRIFFIN HUNT PALMER BLACK ROBERTSON STONE HAWKINS DUNN PERKINS HUDSON SPENCER GARDNER PAYNE PIERCE
BERRY MATTHEWS ARNOLD WAGNER WILLIS RAY WATKINS OLSON CARROLL DUNCAN SNYDER HART CUNNINGHAM KNIGHT
BRADLEY LANE ANDREWS RUIZ FOX RILEY ARMSTRONG CARPENTER WEAVER GREENE LAWRENCE ELLIOTT CHAVEZ SIMS
MUELLER SCHMIDT SCHNEIDER FISCHER WEBER MEYER SCHULZ BECKER HOFFMANN SCHAEFER KOCH RICHTER KLEIN
WOLF SCHROEDER NEUMANN SCHWARZ ZIMMERMANN BRAUN KRUEGER HOFMANN HARTMANN LANGE SCHMITT WERNER KRAUSE
MEIER LEHMANN SCHMID SCHULZE MAIER KOEHLER HERRMANN KOENIG WALTER HUBER KAISER FUCHS PETERS JUNG
MOELLER SCHOLZ VOGEL FRIEDRICH GUENTHER KELLER BERGER FRANKE ALBRECHT WINKLER SIMON LUDWIG BAUMANN
BERNARD DUBOIS THOMAS ROBERT RICHARD PETIT DURAND LEROY MOREAU LAURENT LEFEBVRE MICHEL GARCIA DAVID
BERTRAND ROUX VINCENT FOURNIER MOREL GIRARD ANDRE MERCIER DUPONT LAMBERT BONNET FRANCOIS MARTINEZ
LEGRAND GARNIER FAURE ROUSSEAU BLANC GUERIN MULLER HENRY ROUSSEL NICOLAS PERRIN MORIN MATHIEU CLEMENT
DEJONG DEVRIES JANSEN VANDENBERG BAKKER VISSER SMIT MEIJER DEBOER MULDER DEGROOT BOS VOS PETERS
HENDRIKS VANLEEUWEN DEKKER BROUWER DEWIT DIJKSTRA SMITS DEGRAAF VANDERMEER KOK JACOBS HAAN VERMEULEN
ROSSI RUSSO FERRARI ESPOSITO BIANCHI ROMANO COLOMBO RICCI MARINO GRECO BRUNO GALLO CONTI DELUCA
COSTA GIORDANO MANCINI RIZZO LOMBARDI MORETTI BARBIERI FONTANA SANTORO MARIANI RINALDI CARUSO FERRARA
GONZALEZ RODRIGUEZ FERNANDEZ LOPEZ SANCHEZ PEREZ GOMEZ MARTIN JIMENEZ HERNANDEZ DIAZ MORENO ALVAREZ
MUNOZ ROMERO ALONSO GUTIERREZ NAVARRO TORRES DOMINGUEZ VAZQUEZ RAMOS GIL RAMIREZ SERRANO BLANCO
SUAREZ MOLINA MORALES ORTEGA DELGADO CASTRO ORTIZ RUBIO MARIN SANZ IGLESIAS NUNEZ MEDINA GARRIDO
JOHANSSON ANDERSSON KARLSSON NILSSON ERIKSSON LARSSON OLSSON PERSSON SVENSSON GUSTAFSSON PETTERSSON
HANSEN NIELSEN JENSEN PEDERSEN KRISTENSEN LARSEN SORENSEN RASMUSSEN JORGENSEN MADSEN KORHONEN
VIRTANEN MAKINEN NIEMINEN MAKELA HAMALAINEN LAINE HEIKKINEN KOSKINEN JARVINEN NOWAK KOWALSKI
WISNIEWSKI WOJCIK KOWALCZYK KAMINSKI LEWANDOWSKI ZIELINSKI SZYMANSKI WOZNIAK DABROWSKI NOVAK SVOBODA
NOVOTNY DVORAK CERNY PROCHAZKA KUCERA VESELY HORAK IVANOV SMIRNOV KUZNETSOV POPOV VASILIEV PETROV
SOKOLOV MIKHAILOV FEDOROV MOROZOV VOLKOV ALEKSEEV LEBEDEV SEMENOV EGOROV PAVLOV KOZLOV STEPANOV
NAGY KOVACS TOTH SZABO HORVATH VARGA KISS MOLNAR NEMETH FARKAS PAPADOPOULOS GEORGIOU DIMITRIOU
OBRIEN OCONNOR OSULLIVAN WALSH BYRNE RYAN OREILLY DOYLE MCCARTHY GALLAGHER DOHERTY KENNEDY LYNCH
MURRAY QUINN MOORE MCLAUGHLIN CARROLL CONNOLLY DALY CONNELL WILKINSON SILVA SANTOS FERREIRA PEREIRA
OLIVEIRA COSTA RODRIGUES MARTINS JESUS SOUSA FERNANDES GONCALVES GOMES LOPES MARQUES ALVES ALMEIDA
YILMAZ KAYA DEMIR SAHIN CELIK YILDIZ YILDIRIM OZTURK AYDIN OZDEMIR ARSLAN DOGAN KILIC ASLAN CETIN
"""
)

GIVEN_NAMES = _words(
    """
JAMES MARY JOHN PATRICIA ROBERT JENNIFER MICHAEL LINDA WILLIAM ELIZABETH DAVID BARBARA RICHARD SUSAN
JOSEPH JESSICA THOMAS SARAH CHARLES KAREN CHRISTOPHER NANCY DANIEL LISA MATTHEW BETTY ANTHONY MARGARET
MARK SANDRA PAUL ASHLEY STEVEN KIMBERLY ANDREW EMILY KENNETH DONNA JOSHUA MICHELLE KEVIN CAROL BRIAN
AMANDA GEORGE MELISSA EDWARD DEBORAH HANS ANNA PETER MARIA KLAUS URSULA JUERGEN MONIKA STEFAN PETRA
JEAN MARIE PIERRE NATHALIE LUC ISABELLE JAN SANNE PIETER EMMA MARCO GIULIA LUCA FRANCESCA JOSE CARMEN
ANTONIO LUCIA LARS INGRID ERIK KARIN PIOTR AGNIESZKA IVAN OLGA DMITRI ELENA LASZLO ZSOFIA SEAN AOIFE
JOAO ANA MEHMET AYSE MUSTAFA FATMA NIKOS ELENI MATTI AINO JUHA SOFIA OSKAR ASTRID
"""
)

MODALITIES = ["CT", "MR", "US", "CR", "DX"]
MODALITY_WEIGHTS = [25, 15, 20, 20, 20]
SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}
DESCRIPTIONS = {
    "CT": ["CT CHEST", "CT ABDOMEN PELVIS", "CT HEAD W/O CONTRAST", "CT SPINE LUMBAR"],
    "MR": ["MR BRAIN", "MR KNEE RIGHT", "MR LUMBAR SPINE", "MR SHOULDER LEFT"],
    "US": ["US ABDOMEN", "US THYROID", "US BREAST", "US CAROTID DOPPLER"],
    "CR": ["CR CHEST PA", "CR HAND LEFT", "CR KNEE", "CR PELVIS"],
    "DX": ["DX CHEST 2 VIEWS", "DX FOOT", "DX WRIST", "DX SPINE"],
}
BODY_PARTS = {
    "CT": ["CHEST", "ABDOMEN", "HEAD", "LSPINE"],
    "MR": ["BRAIN", "KNEE", "LSPINE", "SHOULDER"],
    "US": ["ABDOMEN", "THYROID", "BREAST", "NECK"],
    "CR": ["CHEST", "HAND", "KNEE", "PELVIS"],
    "DX": ["CHEST", "FOOT", "WRIST", "SPINE"],
}
REFERRING = [f"{s}^{g}" for s, g in zip(SURNAMES[::7], GIVEN_NAMES[::2], strict=False)]

STUDY_LIST_KEYS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "StudyInstanceUID",
]


# ---------------------------------------------------------------------------
# Synthetic index rows
# ---------------------------------------------------------------------------


@dataclass
class Corpus:
    """What the query generator needs to know about the filled index."""

    patient_ids: list[str]
    surnames: list[str]
    rows: dict[str, int] = field(default_factory=dict)


def _day(offset: int) -> str:
    return (FIRST_DAY + timedelta(days=offset)).strftime("%Y%m%d")


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        conn.execute(table.insert(), rows[start : start + BATCH])


def fill_index(engine: Engine, studies: int, seed: int) -> Corpus:
    """Bulk-insert `studies` studies with their patients, series and instances."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    patients_n = max(1, round(studies * 0.4))
    surname_weights = [1.0 / (rank + 8) for rank in range(len(SURNAMES))]
    surnames = rng.choices(SURNAMES, weights=surname_weights, k=patients_n)

    patient_rows: list[dict[str, Any]] = []
    patient_ids: list[str] = []
    for number in range(1, patients_n + 1):
        given = rng.choice(GIVEN_NAMES)
        middle = f"^{rng.choice('ABCDEFGHJKLMNPRSTW')}" if rng.random() < 0.15 else ""
        name = f"{surnames[number - 1]}^{given}{middle}"
        patient_id = f"P{number:08d}"
        patient_ids.append(patient_id)
        birth = FIRST_DAY - timedelta(days=rng.randrange(0, 90 * 365))
        patient_rows.append(
            {
                "id": number,
                "patient_key": f"id:\\{patient_id}",
                "patient_id": patient_id,
                "issuer": "",
                "name": name,
                "name_norm": normalise_name(name),
                "birth_date": birth.strftime("%Y%m%d"),
                "sex": rng.choices("MFO", weights=(49, 49, 2))[0],
            }
        )

    # Every patient has at least one study; the rest go to random (repeat) patients.
    owners = list(range(1, patients_n + 1))[:studies]
    owners += [rng.randint(1, patients_n) for _ in range(studies - len(owners))]
    rng.shuffle(owners)

    study_rows: list[dict[str, Any]] = []
    series_rows: list[dict[str, Any]] = []
    instance_rows: list[dict[str, Any]] = []
    series_id = 0
    for number in range(1, studies + 1):
        primary = rng.choices(MODALITIES, weights=MODALITY_WEIGHTS)[0]
        count = rng.choice((1, 1, 2, 2, 3))
        modalities = [primary] + [
            primary if rng.random() < 0.8 else rng.choice(MODALITIES) for _ in range(count - 1)
        ]
        referring = rng.choice(REFERRING) if rng.random() < 0.9 else ""
        study_rows.append(
            {
                "id": number,
                "study_uid": f"{UID_ROOT}.1.{number}",
                "patient_fk": owners[number - 1],
                "study_date": _day(rng.randrange(DAYS)),
                "study_time": f"{rng.randint(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
                "accession": f"A{number:09d}",
                "study_id": str(number % 100000),
                "description": rng.choice(DESCRIPTIONS[primary]),
                "referring_name": referring,
                "referring_norm": normalise_name(referring),
                "modalities": "\\".join(sorted(set(modalities))),
                "num_series": count,
                "num_instances": count,
                "updated_at": now,
            }
        )
        for position, modality in enumerate(modalities, start=1):
            series_id += 1
            series_rows.append(
                {
                    "id": series_id,
                    "series_uid": f"{UID_ROOT}.2.{series_id}",
                    "study_fk": number,
                    "modality": modality,
                    "series_number": position,
                    "description": f"{modality} SERIES {position}",
                    "body_part": rng.choice(BODY_PARTS[modality]),
                    "num_instances": 1,
                }
            )
            instance_rows.append(
                {
                    "id": series_id,
                    "sop_uid": f"{UID_ROOT}.3.{series_id}",
                    "version": 1,
                    "is_current": True,
                    "series_fk": series_id,
                    "sop_class_uid": SOP_CLASSES[modality],
                    "instance_number": 1,
                    "transfer_syntax": "1.2.840.10008.1.2.1",
                    "frames": 1,
                    "rows": 512,
                    "columns": 512,
                    "blob_id": f"{rng.getrandbits(96):024x}{series_id:08x}",
                    "key_version": 1,
                    "wrapped_key": rng.randbytes(60),
                    "size": rng.randint(100_000, 600_000),
                    "sha256": f"{rng.getrandbits(256):064x}",
                    "received_at": now,
                }
            )

    tables = [
        (Patient.__table__, patient_rows),
        (Study.__table__, study_rows),
        (Series.__table__, series_rows),
        (Instance.__table__, instance_rows),
    ]
    with engine.begin() as conn:
        for table, rows in tables:
            _insert(conn, table, rows)  # type: ignore[arg-type]
        if engine.dialect.name == "postgresql":
            # Explicit ids were inserted; move the serial sequences past them.
            for table, _ in tables:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT max(id) FROM {table.name}))"
                    )
                )
    used = sorted({row["name_norm"].split("^")[0] for row in patient_rows})
    return Corpus(patient_ids, used, {table.name: len(rows) for table, rows in tables})


def analyze(engine: Engine) -> None:
    """Gather planner statistics (ANALYZE) on either backend."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


# ---------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------


def identifier(**matching: str) -> Dataset:
    """A STUDY-level identifier with the study-list return keys, plus `matching` values."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_LIST_KEYS:
        setattr(ds, keyword, matching.get(keyword, ""))
    return ds


def name_prefix(rng: random.Random, corpus: Corpus) -> Dataset:
    return identifier(PatientName=f"{rng.choice(corpus.surnames)[:3]}*")


def date_month(rng: random.Random, corpus: Corpus) -> Dataset:
    month = rng.randrange(120)
    first = date(FIRST_DAY.year + month // 12, month % 12 + 1, 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return identifier(StudyDate=f"{first:%Y%m%d}-{last:%Y%m%d}")


def patient_id(rng: random.Random, corpus: Corpus) -> Dataset:
    return identifier(PatientID=rng.choice(corpus.patient_ids))


def newest(rng: random.Random, corpus: Corpus) -> Dataset:
    return identifier()


SEARCHES: list[tuple[str, Callable[[random.Random, Corpus], Dataset]]] = [
    ("name prefix (SMI*)", name_prefix),
    ("study date, one month", date_month),
    ("exact patient ID", patient_id),
    ("newest 50", newest),
]


@dataclass
class Timing:
    """Latencies (ms) of one search, and the slowest call's identifier and SQL."""

    label: str
    find_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    truncated: bool = False
    slowest: tuple[float, Dataset | None, str, Any] = (-1.0, None, "", None)


class StatementCapture:
    """Remembers the last SELECT on `engine` with its parameters (for re-running and EXPLAIN)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statement = ""
        self.parameters: Any = None
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.statement, self.parameters = statement, parameters

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of `values` (0 for an empty sequence)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_search(
    pacs: Pacs,
    label: str,
    make: Callable[[random.Random, Corpus], Dataset],
    corpus: Corpus,
    *,
    iterations: int,
    warmup: int,
    seed: int,
    budget: float,
) -> Timing:
    """Time `iterations` find() calls (after `warmup`), and the bare SQL of each.

    Stops early (``truncated``) once `budget` seconds have been spent on timed calls.
    """
    rng = random.Random(seed)
    timing = Timing(label)
    capture = StatementCapture(pacs.database.engine)
    deadline = None
    try:
        for number in range(warmup + iterations):
            if number == warmup:
                deadline = time.monotonic() + budget
            elif deadline is not None and time.monotonic() > deadline:
                timing.truncated = True
                break
            ds = make(rng, corpus)
            began = time.perf_counter()
            found = pacs.archive.find("STUDY", ds, limit=50)
            find_ms = (time.perf_counter() - began) * 1000
            statement, parameters = capture.statement, capture.parameters
            with pacs.database.read() as session:
                conn = session.connection()
                began = time.perf_counter()
                conn.exec_driver_sql(statement, parameters).fetchall()
                sql_ms = (time.perf_counter() - began) * 1000
            if number >= warmup:
                timing.find_ms.append(find_ms)
                timing.sql_ms.append(sql_ms)
                timing.rows.append(len(found))
                if find_ms > timing.slowest[0]:
                    timing.slowest = (find_ms, ds, statement, parameters)
    finally:
        capture.remove()
    return timing


def explain(pacs: Pacs, timing: Timing) -> str:
    """The plan of the slowest call of `timing`, as the backend reports it."""
    find_ms, ds, statement, parameters = timing.slowest
    if ds is None:
        return "  (no timed call)"
    sqlite = pacs.database.is_sqlite
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
    with pacs.database.read() as session:
        rows = session.connection().exec_driver_sql(prefix + statement, parameters).all()
    if sqlite:
        plan = "\n".join(f"  {row[0]:>3} {row[1]:>3}  {row[3]}" for row in rows)
    else:
        plan = "\n".join(f"  {row[0]}" for row in rows)
    matching = {
        keyword: str(ds[keyword].value) for keyword in STUDY_LIST_KEYS if keyword in ds and ds[keyword].value
    }
    shown = " ".join(statement.split())
    return (
        f"slowest call of the run: {find_ms:.1f} ms, matching {matching or '(nothing: universal)'}\n"
        f"SQL: {shown}\nparameters: {parameters}\n{plan}"
    )


# ---------------------------------------------------------------------------
# Archive setup and output
# ---------------------------------------------------------------------------


@contextmanager
def fresh_archive(backend: str, workdir: Path, pg_server: str) -> Iterator[Pacs]:
    """A newly initialised archive on `backend`; removed (and its database dropped) on exit."""
    db_url = ""
    dbname = ""
    if backend == "postgresql":
        dbname = f"bench_{secrets.token_hex(6)}"
        with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        db_url = f"{pg_server}/{dbname}"
    data_dir = workdir / f"archive-{backend}"
    try:
        settings = initialise(data_dir, ae_title="BENCH", hostname="localhost", db_url=db_url, user="bench")
        pacs = open_pacs(settings)
        try:
            yield pacs
        finally:
            pacs.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if dbname:
            with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def print_table(results: Sequence[tuple[str, Timing]]) -> None:
    header = (
        f"{'backend':<11} {'search':<24} {'n':>4} {'rows':>5} "
        f"{'find p50':>9} {'find p95':>9} {'find max':>9} {'SQL p50':>8} {'SQL p95':>8}"
        f"  target p95 < {TARGET_P95_MS:.0f} ms"
    )
    print(header)
    print("-" * len(header))
    for backend, timing in results:
        p95 = percentile(timing.find_ms, 95)
        verdict = "met" if p95 < TARGET_P95_MS else "MISSED"
        rows = sum(timing.rows) / len(timing.rows) if timing.rows else 0
        print(
            f"{backend:<11} {timing.label:<24} {len(timing.find_ms):>4} {rows:>5.1f} "
            f"{percentile(timing.find_ms, 50):>9.2f} {p95:>9.2f} {max(timing.find_ms, default=0):>9.2f} "
            f"{percentile(timing.sql_ms, 50):>8.2f} {percentile(timing.sql_ms, 95):>8.2f}  {verdict}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--studies", type=int, default=100_000, help="studies in the index (default 100000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per search (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per search first (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of data and queries (default 1)")
    parser.add_argument(
        "--budget",
        type=float,
        default=90.0,
        help="stop a search after this many seconds of timed calls (default 90)",
    )
    parser.add_argument(
        "--sqlite-analyze", action="store_true", help="run ANALYZE on SQLite too (the application never does)"
    )
    parser.add_argument(
        "--explain-all", action="store_true", help="print the plan of every search, not only the name prefix"
    )
    parser.add_argument("--pg-server", default=PG_SERVER, help=f"PostgreSQL server URL (default {PG_SERVER})")
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where temp dirs go (default: system temp)"
    )
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]

    results: list[tuple[str, Timing]] = []
    plans: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="pacs-bench-query-", dir=args.tmp_dir))
    try:
        for backend in backends:
            with fresh_archive(backend, workdir, args.pg_server) as pacs:
                engine = pacs.database.engine
                print(f"{backend}: filling {args.studies} studies ...", flush=True)
                began = time.perf_counter()
                corpus = fill_index(engine, args.studies, args.seed)
                filled = time.perf_counter() - began
                counts = ", ".join(f"{count} {name}" for name, count in corpus.rows.items())
                print(f"{backend}: inserted {counts} in {filled:.1f} s", flush=True)
                analysed = backend == "postgresql" or args.sqlite_analyze
                if analysed:
                    began = time.perf_counter()
                    analyze(engine)
                    print(f"{backend}: ANALYZE in {time.perf_counter() - began:.1f} s", flush=True)
                for number, (label, make) in enumerate(SEARCHES):
                    print(f"{backend}: {label} x {args.iterations} ...", flush=True)
                    timing = run_search(
                        pacs,
                        label,
                        make,
                        corpus,
                        iterations=args.iterations,
                        warmup=args.warmup,
                        seed=args.seed * 1000 + number,
                        budget=args.budget,
                    )
                    results.append((backend, timing))
                    if number == 0 or args.explain_all:
                        title = (
                            "EXPLAIN QUERY PLAN" if pacs.database.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS)"
                        )
                        stats = "ANALYZEd" if analysed else "never ANALYZEd, as the application leaves it"
                        plans.append(f"{backend} ({stats}), {label}, {title}:\n{explain(pacs, timing)}")
        print()
        print(
            f"{args.studies} studies; latencies in ms; 'find' is Archive.find(), 'SQL' the same statement"
            " run bare; rows = mean rows returned (limit 50)"
        )
        truncated = [f"{backend} {timing.label}" for backend, timing in results if timing.truncated]
        if truncated:
            budget, wanted = args.budget, args.iterations
            print(f"stopped after --budget {budget:g} s (n < {wanted}): {', '.join(truncated)}")
        print()
        print_table(results)
        for plan in plans:
            print()
            print(plan)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
