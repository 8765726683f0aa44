"""Reading the identifying header of a DICOM Part 10 file without loading its pixel data.

:func:`read_header` parses everything up to Pixel Data with pydicom, then walks the rest
of the file element by element (seeking over values, never reading them) to prove that
nothing is truncated. The result is an :class:`InstanceHeader`: the attributes the index
stores, with every UID validated, so no value from a dataset can reach a file path or
a query unchecked.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_SOP_INSTANCE_UID = 0x00080018


_WANTED = [
    tag_for_keyword(keyword)
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
        "NumberOfFrames",
        "Rows",
        "Columns",
    )
]


class HeaderError(ValueError):
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


def _integer(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _check_complete(source: BinaryIO, size: int, transfer_syntax: str) -> None:
    """Walk the elements from the current position to the end; raise if any is cut short."""
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        while not inflater.eof and (chunk := source.read(1 << 20)):
            inflater.decompress(chunk, 1 << 16)
            while inflater.unconsumed_tail and not inflater.eof:
                inflater.decompress(inflater.unconsumed_tail, 1 << 16)
        if not inflater.eof:
            raise HeaderError("truncated: the deflated data set ends early")
        return
    little = transfer_syntax != ExplicitVRBigEndian
    explicit = transfer_syntax != ImplicitVRLittleEndian
    _Walker(source, size, little, explicit).elements(until=None)


class _Walker:
    """Seeks over DICOM elements, checking every length against the file size."""

    def __init__(self, source: BinaryIO, size: int, little: bool, explicit: bool) -> None:
        self.source, self.size, self.explicit = source, size, explicit
        self.u16 = struct.Struct("<H" if little else ">H")
        self.u32 = struct.Struct("<I" if little else ">I")

    def _read(self, count: int) -> bytes:
        data = self.source.read(count)
        if len(data) != count:
            raise HeaderError("truncated: the file ends inside an element header")
        return data

    def _tag(self) -> int:
        group, element = self.u16.unpack(self._read(2))[0], self.u16.unpack(self._read(2))[0]
        return (group << 16) | element

    def _skip(self, length: int, tag: int) -> None:
        position = self.source.tell()
        if position + length > self.size:
            raise HeaderError(
                f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes, "
                f"{self.size - position} remain"
            )
        self.source.seek(length, os.SEEK_CUR)

    def elements(self, until: int | None) -> None:
        """Skip elements until the delimiter tag `until` (or the end of the file for None)."""
        while True:
            if until is None and self.source.tell() >= self.size:
                return
            tag = self._tag()
            if tag == until:
                self._read(4)
                return
            if tag >> 16 == 0xFFFE:
                raise HeaderError(f"malformed: unexpected delimiter ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            if self.explicit:
                vr = self._read(2)
                if vr in _LONG_VRS:
                    self._read(2)
                    length = self.u32.unpack(self._read(4))[0]
                else:
                    length = self.u16.unpack(self._read(2))[0]
            else:
                length = self.u32.unpack(self._read(4))[0]
            if length == _UNDEFINED:
                self.items()
            else:
                self._skip(length, tag)

    def items(self) -> None:
        """Skip the items of an undefined-length sequence or encapsulated pixel data."""
        while True:
            tag = self._tag()
            length = self.u32.unpack(self._read(4))[0]
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM:
                raise HeaderError(f"malformed: expected an item, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            if length == _UNDEFINED:
                self.elements(until=_ITEM_END)
            else:
                self._skip(length, tag)


def read_header(path: Path) -> InstanceHeader:
    """Read and validate the header of the DICOM Part 10 file at `path`.

    Raises :class:`HeaderError` for anything that is not a complete Part 10 file with
    valid SOP Class, SOP Instance, Study and Series UIDs.
    """
    size = path.stat().st_size
    with open(path, "rb") as source:
        try:
            ds = pydicom.dcmread(source, stop_before_pixels=True, defer_size=4096, specific_tags=_WANTED)
        except InvalidDicomError as exc:
            raise HeaderError("not a DICOM Part 10 file (no 'DICM' prefix)") from exc
        except Exception as exc:  # pydicom raises many kinds on malformed input
            raise HeaderError(f"unreadable DICOM header: {type(exc).__name__}: {exc}"[:200]) from exc
        if source.tell() > size:
            raise HeaderError("truncated: an element runs past the end of the file")
        meta = ds.file_meta
        transfer_syntax = _uid(meta, "TransferSyntaxUID", "Transfer Syntax UID")
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            source.seek(_dataset_offset(source))
        _check_complete(source, size, transfer_syntax)
        try:
            return _header_from(ds, transfer_syntax)
        except HeaderError:
            raise
        except Exception as exc:  # value conversion of a malformed attribute
            raise HeaderError(f"undecodable attribute: {type(exc).__name__}: {exc}"[:200]) from exc


def sop_instance_uid(prefix: bytes, transfer_syntax: str) -> str:
    """The SOP Instance UID in the data set of a Part 10 file whose first bytes are `prefix`.

    `prefix` must reach past the attribute (it comes early, at (0008,0018)); reading
    stops there. A deflated data set is inflated as far as `prefix` goes. Raises
    :class:`HeaderError` if the UID cannot be read.
    """
    source = io.BytesIO(prefix)
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(prefix[_dataset_offset(source) :])
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
    )
