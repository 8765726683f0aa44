"""A Structured Report's content tree as a readable report (PS3.3 C.17: SR Document General and Content).

:func:`read_report` turns a Basic Text, Enhanced or Comprehensive SR, a Key Object Selection
document or any other object with an SR document content tree into a :class:`Report`: its
title (the root's Concept Name), its completion, verification and preliminary flags, its
observers and dates, and the content items in document order. A ``CONTAINER`` becomes a
section with a heading; every other item has a name and a value as text (``NUM``: the number
and its unit, ``CODE``: the code meaning, ``IMAGE``: the SOP Class of the image and frames).

The tree comes from the object, so it is bounded: nesting deeper than :data:`MAX_DEPTH` or
more than :data:`MAX_ITEMS` items in all are not shown, and the report says how many were left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from webviewer import dicomtext
from webviewer.dicomtext import code_meaning, first_item, text

MAX_DEPTH = 24
MAX_ITEMS = 5000
CONTAINER = "CONTAINER"
_REFERENCES = ("IMAGE", "COMPOSITE", "WAVEFORM")


@dataclass(frozen=True)
class ContentItem:
    """One content item: a section (``CONTAINER``) or a named value, with its own children."""

    value_type: str
    name: str
    value: str = ""
    relationship: str = ""
    children: tuple[ContentItem, ...] = ()
    # For IMAGE, COMPOSITE and WAVEFORM items: the SOP Instance UID they point to.
    sop_uid: str = ""

    @property
    def is_section(self) -> bool:
        return self.value_type == CONTAINER

    @property
    def css_kind(self) -> str:
        """The value type as a CSS class suffix (``num``, ``text``, ``by-reference``, ...)."""
        return self.value_type.lower().replace(" ", "-") or "by-reference"


@dataclass(frozen=True)
class Observer:
    """Someone who verified or wrote the document."""

    role: str
    name: str
    organization: str = ""
    when: str = ""


@dataclass(frozen=True)
class Report:
    """What a reader needs of an SR document, in the order it is shown."""

    title: str
    completion: str
    verification: str
    preliminary: str
    observers: tuple[Observer, ...]
    content_date: str
    observation_date: str
    items: tuple[ContentItem, ...]
    left_out: int = 0
    sop_uids: frozenset[str] = field(default_factory=frozenset)


class _Budget:
    """How many more items may be read, and how many were not."""

    def __init__(self, limit: int) -> None:
        self.remaining = limit
        self.left_out = 0

    def take(self) -> bool:
        if self.remaining <= 0:
            self.left_out += 1
            return False
        self.remaining -= 1
        return True


def is_sr_document(ds: Dataset) -> bool:
    """Whether `ds` has an SR document content tree (a root ``CONTAINER`` with a concept name)."""
    return text(ds.get("ValueType")) == CONTAINER and "ConceptNameCodeSequence" in ds


def read_report(ds: Dataset) -> Report:
    """The report of the SR document `ds` (see :func:`is_sr_document`)."""
    budget = _Budget(MAX_ITEMS)
    items = _children(ds, 1, budget)
    return Report(
        title=code_meaning(first_item(ds, "ConceptNameCodeSequence")) or "Structured report",
        completion=_flag(ds, "CompletionFlag", "CompletionFlagDescription"),
        verification=_flag(ds, "VerificationFlag"),
        preliminary=_flag(ds, "PreliminaryFlag"),
        observers=_observers(ds),
        content_date=dicomtext.date_and_time(ds.get("ContentDate"), ds.get("ContentTime")),
        observation_date=dicomtext.datetime(ds.get("ObservationDateTime")),
        items=items,
        left_out=budget.left_out,
        sop_uids=frozenset(_references(items)),
    )


def _flag(ds: Dataset, keyword: str, description: str | None = None) -> str:
    """A flag such as ``COMPLETE`` as ``Complete`` (with its description, if any)."""
    value = text(ds.get(keyword)).capitalize()
    detail = text(ds.get(description)) if description else ""
    return f"{value} ({detail})" if value and detail else value


def _observers(ds: Dataset) -> tuple[Observer, ...]:
    verifiers = [
        Observer(
            "Verified by",
            dicomtext.person_name(item.get("VerifyingObserverName", "")),
            text(item.get("VerifyingOrganization")),
            dicomtext.datetime(item.get("VerificationDateTime")),
        )
        for item in ds.get("VerifyingObserverSequence", [])
    ]
    authors = [
        Observer(
            "Author",
            dicomtext.person_name(item.get("PersonName", "")),
            text(item.get("InstitutionName")),
        )
        for item in ds.get("AuthorObserverSequence", [])
    ]
    return tuple(observer for observer in (*authors, *verifiers) if observer.name)


def _children(ds: Dataset, depth: int, budget: _Budget) -> tuple[ContentItem, ...]:
    """The content items of `ds`'s Content Sequence, `depth` levels below the root."""
    sequence = ds.get("ContentSequence", [])
    if depth > MAX_DEPTH:
        budget.left_out += _count(sequence)
        return ()
    items = []
    for item in sequence:
        if not budget.take():
            budget.left_out += _count(item.get("ContentSequence", []))
            continue
        items.append(_item(item, depth, budget))
    return tuple(items)


def _count(sequence: list[Dataset]) -> int:
    """How many items `sequence` holds, nested ones included (bounded by the budget's limit)."""
    total, stack = 0, list(sequence)
    while stack and total < MAX_ITEMS:
        total += 1
        stack.extend(stack.pop().get("ContentSequence", []))
    return total


def _item(item: Dataset, depth: int, budget: _Budget) -> ContentItem:
    value_type = text(item.get("ValueType"))
    reference = first_item(item, "ReferencedSOPSequence") if value_type in _REFERENCES else None
    return ContentItem(
        value_type=value_type,
        name=code_meaning(first_item(item, "ConceptNameCodeSequence")),
        value=item_value(item),
        relationship=text(item.get("RelationshipType")).lower(),
        children=_children(item, depth + 1, budget),
        sop_uid=text(reference.get("ReferencedSOPInstanceUID")) if reference is not None else "",
    )


def item_value(item: Dataset) -> str:
    """The value of one content item as text ("" for a ``CONTAINER``)."""
    value_type = text(item.get("ValueType"))
    if not value_type and "ReferencedContentItemIdentifier" in item:
        path = ".".join(str(n) for n in _as_list(item.ReferencedContentItemIdentifier))
        return f"see content item {path}"
    reader = _VALUES.get(value_type)
    return reader(item) if reader else ""


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]


def _num(item: Dataset) -> str:
    measured = first_item(item, "MeasuredValueSequence")
    if measured is None:
        qualifier = code_meaning(first_item(item, "NumericValueQualifierCodeSequence"))
        return qualifier or "no value"
    value = dicomtext.number(measured.get("NumericValue"))
    unit = dicomtext.unit(first_item(measured, "MeasurementUnitsCodeSequence"))
    return f"{value} {unit}".strip()


def _reference(item: Dataset) -> str:
    reference = first_item(item, "ReferencedSOPSequence")
    if reference is None:
        return "no reference"
    shown = dicomtext.sop_class_name(reference.get("ReferencedSOPClassUID"))
    frames = text(reference.get("ReferencedFrameNumber"))
    segments = text(reference.get("ReferencedSegmentNumber"))
    if frames:
        shown += f", frame {frames}" if "," not in frames else f", frames {frames}"
    if segments:
        shown += f", segment {segments}"
    return shown


def _scoord(item: Dataset) -> str:
    points = len(_as_list(item.get("GraphicData", [])))
    dimensions = 3 if text(item.get("ValueType")) == "SCOORD3D" else 2
    shape = text(item.get("GraphicType")).lower() or "shape"
    return f"{shape}, {points // dimensions} point(s)"


def _tcoord(item: Dataset) -> str:
    return text(item.get("TemporalRangeType")).lower() or "time range"


_VALUES = {
    "TEXT": lambda item: text(item.get("TextValue")),
    "CODE": lambda item: code_meaning(first_item(item, "ConceptCodeSequence")),
    "NUM": _num,
    "DATE": lambda item: dicomtext.date(item.get("Date")),
    "TIME": lambda item: dicomtext.time(item.get("Time")),
    "DATETIME": lambda item: dicomtext.datetime(item.get("DateTime")),
    "PNAME": lambda item: dicomtext.person_name(item.get("PersonName", "")),
    "UIDREF": lambda item: text(item.get("UID")),
    "IMAGE": _reference,
    "COMPOSITE": _reference,
    "WAVEFORM": _reference,
    "SCOORD": _scoord,
    "SCOORD3D": _scoord,
    "TCOORD": _tcoord,
}


def _references(items: tuple[ContentItem, ...]) -> list[str]:
    """The SOP Instance UIDs the items (and their children) point to."""
    found, stack = [], list(items)
    while stack:
        item = stack.pop()
        if item.sop_uid:
            found.append(item.sop_uid)
        stack.extend(item.children)
    return found
