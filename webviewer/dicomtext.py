"""DICOM values as people read them: dates, times, person names, codes, numbers with units.

Pure functions on the values pydicom gives; a value that does not have the expected form is
shown as it is rather than refused, since a report is better shown oddly than not at all.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from webviewer import people

_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d+)?$")
_DATETIME = re.compile(r"^(\d{8})(\d{2,6}(?:\.\d+)?)?([+-]\d{4})?$")
_DECIMAL = re.compile(r"^[+-]?\d+\.\d*$")
UCUM = "UCUM"
# UCUM codes that are not a unit a reader would recognise: the code meaning says it better.
_UCUM_NO_UNIT = "1"


def text(value: Any) -> str:
    """Any element value as one line of text ("" for None); multiple values joined by ", "."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return ", ".join(text(item) for item in value)
    if isinstance(value, PersonName):
        return person_name(value)
    return str(value).strip()


def date(value: Any) -> str:
    """A DA value ``YYYYMMDD`` as ``YYYY-MM-DD``."""
    raw = text(value)
    match = _DATE.match(raw)
    return "-".join(match.groups()) if match else raw


def time(value: Any) -> str:
    """A TM value ``HHMMSS.frac`` as ``HH:MM:SS`` (or ``HH:MM``, ``HH`` if that is all it says)."""
    raw = text(value)
    match = _TIME.match(raw)
    if not match:
        return raw
    return ":".join(part for part in match.groups()[:3] if part)


def datetime(value: Any) -> str:
    """A DT value as ``YYYY-MM-DD HH:MM:SS`` (with its UTC offset, if it has one)."""
    raw = text(value)
    match = _DATETIME.match(raw)
    if not match:
        return raw
    day, clock, offset = match.groups()
    shown = " ".join(part for part in (date(day), time(clock) if clock else "") if part)
    return f"{shown} {offset}" if offset else shown


def date_and_time(day: Any, clock: Any) -> str:
    """A DA and a TM value (either may be empty) as one text."""
    return " ".join(part for part in (date(day), time(clock)) if part)


def person_name(value: Any) -> str:
    """A PN value as people read it (:func:`webviewer.people.person_name`: ``DOE, Jane``)."""
    raw = str(value) if isinstance(value, PersonName) else text(value)
    return people.person_name(raw).name


def code_meaning(item: Dataset | None) -> str:
    """The Code Meaning of a code sequence item (its code value if it has no meaning)."""
    if item is None:
        return ""
    return text(item.get("CodeMeaning")) or text(item.get("CodeValue"))


def first_item(ds: Dataset, keyword: str) -> Dataset | None:
    """The first item of the sequence `keyword` of `ds`, or None."""
    sequence = ds.get(keyword)
    return sequence[0] if sequence else None


def unit(code: Dataset | None) -> str:
    """A measurement unit: a UCUM code as it is written (``mm``), others by their meaning."""
    if code is None:
        return ""
    value = text(code.get("CodeValue"))
    if text(code.get("CodingSchemeDesignator")) == UCUM and value and not value.startswith(("{", "[")):
        return "" if value == _UCUM_NO_UNIT else value
    return code_meaning(code)


def number(value: Any) -> str:
    """A DS or FD value without trailing zeros in decimals (``12.50`` as ``12.5``, ``3.0`` as ``3``)."""
    raw = text(value)
    if _DECIMAL.match(raw):
        raw = raw.rstrip("0").rstrip(".")
    return raw


def sop_class_name(uid: Any) -> str:
    """The name of a SOP Class from pydicom's UID dictionary ("Unknown SOP Class (UID)" if unknown)."""
    raw = text(uid)
    name = UID(raw).name if raw else ""
    return name if name and name != raw else f"Unknown SOP Class ({raw or 'none'})"
