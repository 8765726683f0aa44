"""The grayscale pipeline's lookup tables and windows (PS3.3 C.11), read from one frame's attributes.

* The Modality LUT Sequence is applied here, on the server (pydicom's
  ``apply_modality_lut``): the browser gets its output values as the samples, with a rescale
  of 1 and 0, so that windows, VOI LUTs and measurements see the modality values.
* The windows (Window Center/Width, multi-valued, with their explanations) and the VOI LUT
  function go to the browser as headers; the browser windows.
* The VOI LUT Sequence's tables go to the browser too (:meth:`VoiLut.describe`), which
  applies one of them when it is the chosen window. A table of more than
  :data:`MAX_LUT_ENTRIES` entries is sent sampled every ``step`` inputs.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian

MAX_LUT_ENTRIES = 16384
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Window:
    """One of the data set's windows (in modality values) and what it is for."""

    center: float
    width: float
    explanation: str = ""


@dataclass(frozen=True, eq=False)
class VoiLut:
    """One VOI LUT: modality value ``first + i * step`` maps to ``data[i]`` of ``bits`` bits."""

    first: int
    step: int
    bits: int
    data: np.ndarray
    explanation: str = ""

    def describe(self) -> dict[str, Any]:
        """The table as the ``X-Voi-Luts`` header lists it (its data as base64 little-endian uint16)."""
        encoded = base64.b64encode(self.data.astype("<u2").tobytes()).decode("ascii")
        return {
            "first": self.first,
            "step": self.step,
            "bits": self.bits,
            "explanation": self.explanation,
            "data": encoded,
        }


def values(value: Any) -> list[Any]:
    """A DICOM value as a list: a multi-value's items, one value, or none."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | Sequence | list | tuple) else [value]


def numbers(value: Any) -> list[float]:
    """The numbers of a multi-valued DICOM value; the first value that is not one ends the list."""
    found = []
    for item in values(value):
        try:
            number = float(item)
        except (TypeError, ValueError):
            break
        if not math.isfinite(number):
            break
        found.append(number)
    return found


def voi_function(flat: Dataset) -> str:
    """The VOI LUT Function (LINEAR when absent or unknown)."""
    function = str(flat.get("VOILUTFunction", "") or "").strip().upper()
    return function if function in VOI_FUNCTIONS else "LINEAR"


def windows(flat: Dataset) -> tuple[Window, ...]:
    """The usable windows, with their explanations (a LINEAR window is at least 1 wide, others > 0)."""
    centers, widths = numbers(flat.get("WindowCenter")), numbers(flat.get("WindowWidth"))
    explanations = [str(text) for text in values(flat.get("WindowCenterWidthExplanation"))]
    narrowest = 1.0 if voi_function(flat) == "LINEAR" else 0.0
    found = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        if width >= narrowest and width > 0:
            found.append(Window(center, width, explanations[i] if i < len(explanations) else ""))
    return tuple(found)


def _little_endian(flat: Dataset) -> bool:
    meta = getattr(flat, "file_meta", None)
    return meta is None or meta.get("TransferSyntaxUID") != ExplicitVRBigEndian


def _lut_data(item: Dataset, entries: int, bits: int, little_endian: bool) -> np.ndarray | None:
    """LUT Data as ``entries`` unsigned values (16-bit words, or bytes when 8-bit data is packed)."""
    value = item.get("LUTData")
    if isinstance(value, bytes):
        if bits <= 8 and len(value) == entries:
            data = np.frombuffer(value, dtype=np.uint8)
        else:
            data = np.frombuffer(value[: len(value) // 2 * 2], dtype="<u2" if little_endian else ">u2")
    else:
        data = np.asarray(values(value), dtype=np.int64)
        if data.size and (data.min() < 0 or data.max() > 0xFFFF):
            return None
    return data[:entries].astype(np.uint16) if len(data) >= entries else None


def voi_luts(flat: Dataset) -> tuple[VoiLut, ...]:
    """The VOI LUT Sequence's usable tables (8 to 16 bits, as much data as the descriptor says)."""
    found = []
    for item in values(flat.get("VOILUTSequence")):
        descriptor = numbers(item.get("LUTDescriptor"))
        if len(descriptor) != 3 or not 8 <= descriptor[2] <= 16:
            continue
        entries, first, bits = int(descriptor[0]) or 65536, int(descriptor[1]), int(descriptor[2])
        data = _lut_data(item, entries, bits, _little_endian(flat))
        if data is None:
            continue
        step = math.ceil(entries / MAX_LUT_ENTRIES)
        explanation = str(item.get("LUTExplanation", "") or "")
        found.append(VoiLut(first, step, bits, data[::step], explanation))
    return tuple(found)


def has_modality_lut(flat: Dataset) -> bool:
    """Whether the frame's modality transformation is a Modality LUT Sequence (not a rescale)."""
    items = values(flat.get("ModalityLUTSequence"))
    return bool(items) and "LUTDescriptor" in items[0] and "LUTData" in items[0]


def modality_lut_output(array: np.ndarray, flat: Dataset) -> np.ndarray:
    """`array` through the frame's Modality LUT Sequence: unsigned 8- or 16-bit modality values."""
    return np.asarray(apply_modality_lut(array, flat))
