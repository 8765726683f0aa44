"""The identifying header of a DICOM object: the attributes the index keeps, validated.

:func:`header_from` turns the raw top-level elements that :mod:`storage.walker`
collected into an :class:`InstanceHeader`, converting values with pydicom and checking
every UID, so no value from a data set can reach a file path or a query unchecked.
:func:`sop_instance_uid` reads just the SOP Instance UID from the first bytes of a
stored object, for ``verify``.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass, replace
from typing import BinaryIO

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian

from storage.errors import PacsError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TIMEZONE_OFFSET = re.compile(r"[+-]\d{4}")
_SOP_INSTANCE_UID = 0x00080018


WANTED_TAGS: list[int] = [
    tag_for_keyword(keyword)  # type: ignore[misc]
    for keyword in (
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "PatientID",
        "IssuerOfPatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "PatientAge",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "BodyPartExamined",
        "InstanceNumber",
        "SamplesPerPixel",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "BitsAllocated",
        "TimezoneOffsetFromUTC",
    )
]


class HeaderError(PacsError, ValueError):
    """The file is not a DICOM object we can store; the message says why."""


@dataclass(frozen=True)
class InstanceHeader:
    """The attributes of one SOP instance that the index keeps."""

    sop_class_uid: str
    sop_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession: str
    study_id: str
    study_description: str
    referring_name: str
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    instance_number: int | None
    frames: int
    rows: int | None
    columns: int | None
    pixel_data_short: bool = False
    patient_age: str = ""
    bits_allocated: int | None = None
    # Timezone Offset From UTC ("+0100"), None when absent or not of the form &ZZXX.
    timezone_offset: str | None = None


def is_valid_uid(value: str) -> bool:
    """Whether `value` is a syntactically valid UID: digits and dots, at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


def normalise_name(value: str) -> str:
    """The form person names are matched in: upper case, trailing empty components dropped."""
    groups = [group.rstrip(" ^") for group in value.upper().split("=")]
    return "=".join(groups).rstrip("=")


def _uid(ds: Dataset, keyword: str, label: str) -> str:
    value = str(ds.get(keyword, "") or "").strip().rstrip("\0")
    if not value:
        raise HeaderError(f"missing {label}")
    if not is_valid_uid(value):
        raise HeaderError(f"invalid {label} {value[:80]!r}")
    return value


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:limit]


def _timezone_offset(ds: Dataset) -> str | None:
    """Timezone Offset From UTC as written (``+0100``), or None when absent or malformed."""
    value = _text(ds, "TimezoneOffsetFromUTC", 16)
    return value if _TIMEZONE_OFFSET.fullmatch(value) else None


def _integer(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


MAX_INFLATED_PREFIX = 1 << 20


def sop_instance_uid(prefix: bytes, transfer_syntax: str) -> str:
    """The SOP Instance UID in the data set of a Part 10 file whose first bytes are `prefix`.

    `prefix` must reach past the attribute (it comes early, at (0008,0018)); reading
    stops there. A deflated data set is inflated as far as `prefix` goes, and at most
    :data:`MAX_INFLATED_PREFIX` bytes (a deflate bomb stops there). Raises
    :class:`HeaderError` if the UID cannot be read.
    """
    source = io.BytesIO(prefix)
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            inflated = inflater.decompress(prefix[_dataset_offset(source) :], MAX_INFLATED_PREFIX)
            source = io.BytesIO(inflated)
            ds = read_dataset(source, is_implicit_VR=False, is_little_endian=True, stop_when=_after_sop_uid)
        else:
            ds = read_partial(source, stop_when=_after_sop_uid)
        return _uid(ds, "SOPInstanceUID", "SOP Instance UID")
    except HeaderError:
        raise
    except Exception as exc:  # pydicom raises many kinds on malformed or cut-off input
        raise HeaderError(f"unreadable DICOM header: {type(exc).__name__}: {exc}"[:200]) from exc


def _after_sop_uid(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag > _SOP_INSTANCE_UID


def _dataset_offset(source: BinaryIO) -> int:
    """Offset of the first byte after the file meta group of an open Part 10 file."""
    source.seek(128 + 4)
    group_length = source.read(12)
    length = struct.unpack("<I", group_length[8:12])[0]
    return 128 + 4 + 12 + length


def header_from(
    elements: dict[int, RawDataElement],
    transfer_syntax: str,
    *,
    implicit: bool,
    little_endian: bool,
    pixel_data_length: int | None,
) -> InstanceHeader:
    """The validated header of an object whose top-level raw `elements` were collected.

    `pixel_data_length` is the length of native (not encapsulated) Pixel Data, if any;
    the header says whether it is shorter than Rows x Columns x Samples x Bits x Frames.
    Raises :class:`HeaderError` for a missing or invalid UID or an undecodable value.
    """
    ds = Dataset(dict(elements))
    ds.set_original_encoding(implicit, little_endian)
    try:
        header = _header_from(ds, transfer_syntax)
    except HeaderError:
        raise
    except Exception as exc:  # value conversion of a malformed attribute
        raise HeaderError(f"undecodable attribute: {type(exc).__name__}: {exc}"[:200]) from exc
    if pixel_data_length is not None:
        expected = _expected_pixel_bytes(ds, header.frames)
        if expected is not None and pixel_data_length < expected:
            return replace(header, pixel_data_short=True)
    return header


def _expected_pixel_bytes(ds: Dataset, frames: int) -> int | None:
    """Bytes of native Pixel Data the image attributes call for, or None if they are incomplete."""
    sizes = [_integer(ds, k) for k in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated")]
    if any(value is None or value <= 0 for value in sizes):
        return None
    rows, columns, samples, bits = (int(v) for v in sizes if v is not None)
    return (rows * columns * samples * bits * frames + 7) // 8


def _header_from(ds: Dataset, transfer_syntax: str) -> InstanceHeader:
    return InstanceHeader(
        sop_class_uid=_uid(ds, "SOPClassUID", "SOP Class UID"),
        sop_uid=_uid(ds, "SOPInstanceUID", "SOP Instance UID"),
        study_uid=_uid(ds, "StudyInstanceUID", "Study Instance UID"),
        series_uid=_uid(ds, "SeriesInstanceUID", "Series Instance UID"),
        transfer_syntax=transfer_syntax,
        patient_id=_text(ds, "PatientID", 64),
        issuer=_text(ds, "IssuerOfPatientID", 64),
        patient_name=_text(ds, "PatientName", 324),
        birth_date=_text(ds, "PatientBirthDate", 8),
        sex=_text(ds, "PatientSex", 16),
        study_date=_text(ds, "StudyDate", 8),
        study_time=_text(ds, "StudyTime", 16),
        accession=_text(ds, "AccessionNumber", 16),
        study_id=_text(ds, "StudyID", 16),
        study_description=_text(ds, "StudyDescription", 64),
        referring_name=_text(ds, "ReferringPhysicianName", 324),
        modality=_text(ds, "Modality", 16),
        series_number=_integer(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription", 64),
        body_part=_text(ds, "BodyPartExamined", 16),
        instance_number=_integer(ds, "InstanceNumber"),
        frames=_integer(ds, "NumberOfFrames") or 1,
        rows=_integer(ds, "Rows"),
        columns=_integer(ds, "Columns"),
        patient_age=_text(ds, "PatientAge", 4),
        bits_allocated=_integer(ds, "BitsAllocated"),
        timezone_offset=_timezone_offset(ds),
    )
