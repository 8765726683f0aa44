"""How the study list shows people and moments: names as people read them, sex, age, ISO dates and times.

A DICOM person name (PS3.5 6.2) has up to three component groups separated by ``=``
(alphabetic, ideographic, phonetic), each of up to five components separated by ``^``
(family, given, middle, prefix, suffix). The alphabetic group reads "DOE, Dr Jane Mary,
Jr": the family name as stored, a comma, then prefix, given and middle names, and the
suffix after a comma; components stored in capitals are shown capitalised, except the
family name. An ideographic or phonetic group reads family name then the others,
separated by spaces ("山田 太郎"). The first group that is not empty is the name; the
others are shown beside it.

Dates and times go to the page as ISO 8601 values in ``<time datetime=...>`` elements,
which the page's module formats in the browser's locale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_AGE = re.compile(r"^(\d{3})([DWMY])$")
_AGE_UNITS = {"D": "d", "W": "wk", "M": "mo", "Y": "y"}
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.\d{1,6})?$")
SEXES = {"M": "male", "F": "female", "O": "other"}


@dataclass(frozen=True)
class ShownName:
    """A person name as shown: the name itself and its other groups (ideographic, phonetic)."""

    name: str
    others: tuple[str, ...] = ()


def _readable(component: str) -> str:
    """A name component in capitals shown capitalised ("JANE" -> "Jane"); others as stored."""
    return component.title() if component.isupper() else component


def _alphabetic(components: list[str]) -> str:
    family, given, middle, prefix, suffix = (components + [""] * 5)[:5]
    forenames = " ".join(_readable(part) for part in (prefix, given, middle) if part)
    shown = ", ".join(part for part in (family, forenames) if part)
    return f"{shown}, {_readable(suffix)}" if suffix and shown else shown or _readable(suffix)


def _group(text: str, alphabetic: bool) -> str:
    components = [part.strip() for part in text.split("^")]
    if alphabetic:
        return _alphabetic(components)
    family, given, middle, prefix, suffix = (components + [""] * 5)[:5]
    return " ".join(part for part in (prefix, family, given, middle, suffix) if part)


def person_name(value: str) -> ShownName:
    """`value` (a DICOM PN value as stored) as people read it; an empty name for an empty value."""
    groups = [_group(text, index == 0) for index, text in enumerate(value.split("=")[:3])]
    shown = [group for group in groups if group]
    if not shown:
        return ShownName("")
    return ShownName(shown[0], tuple(shown[1:]))


def iso_date(value: str) -> str:
    """A DICOM date (``YYYYMMDD``) as ``YYYY-MM-DD``, or "" if it is not a valid date."""
    if len(value) != 8 or not value.isdigit():
        return ""
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:])).isoformat()
    except ValueError:
        return ""


def iso_time(value: str) -> str:
    """A DICOM time (``HH``, ``HHMM``, ``HHMMSS``, fractions dropped) as ``HH:MM:SS``, or ""."""
    match = _TIME.match(value.replace(":", ""))
    if match is None:
        return ""
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    if hours > 23 or minutes > 59 or seconds > 60:
        return ""
    return f"{hours:02d}:{minutes:02d}:{min(seconds, 59):02d}"


def _between(born: date, then: date) -> str:
    """The age at `then` of someone born on `born`, in years from two years on, else months or days."""
    years = then.year - born.year - ((then.month, then.day) < (born.month, born.day))
    if years >= 2:
        return f"{years} y"
    months = (then.year - born.year) * 12 + then.month - born.month - (then.day < born.day)
    if months >= 1:
        return f"{months} mo"
    return f"{(then - born).days} d"


def age(patient_age: str, birth_date: str, study_date: str) -> str:
    """The patient's age at the study: its Patient's Age ("052Y" -> "52 y") when recorded, else
    worked out from the birth and study dates; "" when neither tells."""
    match = _AGE.match(patient_age.strip())
    if match is not None:
        return f"{int(match.group(1))} {_AGE_UNITS[match.group(2)]}"
    born, then = iso_date(birth_date), iso_date(study_date)
    if not born or not then or then < born:
        return ""
    return _between(date.fromisoformat(born), date.fromisoformat(then))
