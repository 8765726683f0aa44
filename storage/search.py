"""The study list's search: words of a patient's name in any order, parts of IDs and accessions, sorted.

This is not DICOM matching (:mod:`storage.matching` keeps that for C-FIND): it is what a
person typing into a search box expects.

- Every word typed must begin a word of the patient's name, in any order and in any
  component or group of the name ("jane", "doe jane" and "Jane Doe" all find
  ``DOE^JANE``), case- and accent-insensitively. The words of every patient's name are
  kept folded in ``patient_words`` (:func:`words`), indexed for prefix ranges.
- A patient ID or an accession number matches anywhere inside the stored value,
  case-insensitively (``2024-00`` finds ``ACC-2024-0042``).
- Nothing typed is a wildcard: ``*``, ``?``, ``%``, ``_`` and ``\\`` match themselves.

Results are sorted by one of :data:`SORTS`, ascending or descending, studies of the
same key newest first and the study's row id last, so the order is total and pages
never overlap.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, delete, exists, func, insert, select
from sqlalchemy.orm import Session, aliased

from storage.models import Patient, PatientWord, Series, Study
from storage.visibility import live_study, trashed_study_ids

WORD_LENGTH = 64  # the patient_words.word column
MAX_WORDS = 8  # words of a search that are used; the rest are ignored
FEW_PATIENTS = 800  # see restrictions()
FEW_STUDIES = 2000
# Where a name falls apart into words: groups (=), components (^), spaces and punctuation.
_SEPARATORS = re.compile(r"[\s=^,.;:()/\-]+")
_DROPPED = str.maketrans("", "", "'\u2019`\"")
_SERIES = aliased(Series)
_NEWEST = (Study.study_date.desc(), Study.study_time.desc(), Study.id.desc())

# The sort keys offered and the columns they order by; but for the date, the patient's
# studies then come newest first. The study's row id is last: the order is total.
SORTS: dict[str, tuple[Any, ...]] = {
    "date": (Study.study_date, Study.study_time, Study.id),
    "name": (Patient.name_norm, Patient.id),
    "patient_id": (Patient.patient_id, Patient.id),
    "birth_date": (Patient.birth_date, Patient.id),
    "accession": (Study.accession, Study.id),
}

_BY_PATIENT = {"name", "patient_id", "birth_date"}


def fold(text: str) -> str:
    """`text` as the search compares it: compatibility-decomposed, accents dropped, case-folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    """The distinct folded words of `text`, in order: of a DICOM person name (every group and
    component) as ``patient_words`` keeps them, or of what was typed into the search."""
    found = (word[:WORD_LENGTH] for word in _SEPARATORS.split(fold(text).translate(_DROPPED)))
    return list(dict.fromkeys(word for word in found if word))


@dataclass(frozen=True)
class StudyQuery:
    """A study-list search: what was typed (cleaned), the sort and the page."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    accession: str = ""
    patient: int | None = None  # one patient's studies (the patient's row id)
    trash: bool = False  # the studies in the trash (storage.trash) instead of all others
    sort: str = "date"
    descending: bool = True
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class StudyRow:
    """One study as the list shows it, with its patient and how many studies the patient has."""

    study_uid: str
    study_date: str
    study_time: str
    accession: str
    description: str
    modalities: str
    series: int
    frames: int
    patient_age: str
    patient: int
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    patient_studies: int = 1


_COLUMNS = (
    Study.id.label("study_id"),
    Study.study_uid,
    Study.study_date,
    Study.study_time,
    Study.accession,
    Study.description,
    Study.modalities,
    Study.num_series,
    Study.num_frames,
    Study.patient_age,
    Patient.id,
    Patient.name,
    Patient.patient_id,
    Patient.birth_date,
    Patient.sex,
)


def _contains(column: Any, typed: str, dialect: str) -> ColumnElement[bool]:
    """`column` holds `typed` anywhere, ignoring case; nothing in `typed` is a wildcard."""
    pattern = "%" + typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    # SQLite's LIKE already ignores the case of ASCII letters, as identifiers are written.
    if dialect == "sqlite":
        return column.like(pattern, escape="\\")
    return column.ilike(pattern, escape="\\")


def _has_word(word: str) -> ColumnElement[bool]:
    """The patient has a name word starting with the folded `word`."""
    upper = word[:-1] + chr(ord(word[-1]) + 1)
    starting = select(PatientWord.patient_fk).where(PatientWord.word >= word, PatientWord.word < upper)
    return Patient.id.in_(starting)


def _patient_conditions(query: StudyQuery, dialect: str) -> list[ColumnElement[bool]]:
    """The conditions of `query` on the patient."""
    found: list[ColumnElement[bool]] = [_has_word(word) for word in words(query.name)[:MAX_WORDS]]
    if query.patient is not None:
        found.append(Patient.id == query.patient)
    if query.patient_id:
        found.append(_contains(Patient.patient_id, query.patient_id, dialect))
    if query.birth_date:
        found.append(Patient.birth_date == query.birth_date)
    return found


def _dates(query: StudyQuery) -> list[ColumnElement[bool]]:
    """The study date range of `query` (a range of the study indexes, which hold the date)."""
    found: list[ColumnElement[bool]] = []
    if query.date_from:
        found.append(Study.study_date >= query.date_from)
    if query.date_to:
        found += [Study.study_date != "", Study.study_date <= query.date_to]
    return found


def _study_conditions(query: StudyQuery, dialect: str) -> list[tuple[ColumnElement[bool], Select[Any]]]:
    """The conditions of `query` on the study that no index serves, each with the SELECT of the
    study ids it admits."""
    found: list[tuple[ColumnElement[bool], Select[Any]]] = []
    if query.accession:
        typed = _contains(Study.accession, query.accession, dialect)
        found.append((typed, select(Study.id).where(typed)))
    if query.modality:
        having = select(_SERIES.study_fk).where(_SERIES.modality == query.modality)
        probe = exists().where(_SERIES.study_fk == Study.id, _SERIES.modality == query.modality)
        found.append((probe, having.distinct()))
    return found


def _few(session: Session, ids: Select[Any], cap: int) -> list[int] | None:
    """The ids `ids` selects if there are at most `cap` of them, else None."""
    found = list(session.scalars(ids.limit(cap + 1)))
    return found if len(found) <= cap else None


def restrictions(session: Session, query: StudyQuery) -> list[ColumnElement[bool]] | None:
    """The WHERE of `query`'s studies, or None when none can match.

    A criterion that few patients (at most :data:`FEW_PATIENTS`) or few studies (at most
    :data:`FEW_STUDIES`) meet becomes the list of their ids, and the page is sorted from
    those rows alone. A criterion that many meet filters the studies walked in the order
    of the sort (``+ 0`` keeps the database from looking them up by it instead), where
    the page soon fills. Either way about ``sqrt(51 x studies)`` rows are read at most.
    """
    dialect = session.get_bind().dialect.name
    found = [Study.id.in_(trashed_study_ids()) if query.trash else live_study(), *_dates(query)]
    on_patient = _patient_conditions(query, dialect)
    if on_patient:
        admitted = select(Patient.id).where(*on_patient)
        patients = _few(session, admitted, FEW_PATIENTS)
        if patients == []:
            return None
        found.append(Study.patient_fk.in_(patients) if patients else (Study.patient_fk + 0).in_(admitted))
    for condition, admitted in _study_conditions(query, dialect):
        studies = _few(session, admitted, FEW_STUDIES)
        if studies == []:
            return None
        found.append(Study.id.in_(studies) if studies else condition)
    return found


def order(query: StudyQuery) -> list[Any]:
    """The ORDER BY of `query`: its sort key in its direction (see :data:`SORTS`)."""
    keys = SORTS.get(query.sort, SORTS["date"])
    ordered = [key.desc() if query.descending else key.asc() for key in keys]
    return ordered if keys is SORTS["date"] else [*ordered, *_NEWEST]


def statement(query: StudyQuery, where: list[ColumnElement[bool]], dialect: str) -> Select[Any]:
    """The SELECT of the study ids of one page of `query`, in order, given its :func:`restrictions`.

    Only the columns of the conditions and the sort are read, from indexes where they
    hold them; the page's rows are read afterwards.
    """
    page = select(Study.id)
    if query.sort in _BY_PATIENT:
        # SQLite, without statistics, would sort every study: walk the patients in the
        # order of the sort instead, and their studies by index.
        patient = Patient.id + 0 if dialect == "sqlite" else Patient.id
        page = page.join(Patient, Study.patient_fk == patient)
    return page.where(*where).order_by(*order(query)).limit(query.limit).offset(query.offset)


def find_studies(session: Session, query: StudyQuery) -> list[StudyRow]:
    """One page of the studies `query` finds, each with its patient's number of studies."""
    where = restrictions(session, query)
    if where is None:
        return []
    ids = list(session.scalars(statement(query, where, session.get_bind().dialect.name)))
    if not ids:
        return []
    rows = session.execute(
        select(*_COLUMNS).join(Patient, Study.patient_fk == Patient.id).where(Study.id.in_(ids))
    ).all()
    counted = (
        select(Study.patient_fk, func.count())
        .where(Study.patient_fk.in_({row.id for row in rows}), live_study())
        .group_by(Study.patient_fk)
    )
    counts = {patient: count for patient, count in session.execute(counted)}
    by_id = {row.study_id: row for row in rows}
    return [_row(by_id[study], counts) for study in ids]


def _row(row: Any, counts: dict[int, int]) -> StudyRow:
    """The :class:`StudyRow` of a row of :data:`_COLUMNS` (less the study's row id)."""
    return StudyRow(*tuple(row)[1:], patient_studies=counts.get(row.id, 1))


def add_name_words(connection: Connection | Session, patient_fk: int, name: str) -> None:
    """Record the words of a new patient's `name`."""
    rows = [{"word": word, "patient_fk": patient_fk} for word in words(name)]
    if rows:
        connection.execute(insert(PatientWord), rows)


def remove_name_words(connection: Connection | Session, patient_fk: int) -> None:
    """Forget the words of a patient who is about to be deleted."""
    connection.execute(delete(PatientWord).where(PatientWord.patient_fk == patient_fk))


def fill_name_words(connection: Connection) -> int:
    """Record the words of every patient (for a migration); return how many rows were written."""
    patients = connection.execute(select(Patient.id, Patient.name)).all()
    rows = [{"word": word, "patient_fk": pk} for pk, name in patients for word in words(name)]
    for start in range(0, len(rows), 5000):
        connection.execute(insert(PatientWord), rows[start : start + 5000])
    return len(rows)
