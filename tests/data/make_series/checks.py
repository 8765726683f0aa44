"""Validation of the generators' arguments, and the Decimal String formatting they share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pydicom.uid import RE_VALID_UID, UID, generate_uid

MAX_DIMENSION = 4096
MAX_COUNT = 100_000
#: VR length limits for the free-text identifying parameters.
_TEXT_LIMITS = {"patient_name": 64, "patient_id": 64, "accession": 16}


def fmt_ds(value: float) -> str:
    """Return `value` formatted as a valid Decimal String (DS).

    At most 16 characters: ten significant digits, which is exact for typical spacings
    such as ``"0.68359375"`` while dropping the noise of floating point arithmetic
    (``0.1 + 0.2`` gives ``"0.3"``).
    """
    text = f"{value:.10g}"
    return "0" if text == "-0" else text


def check_positive(name: str, value: int, maximum: int) -> None:
    """Raise TypeError if `value` is not an ``int``, ValueError if it is not in ``[1, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int, not {type(value).__name__}")
    if not 1 <= value <= maximum:
        raise ValueError(f"'{name}' must be between 1 and {maximum}, got {value}")


def check_sizes(count_name: str, count: int, rows: int, columns: int) -> None:
    """Check the number of slices or frames, then the image matrix size."""
    check_positive(count_name, count, MAX_COUNT)
    check_positive("rows", rows, MAX_DIMENSION)
    check_positive("columns", columns, MAX_DIMENSION)


def check_uid(name: str, value: str | None) -> UID:
    """Return `value` as a :class:`~pydicom.uid.UID`, generating a fresh one if ``None``.

    Raises ValueError if `value` is not a valid UID (digits and dots, at most 64 chars).
    """
    if value is None:
        return generate_uid()
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"'{name}' is not a valid UID: {value!r}")
    if re.fullmatch(RE_VALID_UID, value) is None:
        raise ValueError(f"'{name}' is not a valid UID: {value!r}")
    return UID(value)


def check_text(name: str, value: str) -> None:
    """Raise ValueError if a free-text identifying value (a key of ``_TEXT_LIMITS``) is unsuitable.

    It must be non-empty, fit its VR and contain neither a backslash (the DICOM
    multi-value delimiter) nor control characters.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{name}' must be a non-empty str")
    if len(value) > _TEXT_LIMITS[name]:
        raise ValueError(f"'{name}' is longer than {_TEXT_LIMITS[name]} characters")
    if "\\" in value or any(ord(ch) < 0x20 for ch in value):
        raise ValueError(f"'{name}' contains a backslash or control character")


@dataclass(frozen=True)
class Subject:
    """The keyword arguments every generator takes: who and which study the series is of.

    ``study_uid`` and ``series_uid`` are ``None`` to have them generated; ``seed`` seeds
    the pixel data's random number generator.
    """

    patient_name: str
    patient_id: str
    study_uid: str | None
    series_uid: str | None
    study_date: str
    accession: str
    seed: int

    def check(self) -> None:
        """Raise ValueError if a value is invalid (TypeError if `seed` is not an ``int``)."""
        check_text("patient_name", self.patient_name)
        check_text("patient_id", self.patient_id)
        check_text("accession", self.accession)
        try:
            if len(self.study_date) != 8:
                raise ValueError
            datetime.strptime(self.study_date, "%Y%m%d")
        except (TypeError, ValueError):
            raise ValueError(f"'study_date' must be a valid YYYYMMDD date, got {self.study_date!r}") from None
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError("'seed' must be an int")
        if self.seed < 0:
            raise ValueError("'seed' must be non-negative")
