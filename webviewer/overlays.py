"""Overlay planes (60xx groups with their own Overlay Data, PS3.3 C.9.2) of one frame, as run lengths.

A plane applies to frames Image Frame Origin .. Image Frame Origin + Number of Frames in
Overlay - 1 (both 1 when absent: a single-frame plane goes with frame 1). Its bitmap is
Overlay Rows x Overlay Columns, placed at Overlay Origin (1-based row and column of the
image; it may start outside it). Bits are read by pydicom (``Dataset.overlay_array``), only
after their unpacked size (one byte per bit, every frame of the plane) is known to be
within the decoding limit; a plane that cannot be read is left out, the image still shows.

The browser gets each plane in the ``X-Overlays`` header (:meth:`Overlay.describe`): its
size, origin, type and label and its bitmap in row-major order as run lengths, alternately
of 0 and 1 bits, starting with 0s. A plane whose runs would take more than
:data:`MAX_RUNS_CHARS` characters (noise rather than graphics) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

MAX_RUNS_CHARS = 96 * 1024
_GROUPS = range(0x6000, 0x6020, 2)


def run_lengths(bitmap: np.ndarray) -> str:
    """`bitmap` (row-major) as comma-separated run lengths, alternately 0s and 1s, starting with 0s."""
    flat = bitmap.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    lengths = np.diff(np.concatenate(([0], changes, [flat.size])))
    if flat.size and flat[0]:
        lengths = np.concatenate(([0], lengths))
    return ",".join(map(str, lengths.tolist()))


@dataclass(frozen=True)
class Overlay:
    """One overlay plane's bitmap for one frame, as run lengths."""

    rows: int
    columns: int
    origin: tuple[int, int]
    kind: str
    label: str
    runs: str

    def describe(self) -> dict[str, Any]:
        """The plane as the ``X-Overlays`` header lists it."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "origin": list(self.origin),
            "type": self.kind,
            "label": self.label,
            "runs": self.runs,
        }


def _int(ds: Dataset, group: int, element: int, default: int) -> int:
    value = ds.get((group, element))
    try:
        return int(value.value) if value is not None and value.value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _origin(ds: Dataset, group: int) -> tuple[int, int]:
    element = ds.get((group, 0x0050))
    value = element.value if element is not None else None
    try:
        row, column = int(value[0]), int(value[1])
    except (TypeError, ValueError, IndexError):
        return 1, 1
    return row, column


def _plane(ds: Dataset, group: int, number: int, max_bytes: int) -> Overlay | None:
    rows, columns = _int(ds, group, 0x0010, 0), _int(ds, group, 0x0011, 0)
    frames, first = _int(ds, group, 0x0015, 1), _int(ds, group, 0x0051, 1)
    index = number - first
    if rows <= 0 or columns <= 0 or frames <= 0 or not 0 <= index < frames:
        return None
    if rows * columns * frames > max_bytes or _int(ds, group, 0x0100, 1) != 1:
        return None
    try:
        bits = ds.overlay_array(group)
    except Exception:  # pydicom raises several kinds on short or malformed Overlay Data
        return None
    bitmap = (bits[index] if bits.ndim == 3 else bits).astype(bool)
    kind = str(ds.get((group, 0x0040)).value if (group, 0x0040) in ds else "G").strip().upper() or "G"
    label = next(
        (str(ds[group, e].value) for e in (0x1500, 0x0022) if (group, e) in ds and ds[group, e].value),
        "",
    )
    runs = run_lengths(bitmap)
    return (
        Overlay(rows, columns, _origin(ds, group), kind, label, runs) if len(runs) <= MAX_RUNS_CHARS else None
    )


def frame_overlays(ds: Dataset, number: int, max_bytes: int) -> tuple[Overlay, ...]:
    """The overlay planes of `ds` that apply to frame `number` (1-based), within `max_bytes` unpacked."""
    found = []
    for group in _GROUPS:
        if (group, 0x3000) in ds:
            plane = _plane(ds, group, number, max_bytes)
            if plane is not None:
                found.append(plane)
    return tuple(found)
