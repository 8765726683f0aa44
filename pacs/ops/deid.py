"""One data set de-identified by Table E.1-1 of PS3.15 (:mod:`pacs.ops.deid_profile`) and the options chosen.

:class:`Deidentifier` holds one copy's secret: every UID the table marks U (and every UID a
D gives a dummy for) becomes ``2.25.<HMAC-SHA256(secret, UID) as 128 bits>``, so the same
original UID gets the same new UID in every object of the copy (references included) and,
without the secret, which is never stored, nothing leads back. Each attribute is treated by
the action of its row, recursively through sequences; a combined code keeps the attribute
whenever the object had it (so an IOD's Type 1 and 2 attributes stay): with a dummy value
where D is allowed and the original had a value, emptied otherwise, a new UID for ``X/Z/U*``.
Private attributes and whole overlay planes (groups 60xx: their data may carry burned-in
text) are removed; dates and date-times the table does not list follow the dates' option
too (emptied, kept or shifted), and free text it does not list (LT, ST, UT, UC: the Text Value
of an SR's content items, whose tree a D keeps) is cleaned. Clean (C) of a text (Clean
Descriptors option) keeps it with every identifying value of the object, and every run of four
or more digits, replaced by ``*``; clean of a date or date-time (Retain Longitudinal Temporal
Information With Modified Dates) moves it by the copy's shift: 1 to 10 years back, a whole
number of days drawn from the secret, the same for every date of the copy so intervals stay;
times are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom import __version__ as pydicom_version
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from pacs.ops import deid_profile
from storage.errors import PacsError

TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "DA", "DT", "TM", "CS", "AS", "UR"})
# The values that identify (names, IDs, places, dates), whose words a clean takes out of descriptors.
_IDENTIFYING_VRS = frozenset({"PN", "LO", "SH", "AE", "DA", "DT"})
_DUMMY_TEXT = {"PN": "ANONYMOUS", "AE": "ANONYMOUS", "DA": "19000101", "TM": "000000"}
_DUMMY_TEXT |= {"DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0", "UR": ""}
# Free text the table does not list (an SR's Text Value above all) is cleaned, whatever the options.
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
_DIGITS = re.compile(r"\d{4,}")
_METHOD_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
}
_METHOD_NAMES = {
    "basic": "PS3.15 E.1 Basic Application Confidentiality Profile",
    "full_dates": "Retain Longitudinal Temporal Information Full Dates",
    "modified_dates": "Retain Longitudinal Temporal Information Modified Dates",
    "clean_descriptors": "Clean Descriptors",
}
_DEFAULT_NAME = "ANONYMOUS"


class OptionError(PacsError):
    """A replacement value the copy cannot carry."""


@dataclass(frozen=True)
class Options:
    """What the user chose: the options of the profile and the replacement patient name and ID."""

    retain_dates: bool = False
    shift_dates: bool = False
    clean_descriptors: bool = False
    patient_name: str = ""
    patient_id: str = ""

    def check(self) -> None:
        """Refuse both date options at once, and a replacement name or ID the copy cannot carry.

        A replacement is 1-64 printable ASCII characters without a backslash.
        """
        if self.retain_dates and self.shift_dates:
            raise OptionError("dates are either kept or shifted, not both")
        for label, value in (("patient name", self.patient_name), ("patient ID", self.patient_id)):
            if value and not (
                len(value) <= 64 and value.isascii() and value.isprintable() and "\\" not in value
            ):
                raise OptionError(
                    f"the replacement {label} must be at most 64 printable ASCII characters, "
                    "without a backslash"
                )

    def methods(self) -> list[str]:
        """The profile and the options applied, as keys of the method tables (``basic`` first)."""
        chosen = ["basic"]
        chosen += ["full_dates"] if self.retain_dates else []
        chosen += ["modified_dates"] if self.shift_dates else []
        chosen += ["clean_descriptors"] if self.clean_descriptors else []
        return chosen


def resolve(code: str, vr: str, has_value: bool) -> str:
    """The single action a (possibly combined) code takes for an attribute of `vr` present in the object."""
    if "/" not in code:
        return code
    if "U*" in code:
        return "U" if vr in ("UI", "SQ") and has_value else "Z"  # a sequence's items get new UIDs
    return "D" if "D" in code and has_value else "Z"


class Deidentifier:
    """The profile with the options of one copy, and the copy's secret for its new UIDs."""

    def __init__(self, options: Options, secret: bytes) -> None:
        self.options = options
        self._secret = secret
        self._actions, self._patterns = deid_profile.basic_actions()
        self._identifying = set(self._actions) - deid_profile.descriptor_tags()
        if options.retain_dates or options.shift_dates:
            kept = "K" if options.retain_dates else "C"
            self._actions.update(dict.fromkeys(deid_profile.temporal_tags(), kept))
        self.shift = -timedelta(days=365 + int.from_bytes(self._digest(b"date-shift")[:4], "big") % 3288)
        if options.clean_descriptors:
            self._actions.update(dict.fromkeys(deid_profile.descriptor_tags(), "C"))
        self.patient_name = options.patient_name or _DEFAULT_NAME
        self.patient_id = options.patient_id or "ANON" + self._digest(b"patient-id")[:4].hex().upper()

    def _digest(self, value: bytes) -> bytes:
        return hmac.new(self._secret, value, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The copy's UID for `original` (the same every time within this copy)."""
        return f"2.25.{int.from_bytes(self._digest(b'uid:' + original.encode())[:16], 'big')}"

    def action(self, tag: int) -> str | None:
        """The action of `tag` under the options, or None when the table does not list it."""
        found = self._actions.get(tag)
        if found is None:
            found = next((code for rule, code in self._patterns if tag & rule.mask == rule.value), None)
        return found

    def apply(self, ds: Dataset) -> Dataset:
        """De-identify `ds` in place (its file meta rebuilt) and return it."""
        identifiers = sorted(set(self._identifying_values(ds)), key=len, reverse=True)
        self._clean(ds, identifiers)
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        self._mark(ds)
        ds.file_meta = self._file_meta(ds)
        return ds

    def _identifying_values(self, ds: Dataset) -> Iterator[str]:
        """The text values of `ds` (nested too) that the basic profile does not keep: what a clean removes."""
        for tag in list(ds.keys()):
            if BaseTag(tag).is_private:
                continue
            elem = ds[tag]
            if elem.VR == "SQ":
                for item in elem.value:
                    yield from self._identifying_values(item)
            elif elem.VR in _IDENTIFYING_VRS and tag in self._identifying and elem.value:
                yield from _words(elem)

    def _clean(self, ds: Dataset, identifiers: list[str]) -> None:
        """Apply the table to every attribute of `ds` and of its sequences' items."""
        for tag in list(ds.keys()):
            if BaseTag(tag).is_private or _overlay(tag):
                del ds[tag]
                continue
            elem = ds[tag]
            code = self.action(tag)
            if code is None:
                code = self._unlisted(elem.VR)
            self._act(ds, elem, resolve(code, elem.VR, not elem.is_empty), identifiers)

    def _unlisted(self, vr: str) -> str:
        """The action on an attribute the table does not list (see the module docstring)."""
        if vr in _FREE_TEXT_VRS:
            return "C"
        if vr not in ("DA", "DT"):
            return "K"
        return "K" if self.options.retain_dates else "C" if self.options.shift_dates else "Z"

    def _act(self, ds: Dataset, elem: DataElement, action: str, identifiers: list[str]) -> None:
        """Carry out `action` (D, Z, X, K, C or U) on `elem` of `ds`."""
        if action == "X":
            del ds[elem.tag]
        elif elem.VR == "SQ":
            if action == "Z":
                elem.value = Sequence()
            else:
                for item in elem.value:
                    self._clean(item, identifiers)
        elif action == "Z":
            elem.value = elem.empty_value
        elif action == "U" or (action == "D" and elem.VR == "UI"):
            elem.value = self._new_uids(elem)
        elif action == "D":
            elem.value = _dummy(elem.VR)
        elif action == "C" and elem.VR in ("DA", "DT"):
            elem.value = _shifted(elem, self.shift)
        elif action == "C" and elem.VR in TEXT_VRS and elem.VR != "TM":
            elem.value = _cleaned(elem, identifiers)

    def _new_uids(self, elem: DataElement) -> str | list[str]:
        """The copy's UIDs for the value(s) of a UI element."""
        if elem.VM > 1:
            return [self.uid(str(value)) for value in elem.value]
        return self.uid(str(elem.value)) if elem.value else ""

    def _mark(self, ds: Dataset) -> None:
        """Say in `ds` that it was de-identified, and how (PS3.15 E.1.1, CID 7050)."""
        ds.PatientIdentityRemoved = "YES"
        methods = self.options.methods()
        ds.DeidentificationMethod = [_METHOD_NAMES[name] for name in methods]
        codes = Sequence()
        for name in methods:
            item = Dataset()
            item.CodeValue, item.CodeMeaning = _METHOD_CODES[name]
            item.CodingSchemeDesignator = "DCM"
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = codes
        ds.LongitudinalTemporalInformationModified = (
            "UNMODIFIED"
            if self.options.retain_dates
            else "MODIFIED"
            if self.options.shift_dates
            else "REMOVED"
        )

    def _file_meta(self, ds: Dataset) -> FileMetaDataset:
        """A new file meta for `ds`: its classes and transfer syntax kept, nothing else of the original's."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"PYDICOM {pydicom_version}"[:16]
        return meta


def _overlay(tag: int) -> bool:
    """Whether `tag` belongs to an overlay plane (the even groups 6000-601E)."""
    group = tag >> 16
    return 0x6000 <= group <= 0x601E and not group & 1


def _words(elem: DataElement) -> Iterator[str]:
    """The parts of a text value worth cleaning out of descriptors: whole values and name components."""
    values = elem.value if elem.VM > 1 else [elem.value]
    for value in values:
        text = str(value).strip()
        if len(text) >= 3:
            yield text
        for part in re.split(r"[\^=\s,]+", text):
            if len(part) >= 3:
                yield part


def _cleaned(elem: DataElement, identifiers: list[str]) -> str | list[str]:
    """The text value(s) of `elem` with every identifying value and long digit run replaced by ``*``."""

    def clean(text: str) -> str:
        for value in identifiers:
            text = re.sub(re.escape(value), "*", text, flags=re.IGNORECASE)
        return _DIGITS.sub("*", text)

    if elem.VM > 1:
        return [clean(str(value)) for value in elem.value]
    return clean(str(elem.value)) if elem.value else elem.value


def _shifted(elem: DataElement, shift: timedelta) -> str | list[str]:
    """The date (DA) or date-time (DT) value(s) of `elem` moved by `shift`; emptied if not a full date."""

    def move(value: str) -> str:
        try:
            day = datetime.strptime(value[:8], "%Y%m%d") + shift
        except ValueError:
            return ""
        return day.strftime("%Y%m%d") + value[8:]

    if elem.VM > 1:
        return [move(str(value)) for value in elem.value]
    return move(str(elem.value)) if elem.value else ""


def _dummy(vr: str) -> object:
    """A dummy value of `vr` that says nothing about anyone."""
    if vr in _BINARY_VRS:
        return b"\x00\x00"
    if vr in _NUMBER_VRS:
        return 0
    return _DUMMY_TEXT.get(vr, "ANONYMIZED")
