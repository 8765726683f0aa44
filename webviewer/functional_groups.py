"""The attributes that hold for one frame: the top level, overridden by the functional groups.

An Enhanced CT, MR or XA object (and every other multi-frame IOD built of functional
groups) keeps what varies per frame in the Per-frame Functional Groups Sequence and what
is common in the Shared Functional Groups Sequence, one macro per sequence: Pixel Value
Transformation (rescale), Frame VOI LUT (windows, VOI LUT function, VOI LUTs), Pixel
Measures (spacing, thickness), Plane Position and Plane Orientation (Patient). PS3.3
C.7.6.16: a per-frame value overrides a shared one, which overrides the top level.

:func:`frame_attributes` gives the attributes the viewer reads (:data:`DISPLAY_KEYWORDS`) as
one small flat data set for a frame, so the rest of the decoding never looks at where
they came from.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

# What showing a frame needs, wherever it is kept.
DISPLAY_KEYWORDS = frozenset(
    {
        "PhotometricInterpretation",
        "BitsStored",
        "PixelRepresentation",
        "RescaleSlope",
        "RescaleIntercept",
        "RescaleType",
        "ModalityLUTSequence",
        "WindowCenter",
        "WindowWidth",
        "WindowCenterWidthExplanation",
        "VOILUTFunction",
        "VOILUTSequence",
        "PresentationLUTShape",
        "PixelPaddingValue",
        "PixelPaddingRangeLimit",
        "PixelSpacing",
        "ImagerPixelSpacing",
        "SliceThickness",
        "SliceLocation",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "FrameOfReferenceUID",
    }
)


def _macro_items(group: Dataset) -> list[Dataset]:
    """The first item of each macro (a sequence) of one functional group item."""
    return [
        element.value[0]
        for element in group
        if element.VR == "SQ" and isinstance(element.value, Sequence) and len(element.value) > 0
    ]


def _overlay(flat: Dataset, source: Dataset) -> None:
    for element in source:
        if element.keyword in DISPLAY_KEYWORDS:
            flat[element.tag] = element


def _group(ds: Dataset, keyword: str, index: int) -> Dataset | None:
    groups = ds.get(keyword)
    if not isinstance(groups, Sequence) or index >= len(groups):
        return None
    return groups[index]


def frame_attributes(ds: Dataset, index: int) -> Dataset:
    """The display attributes (:data:`DISPLAY_KEYWORDS`) of frame `index` (0-based) of `ds`.

    The top level's, then the shared functional groups' and then frame `index`'s per-frame
    functional groups' values, each overriding the one before. The result keeps the file
    meta of `ds` (the LUTs' byte order depends on it).
    """
    flat = Dataset()
    if hasattr(ds, "file_meta"):
        flat.file_meta = ds.file_meta
    for keyword in DISPLAY_KEYWORDS:
        if keyword in ds:
            element = ds[keyword]
            flat[element.tag] = element
    for group in (
        _group(ds, "SharedFunctionalGroupsSequence", 0),
        _group(ds, "PerFrameFunctionalGroupsSequence", index),
    ):
        if group is not None:
            for item in _macro_items(group):
                _overlay(flat, item)
    return flat
