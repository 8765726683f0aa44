"""The values a correction may set, checked against their Value Representations before anything is written.

Each editable attribute has its VR's rules (PS3.5 6.2): PN at most 64 characters per
component group and 5 components, LO 64 characters, SH 16, DA a real date ``YYYYMMDD``,
TM ``HH[MM[SS[.F{1,6}]]]``, Patient's Sex one of M, F, O. None may hold a backslash (it
would make several values) or a control character. An empty value empties the attribute.
A bad value is a one-line :class:`CorrectionValueError` naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from storage.errors import PacsError
from storage.versions import PATIENT_KEYWORDS, STUDY_KEYWORDS

_TIME = re.compile(r"(?:[01]\d|2[0-3])(?:[0-5]\d(?:(?:[0-5]\d|60)(?:\.\d{1,6})?)?)?")
_DATE = re.compile(r"\d{8}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class CorrectionValueError(PacsError):
    """A value a correction cannot set; the message names the field."""


@dataclass(frozen=True)
class Field:
    """An editable attribute: its keyword, VR, label and the most characters it holds."""

    keyword: str
    vr: str
    label: str
    limit: int

    @property
    def rule(self) -> str:
        """The rule a form shows beside the field."""
        return {
            "PN": f"family^given^middle^prefix^suffix, at most {self.limit} characters",
            "DA": "a date, YYYYMMDD",
            "TM": "a time, HHMMSS",
            "CS": "M, F or O",
        }.get(self.vr, f"at most {self.limit} characters")


FIELDS: dict[str, Field] = {
    field.keyword: field
    for field in (
        Field("PatientName", "PN", "Patient's name", 64),
        Field("PatientID", "LO", "Patient ID", 64),
        Field("IssuerOfPatientID", "LO", "Issuer of Patient ID", 64),
        Field("PatientBirthDate", "DA", "Birth date", 8),
        Field("PatientSex", "CS", "Sex", 1),
        Field("StudyDescription", "LO", "Study description", 64),
        Field("AccessionNumber", "SH", "Accession number", 16),
        Field("ReferringPhysicianName", "PN", "Referring physician", 64),
        Field("StudyDate", "DA", "Study date", 8),
        Field("StudyTime", "TM", "Study time", 16),
        Field("StudyID", "SH", "Study ID", 16),
    )
}
assert set(FIELDS) == set(PATIENT_KEYWORDS + STUDY_KEYWORDS)


def _problem(field: Field, value: str) -> str | None:
    """Why `value` cannot be the value of `field`, or None."""
    if _CONTROL.search(value):
        return "must not hold a backslash or control characters"
    if field.vr == "PN":
        groups = value.split("=")
        if len(groups) > 3 or any(len(group) > field.limit for group in groups):
            return f"is longer than {field.limit} characters"
        if any(group.count("^") > 4 for group in groups):
            return "has more than 5 components (family^given^middle^prefix^suffix)"
        return None
    if field.vr == "DA" and value:
        return None if _DATE.fullmatch(value) and _real_date(value) else "is not a date (YYYYMMDD)"
    if field.vr == "TM" and value:
        return None if _TIME.fullmatch(value) else "is not a time (HHMMSS)"
    if len(value) > field.limit:
        return f"is longer than {field.limit} characters"
    if field.vr == "CS" and value not in {"", "M", "F", "O"}:
        return "must be M, F or O"
    return None


def _real_date(value: str) -> bool:
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return False
    return True


def checked(values: dict[str, str]) -> dict[str, str]:
    """`values` (keyword: value) stripped of surrounding spaces; raise for an unknown field or a bad value."""
    if not values:
        raise CorrectionValueError("nothing to change: give at least one attribute")
    clean: dict[str, str] = {}
    for keyword, value in values.items():
        field = FIELDS.get(keyword)
        if field is None:
            known = ", ".join(FIELDS)
            raise CorrectionValueError(f"{keyword} cannot be changed (the fields that can: {known})")
        clean[keyword] = value.strip()
        problem = _problem(field, clean[keyword])
        if problem is not None:
            raise CorrectionValueError(f"{field.label} ({keyword}) {problem}")
    return clean


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``Keyword=Value`` strings as a dict; raise for one without ``=``."""
    values: dict[str, str] = {}
    for assignment in assignments:
        keyword, sep, value = assignment.partition("=")
        if not sep:
            raise CorrectionValueError(f"{assignment!r} is not Keyword=Value")
        values[keyword.strip()] = value
    return values
