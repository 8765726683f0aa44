"""DICOM JSON (PS3.18 F.2) of a parsed header, written from its raw elements.

:func:`instance_dict` gives exactly what pydicom's ``Dataset.to_json_dict(BULK_THRESHOLD,
handler, suppress_invalid_tags=True)`` gives after every element was converted in pydicom's
default (warning) validation mode, with the bulk data URIs of :mod:`storage.instance_json`,
without building pydicom's DataElements: values pydicom keeps as ``RawDataElement`` are
converted by VR here (text decoded with :func:`pydicom.charset.decode_bytes` in the data
set's character set, numbers with :mod:`struct`). Anything unusual (a VR looked up in the
private dictionary, explicit UN, a PN with components or non-ASCII bytes, a number that does
not parse as pydicom would, a value already converted, a pydicom setting changed from its
default) is handed to pydicom element by element, inside the same rules, so the answer
never differs.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

from pydicom import config
from pydicom.charset import decode_bytes
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import TEXT_VR_DELIMS, VR_REGEXES

BULK_THRESHOLD = 1024
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# pydicom gives a URI, not inline Base64, above this many bytes (its threshold is of Base64 text).
_INLINE_MAX = BULK_THRESHOLD // 4 * 3
_SPLIT_VRS = frozenset({"AS", "CS", "DA", "DT", "TM"})  # pydicom's convert_string: whole value stripped
_TEXT_VRS = frozenset({"SH", "LO", "UC"})  # decoded, split, each value stripped
_SINGLE_VRS = frozenset({"ST", "LT", "UT"})  # decoded, never split
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_FAST_BINARY = BINARY_VRS - {"UN"}  # pydicom looks the VR of an explicit UN up again
_DS = re.compile(VR_REGEXES["DS"])
_IS = re.compile(VR_REGEXES["IS"])
# Specific Character Set (decoded in the default one) and the LUT descriptors pydicom adjusts.
_PYDICOM_ONLY = frozenset({0x00080005, 0x00281101, 0x00281102, 0x00281103, 0x00283002})


class _UnusualError(Exception):
    """A raw value that pydicom must convert itself."""


class _DroppedError(Exception):
    """An element pydicom's JSON leaves out (with the whole top-level element it is in)."""


def bulk_path(elem: DataElement, prefix: str) -> str:
    """The ``bulkdata/`` path of `elem` in the data set at `prefix`, as the metadata URIs name it.

    A binary value is named by its place (``{sequence}/{item}/{tag}``), so the bulk data
    endpoint finds it inside sequences too; any other value pydicom gives a URI for, by its tag.
    """
    tag = f"{elem.tag:08X}"
    return prefix + tag if elem.VR in BINARY_VRS else tag


def instance_dict(ds: Dataset, base: str) -> dict[str, Any]:
    """The DICOM JSON object of `ds`, its bulk data URIs `base` followed by :func:`bulk_path`."""
    return _dataset(ds, base, "", top=True, fast=_defaults())


def _defaults() -> bool:
    """Whether pydicom converts raw values with its default settings (else it converts them all)."""
    return not (
        config.data_element_callback
        or config.datetime_conversion
        or config.use_DS_numpy
        or config.use_IS_numpy
        or config.use_none_as_empty_text_VR_value
    )


def _dataset(ds: Dataset, base: str, prefix: str, *, top: bool, fast: bool) -> dict[str, Any]:
    """The JSON of `ds` (an item at `prefix` unless `top`), in pydicom's order of its elements."""
    found: dict[str, Any] = {}
    encodings = _encodings(ds) if fast else None
    for tag, raw in list(ds.items()):  # the values as read: RawDataElement until converted
        key = f"{tag:08X}"
        vr = _vr(raw) if encodings and isinstance(raw, RawDataElement) else None
        if vr is not None and vr != "SQ":
            try:
                found[key] = _raw_json(raw, vr, encodings, base, prefix)
                continue
            except _UnusualError:
                pass
        elem = ds[tag]
        try:
            converted = (
                _sequence(elem, base, prefix, fast) if elem.VR == "SQ" else _pydicom_json(elem, base, prefix)
            )
        except _DroppedError:
            if not top:
                raise
            continue
        found[key] = converted
    return found


def _encodings(ds: Dataset) -> list[str] | None:
    """The Python encodings pydicom decodes the text of `ds` with (None: it would look further)."""
    found = ds.original_character_set
    if not found:
        return None
    return [found] if isinstance(found, str) else list(found)


def _sequence(elem: DataElement, base: str, prefix: str, fast: bool) -> dict[str, Any]:
    """The JSON of the sequence `elem` of the data set at `prefix`, its items numbered from 1."""
    value = [
        _dataset(item, base, f"{prefix}{elem.tag:08X}/{number}/", top=False, fast=fast)
        for number, item in enumerate(elem.value, start=1)
    ]
    return {"vr": "SQ", "Value": value}


def _vr(raw: RawDataElement) -> str | None:
    """The VR pydicom would give `raw` when it is one converted here, else None."""
    if not raw.is_little_endian or raw.value is None or raw.tag in _PYDICOM_ONLY:
        return None
    vr = raw.VR
    if vr is None:
        if raw.tag.is_private or raw.tag not in DicomDictionary:
            return None
        vr = DicomDictionary[raw.tag][0]
    return str(vr) if vr != "UN" and len(vr) == 2 else None


def _pydicom_json(elem: DataElement, base: str, prefix: str) -> dict[str, Any]:
    """pydicom's JSON of `elem` under its strict reading rules; _DroppedError when that fails."""
    with config.strict_reading():
        try:
            return elem.to_json_dict(lambda found: base + bulk_path(found, prefix), BULK_THRESHOLD)
        except Exception as exc:
            raise _DroppedError from exc


def _raw_json(raw: RawDataElement, vr: str, encodings: Any, base: str, prefix: str) -> dict[str, Any]:
    """The JSON of a raw value of `vr` (not SQ); raises _UnusualError for what pydicom must convert."""
    data: bytes = raw.value
    if not data:
        return {"vr": vr}
    if vr in _FAST_BINARY:
        if len(data) > _INLINE_MAX:
            return {"vr": vr, "BulkDataURI": f"{base}{prefix}{raw.tag:08X}"}
        return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("utf-8")}
    values = _values(data, vr, encodings)
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def _values(data: bytes, vr: str, encodings: Any) -> list[Any]:
    """The JSON values of `data` (not empty) of `vr`; an empty list when pydicom has none."""
    if vr in _NUMBERS:
        code = _NUMBERS[vr]
        size = struct.calcsize("<" + code)
        if len(data) % size:
            raise _UnusualError
        return list(struct.unpack(f"<{len(data) // size}{code}", data))
    if vr in _TEXT_VRS:
        return _strings(
            [value.rstrip("\0 ") for value in decode_bytes(data, encodings, TEXT_VR_DELIMS).split("\\")]
        )
    if vr in _SINGLE_VRS:
        return _strings([decode_bytes(data, encodings, TEXT_VR_DELIMS).rstrip("\0 ")])
    text = data.decode("iso8859")
    if vr in _SPLIT_VRS:
        return _strings(text.rstrip(" \x00").split("\\"))
    if vr == "UI":
        return _strings(text.rstrip("\0 ").split("\\"))
    if vr == "AE":
        return _strings([value.strip() for value in text.split("\\")])
    if vr == "UR":
        return _strings([text.rstrip()])
    return _other(data, text, vr)


def _other(data: bytes, text: str, vr: str) -> list[Any]:
    """The JSON values of a DS, IS, PN or AT value (else _UnusualError)."""
    if vr == "DS":
        items = text.strip().rstrip(" \x00").split("\\")
        if not all(_DS.match(item) for item in items):
            raise _UnusualError
        return [float(item) for item in items]
    if vr == "IS":
        items = text.rstrip(" \x00").split("\\")
        if not all(_IS.match(item) for item in items):
            raise _UnusualError
        return [int(item) for item in items]
    if vr == "PN":
        stripped = data.rstrip(b"\x00 ")
        if not stripped.isascii() or b"=" in stripped or b"\x1b" in stripped:
            raise _UnusualError
        items = stripped.decode("ascii").split("\\")
        if len(items) > 1 and not all(items):
            raise _UnusualError
        return [{"Alphabetic": item} for item in _strings(items)]
    if vr == "AT":
        if len(data) % 4:
            raise _UnusualError
        pairs = struct.unpack(f"<{len(data) // 2}H", data)
        return [f"{group:04X}{element:04X}" for group, element in zip(pairs[::2], pairs[1::2], strict=True)]
    raise _UnusualError


def _strings(items: list[str]) -> list[str]:
    """pydicom's values of split text: none when it is one empty string, else all (empty ones too)."""
    return [] if items == [""] else items
