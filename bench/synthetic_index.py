"""The synthetic study index of ``bench/index_query.py`` and ``bench/web_viewer.py``, bulk-inserted.

``--studies`` studies of ~40% as many patients (surname^given names from a few hundred
surnames, skewed like real ones), dates spread over ten years, modalities CT/MR/US/CR/DX,
1-3 series per study and one instance row per series (fake blob ids and wrapped keys) of
one frame. Every 250th patient is a DOE, every 500th ``DOE^JANE`` (and JANE is one of the
given names), so that the study list's name searches have known matches. Every NOT NULL
column is filled, ``name_norm`` is ``normalise_name(name)``, ``patient_key`` is built like
``storage.index.patient_key``, the study/series counts (instances, frames) agree with the
rows and ``patient_words`` holds every patient's name words
(``storage.search.fill_name_words``, as migration 0008 fills it). No blobs are written.
The rows depend only on the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.engine import Engine

from storage.header import normalise_name
from storage.models import Instance, Patient, Series, Study
from storage.search import fill_name_words

UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"
BATCH = 5000
FIRST_DAY = date(2015, 1, 1)
DAYS = 3652  # ten years

Row = dict[str, Any]


def _words(text: str) -> list[str]:
    """The unique whitespace-separated words of `text`, in order."""
    return list(dict.fromkeys(text.split()))


def _kinds(table: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """{modality: study descriptions} and {modality: body parts} from lines 'MOD | d1; d2 | part part'."""
    descriptions, parts = {}, {}
    for line in table.strip().splitlines():
        modality, studies, bodies = (cell.strip() for cell in line.split("|"))
        descriptions[modality] = [study.strip() for study in studies.split(";")]
        parts[modality] = bodies.split()
    return descriptions, parts


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
JOAO ANA MEHMET AYSE MUSTAFA FATMA NIKOS ELENI MATTI AINO JUHA SOFIA OSKAR ASTRID JANE
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
# modality | study descriptions (separated by ";") | body parts of its series, drawn at random
DESCRIPTIONS, BODY_PARTS = _kinds(
    """
CT | CT CHEST; CT ABDOMEN PELVIS; CT HEAD W/O CONTRAST; CT SPINE LUMBAR | CHEST ABDOMEN HEAD LSPINE
MR | MR BRAIN; MR KNEE RIGHT; MR LUMBAR SPINE; MR SHOULDER LEFT | BRAIN KNEE LSPINE SHOULDER
US | US ABDOMEN; US THYROID; US BREAST; US CAROTID DOPPLER | ABDOMEN THYROID BREAST NECK
CR | CR CHEST PA; CR HAND LEFT; CR KNEE; CR PELVIS | CHEST HAND KNEE PELVIS
DX | DX CHEST 2 VIEWS; DX FOOT; DX WRIST; DX SPINE | CHEST FOOT WRIST SPINE
"""
)
REFERRING = [f"{s}^{g}" for s, g in zip(SURNAMES[::7], GIVEN_NAMES[::2], strict=False)]


@dataclass
class Corpus:
    """What the query generator needs to know about the filled index."""

    patient_ids: list[str]
    surnames: list[str]
    rows: dict[str, int] = field(default_factory=dict)


def _day(offset: int) -> str:
    return (FIRST_DAY + timedelta(days=offset)).strftime("%Y%m%d")


def month_range(rng: random.Random) -> tuple[date, date]:
    """The first and last day of a random month of the ten years."""
    month = rng.randrange(120)
    first = date(FIRST_DAY.year + month // 12, month % 12 + 1, 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return first, last


def _insert(conn: Connection, table: Table, rows: list[Row]) -> None:
    for start in range(0, len(rows), BATCH):
        conn.execute(table.insert(), rows[start : start + BATCH])


def _patients(rng: random.Random, count: int) -> list[Row]:
    """`count` patients, surnames skewed towards the first of SURNAMES."""
    surname_weights = [1.0 / (rank + 8) for rank in range(len(SURNAMES))]
    surnames = rng.choices(SURNAMES, weights=surname_weights, k=count)
    rows: list[Row] = []
    for number in range(1, count + 1):
        given = rng.choice(GIVEN_NAMES)
        middle = f"^{rng.choice('ABCDEFGHJKLMNPRSTW')}" if rng.random() < 0.15 else ""
        surname = "DOE" if number % 250 == 0 else surnames[number - 1]
        given = "JANE" if number % 500 == 0 else given
        name = f"{surname}^{given}{middle}"
        patient_id = f"P{number:08d}"
        birth = FIRST_DAY - timedelta(days=rng.randrange(0, 90 * 365))
        rows.append(
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
    return rows


def _owners(rng: random.Random, studies: int, patients: int) -> list[int]:
    """The patient of every study: each patient at least one, the rest to random (repeat) patients."""
    owners = list(range(1, patients + 1))[:studies]
    owners += [rng.randint(1, patients) for _ in range(studies - len(owners))]
    rng.shuffle(owners)
    return owners


def _study(rng: random.Random, number: int, owner: int, now: datetime) -> tuple[Row, list[str]]:
    """One study row and the modalities of its series."""
    primary = rng.choices(MODALITIES, weights=MODALITY_WEIGHTS)[0]
    count = rng.choice((1, 1, 2, 2, 3))
    modalities = [primary] + [
        primary if rng.random() < 0.8 else rng.choice(MODALITIES) for _ in range(count - 1)
    ]
    referring = rng.choice(REFERRING) if rng.random() < 0.9 else ""
    row = {
        "id": number,
        "study_uid": f"{UID_ROOT}.1.{number}",
        "patient_fk": owner,
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
        "num_frames": count,
        "updated_at": now,
    }
    return row, modalities


def _series(rng: random.Random, series_id: int, study: int, position: int, modality: str) -> Row:
    return {
        "id": series_id,
        "series_uid": f"{UID_ROOT}.2.{series_id}",
        "study_fk": study,
        "modality": modality,
        "series_number": position,
        "description": f"{modality} SERIES {position}",
        "body_part": rng.choice(BODY_PARTS[modality]),
        "num_instances": 1,
        "num_frames": 1,
    }


def _instance(rng: random.Random, series_id: int, modality: str, now: datetime) -> Row:
    """The one instance row of a series: a fake blob id, wrapped key, size and digest."""
    return {
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


def _write(engine: Engine, tables: list[tuple[Table, list[Row]]]) -> int:
    """Insert all rows and the patients' name words in one transaction; on PostgreSQL move the
    serial sequences past the explicit ids. Returns the number of name words."""
    with engine.begin() as conn:
        for table, rows in tables:
            _insert(conn, table, rows)
        name_words = fill_name_words(conn)
        if engine.dialect.name == "postgresql":
            for table, _ in tables:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT max(id) FROM {table.name}))"
                    )
                )
    return name_words


def fill_index(engine: Engine, studies: int, seed: int) -> Corpus:
    """Bulk-insert `studies` studies with their patients, series and instances."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    patient_rows = _patients(rng, max(1, round(studies * 0.4)))
    owners = _owners(rng, studies, len(patient_rows))
    study_rows: list[Row] = []
    series_rows: list[Row] = []
    instance_rows: list[Row] = []
    for number in range(1, studies + 1):
        study, modalities = _study(rng, number, owners[number - 1], now)
        study_rows.append(study)
        for position, modality in enumerate(modalities, start=1):
            series_id = len(series_rows) + 1
            series_rows.append(_series(rng, series_id, number, position, modality))
            instance_rows.append(_instance(rng, series_id, modality, now))
    tables = [
        (Patient.__table__, patient_rows),
        (Study.__table__, study_rows),
        (Series.__table__, series_rows),
        (Instance.__table__, instance_rows),
    ]
    name_words = _write(engine, tables)  # type: ignore[arg-type]
    used = sorted({row["name_norm"].split("^")[0] for row in patient_rows})
    patient_ids = [row["patient_id"] for row in patient_rows]
    counts = {table.name: len(rows) for table, rows in tables}
    return Corpus(patient_ids, used, {**counts, "patient_words": name_words})


def analyze(engine: Engine) -> None:
    """Gather planner statistics (ANALYZE) on either backend."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
