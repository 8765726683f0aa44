"""DICOM attribute matching (PS3.4 C.2.2.2) translated into SQL over the index.

Supported per key: universal matching (empty value), single value matching, wildcard
matching with ``*`` and ``?`` (case-insensitive for person names, case-sensitive
otherwise), date and time range matching (``A-B``, ``A-``, ``-B``; a time bound matches
at the precision it is given, so ``-1100`` includes 11:00:59), and UID list matching
(``uid1\\uid2``). Matching is relational: keys of the query level and of every level
above it filter the result. Entities with an empty value never match a non-universal key.

:func:`find` answers C-FIND with data sets; :func:`find_values` gives the same matches as
plain values (for QIDO-RS, which writes DICOM JSON itself), after :func:`validate` has
refused what cannot be matched as given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from storage.errors import PacsError
from storage.header import is_valid_uid, normalise_name
from storage.models import Instance, Patient, Series, Study
from storage.visibility import live_patient, live_study

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_AMBIGUOUS_VRS = {"US or SS", "OB or OW", "US or OW", "US or SS or OW"}
# Aliases for subqueries, so they never correlate with the tables of the outer query.
_STUDY = aliased(Study)
_SERIES = aliased(Series)


class Kind(Enum):
    """How a key's value is matched."""

    PERSON_NAME = "PN"
    DATE = "DA"
    TIME = "TM"
    UID = "UI"
    TEXT = "text"
    INTEGER = "IS"
    MODALITIES = "modalities"
    COUNT = "count"


@dataclass(frozen=True)
class Key:
    """A supported query key: its level, the column it reads and how it matches."""

    level: str
    column: Any
    kind: Kind
    match_column: Any = None


KEYS: dict[str, Key] = {
    "PatientName": Key("PATIENT", Patient.name, Kind.PERSON_NAME, Patient.name_norm),
    "PatientID": Key("PATIENT", Patient.patient_id, Kind.TEXT),
    "IssuerOfPatientID": Key("PATIENT", Patient.issuer, Kind.TEXT),
    "PatientBirthDate": Key("PATIENT", Patient.birth_date, Kind.DATE),
    "PatientSex": Key("PATIENT", Patient.sex, Kind.TEXT),
    "NumberOfPatientRelatedStudies": Key(
        "PATIENT",
        select(func.count(_STUDY.id))
        .where(_STUDY.patient_fk == Patient.id, live_study(_STUDY.id))
        .scalar_subquery(),
        Kind.COUNT,
    ),
    "StudyInstanceUID": Key("STUDY", Study.study_uid, Kind.UID),
    "StudyDate": Key("STUDY", Study.study_date, Kind.DATE),
    "StudyTime": Key("STUDY", Study.study_time, Kind.TIME),
    "AccessionNumber": Key("STUDY", Study.accession, Kind.TEXT),
    "StudyID": Key("STUDY", Study.study_id, Kind.TEXT),
    "StudyDescription": Key("STUDY", Study.description, Kind.TEXT),
    "PatientAge": Key("STUDY", Study.patient_age, Kind.TEXT),
    "TimezoneOffsetFromUTC": Key("STUDY", Study.timezone_offset, Kind.TEXT),
    "ReferringPhysicianName": Key("STUDY", Study.referring_name, Kind.PERSON_NAME, Study.referring_norm),
    "ModalitiesInStudy": Key("STUDY", Study.modalities, Kind.MODALITIES),
    "NumberOfStudyRelatedSeries": Key("STUDY", Study.num_series, Kind.COUNT),
    "NumberOfStudyRelatedInstances": Key("STUDY", Study.num_instances, Kind.COUNT),
    "SeriesInstanceUID": Key("SERIES", Series.series_uid, Kind.UID),
    "Modality": Key("SERIES", Series.modality, Kind.TEXT),
    "SeriesNumber": Key("SERIES", Series.series_number, Kind.INTEGER),
    "SeriesDescription": Key("SERIES", Series.description, Kind.TEXT),
    "BodyPartExamined": Key("SERIES", Series.body_part, Kind.TEXT),
    "NumberOfSeriesRelatedInstances": Key("SERIES", Series.num_instances, Kind.COUNT),
    "SOPInstanceUID": Key("IMAGE", Instance.sop_uid, Kind.UID),
    "SOPClassUID": Key("IMAGE", Instance.sop_class_uid, Kind.UID),
    "InstanceNumber": Key("IMAGE", Instance.instance_number, Kind.INTEGER),
    "NumberOfFrames": Key("IMAGE", Instance.frames, Kind.INTEGER),
    "Rows": Key("IMAGE", Instance.rows, Kind.INTEGER),
    "Columns": Key("IMAGE", Instance.columns, Kind.INTEGER),
    "BitsAllocated": Key("IMAGE", Instance.bits_allocated, Kind.INTEGER),
}


class QueryError(PacsError, ValueError):
    """The query cannot be run: an unknown level, or a key that cannot be matched as given."""


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v).strip() for v in value]
    return [part.strip() for part in str(value).split("\\")]


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _wildcard(column: Any, pattern: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        return column.op("GLOB")(pattern.replace("[", "[[]"))
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")


def _successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _range(column: Any, value: str, kind: Kind) -> ColumnElement[bool]:
    low, high = (part.strip() for part in value.split("-", 1))
    if kind is Kind.TIME:
        low, high = low.replace(":", ""), high.replace(":", "")
    conditions = [column != ""]
    if low:
        conditions.append(column >= low)
    if high:
        conditions.append(column < _successor(high) if kind is Kind.TIME else column <= high)
    return and_(*conditions)


def condition(key: Key, raw: Any, dialect: str) -> ColumnElement[bool] | None:
    """The SQL condition for one key's value, or None for universal matching."""
    values = [v for v in _values(raw) if v]
    if not values:
        return None
    if key.kind is Kind.UID:
        if not all(is_valid_uid(v) for v in values):
            return false()
        return key.column.in_(values)
    if key.kind is Kind.MODALITIES:
        literal = [v for v in values if not _has_wildcard(v)]
        matches = [_wildcard(_SERIES.modality, v, dialect) for v in values if _has_wildcard(v)]
        if literal:
            matches.append(_SERIES.modality.in_(literal))
        return exists().where(_SERIES.study_fk == Study.id, or_(*matches))
    value = "\\".join(values)
    if key.kind in (Kind.DATE, Kind.TIME):
        if "-" in value:
            return _range(key.column, value, key.kind)
        return key.column == (value.replace(":", "") if key.kind is Kind.TIME else value)
    if key.kind is Kind.INTEGER:
        try:
            return key.column == int(value)
        except ValueError:
            return false()
    if key.kind is Kind.PERSON_NAME:
        column = key.match_column
        value = normalise_name(value)
    elif key.kind is Kind.COUNT:
        raise QueryError(f"{key.level.lower()} key {value!r} can only be returned, not matched")
    else:
        column = key.column
    return _wildcard(column, value, dialect) if _has_wildcard(value) else column == value


_KIND_NAMES = {
    Kind.DATE: "date or date range",
    Kind.TIME: "time or time range",
    Kind.INTEGER: "number",
    Kind.UID: "UID",
}
_DATE = re.compile(r"\d{8}")
_TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")


def _well_formed(kind: Kind, value: str) -> bool:
    """Whether one value of a key of `kind` can be matched as it is written."""
    if kind in (Kind.DATE, Kind.TIME):
        pattern = _DATE if kind is Kind.DATE else _TIME
        bounds = [part.strip().replace(":", "") for part in value.split("-", 1)]
        return any(bounds) and all(not bound or pattern.fullmatch(bound) for bound in bounds)
    if kind is Kind.INTEGER:
        return value.lstrip("+-").isdigit()
    if kind is Kind.UID:
        return is_valid_uid(value)
    return True


def validate(level: str, keys: Mapping[str, Any]) -> None:
    """Raise :class:`QueryError` unless every key of `keys` with a value can be matched at `level`.

    Stricter than :func:`find`, which lets a malformed value match nothing as C-FIND
    expects: here an unsupported key, a key of a lower level, a count, a malformed date,
    time, number or UID, or more than one number is an error that names the key.
    """
    if level not in LEVELS:
        raise QueryError(f"unknown query level {level!r}")
    for keyword, raw in keys.items():
        given = [v for v in _values(raw) if v]
        if not given:
            continue
        key = KEYS.get(keyword)
        if key is None:
            raise QueryError(f"{keyword} is not an attribute the archive can match")
        if LEVELS.index(key.level) > LEVELS.index(level):
            below = f"{key.level.lower()} attribute"
            raise QueryError(f"{keyword} is a {below}, not a key of a {level.lower()} query")
        if key.kind is Kind.COUNT:
            raise QueryError(f"{keyword} can only be returned, not matched")
        if key.kind is Kind.INTEGER and len(given) > 1:
            raise QueryError(f"{keyword} takes one number")
        bad = [v for v in given if not _well_formed(key.kind, v)]
        if bad:
            raise QueryError(f"{keyword}: {bad[0]!r} is not a valid {_KIND_NAMES[key.kind]}")


def _base(level: str) -> Select[Any]:
    """The entities of `level` joined to those above them, less the trash (:mod:`storage.visibility`)."""
    query = select(Patient.id)
    if level == "PATIENT":
        query = query.where(live_patient())
    else:
        query = query.join(Study, Study.patient_fk == Patient.id).where(live_study())
    if level in ("SERIES", "IMAGE"):
        query = query.join(Series, Series.study_fk == Study.id)
    if level == "IMAGE":
        query = query.join(Instance, and_(Instance.series_fk == Series.id, Instance.is_current.is_(True)))
    return query


_ORDER: dict[str, list[Any]] = {
    "PATIENT": [Patient.name_norm, Patient.id],
    "STUDY": [Study.study_date.desc(), Study.study_time.desc(), Study.id.desc()],
    "SERIES": [Series.series_number, Series.id],
    "IMAGE": [Series.series_number, Series.id, Instance.instance_number, Instance.id],
}


def _format(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and "\\" in value:
        return value.split("\\")
    return value


def _statement(
    session: Session, level: str, keys: Mapping[str, Any], limit: int | None, offset: int
) -> tuple[Select[Any], list[str]]:
    """The SELECT of the entities at `level` that `keys` match, and the keywords of its columns
    after the first (the supported keys of `level` and the levels above it, in the order given)."""
    if level not in LEVELS:
        raise QueryError(f"unknown query level {level!r}")
    depth = LEVELS.index(level)
    dialect = session.get_bind().dialect.name
    returned = [kw for kw in keys if kw in KEYS and LEVELS.index(KEYS[kw].level) <= depth]
    query = _base(level).add_columns(*(KEYS[kw].column for kw in returned))
    patient_conditions = []
    for keyword in returned:
        cond = condition(KEYS[keyword], keys[keyword], dialect)
        if cond is None:
            continue
        if dialect == "postgresql" and level != "PATIENT" and KEYS[keyword].level == "PATIENT":
            patient_conditions.append(cond)
        else:
            query = query.where(cond)
    if patient_conditions:
        # Find the patients first: otherwise PostgreSQL may walk every study newest-first
        # looking for a rare name (OFFSET 0 keeps the subquery from being flattened).
        patients = select(Patient.id).where(*patient_conditions).offset(0)
        query = query.where(Patient.id.in_(patients))
    query = query.order_by(*_ORDER[level]).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return query, returned


def find_values(
    session: Session, level: str, keys: Mapping[str, Any], *, limit: int | None = None, offset: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield, per entity at `level` that `keys` (keyword: value; None or empty to return it
    only) match, the values the index holds for the supported keys of `level` and above, as
    the index keeps them (text with ``\\`` between multiple values, None for an unknown number)."""
    query, returned = _statement(session, level, keys, limit, offset)
    for row in session.execute(query):
        yield dict(zip(returned, row[1:], strict=True))


def find(
    session: Session,
    level: str,
    identifier: Dataset,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> Iterator[Dataset]:
    """Yield one response identifier per entity at `level` that matches `identifier`.

    Each response holds every key of `identifier` (filled when the archive knows it at
    `level` or above, empty otherwise), the Query/Retrieve Level and a UTF-8
    Specific Character Set.
    """
    keys = {elem.keyword: elem.value for elem in identifier if elem.keyword}
    skipped = {"QueryRetrieveLevel", "SpecificCharacterSet"}
    # Values come from the index, which holds only values read from valid datasets, so
    # the responses are built without pydicom's per-value validation (a third of the time).
    slots = [
        (elem.tag, dictionary_VR(elem.tag) if elem.VR in _AMBIGUOUS_VRS else elem.VR, elem.keyword)
        for elem in identifier
        if elem.keyword and elem.keyword not in skipped
    ]
    for found in find_values(session, level, keys, limit=limit, offset=offset):
        response = Dataset()
        response.SpecificCharacterSet = "ISO_IR 192"
        response.QueryRetrieveLevel = level
        for tag, vr, keyword in slots:
            value = _format(found[keyword]) if keyword in found else None
            response.add(DataElement(tag, vr, value, validation_mode=config.IGNORE))
        yield response
