"""Decoding frames into the samples the browser windows and draws, and a memory-only cache.

Every transfer syntax we accept decodes through pydicom and its plugins (pylibjpeg's
libjpeg, openjpeg and RLE decoders, pyjpegls, and pydicom's own deflate). Grayscale frames go
out as their stored values (8- or 16-bit, signed or not, or float) with the rescale
slope and intercept and the dataset's window, so window/level happens in the browser.
Colour frames (RGB, YBR, palette) go out as 8-bit RGB. Decrypted objects and decoded
frames are cached in memory only, within a byte budget, never on disk.

Nothing is decoded before its size is known and allowed (:class:`DecodeLimits`): the size
comes from the header (Rows, Columns, Samples per Pixel, Bits Allocated), a compressed
frame's own header (JPEG, JPEG-LS, JPEG 2000) must say the same, a deflated data set is
inflated only up to the limit, and the frames being decoded at once share one budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import UID, RLELossless

from webviewer.decodelimits import (
    DecodeLimits,
    FrameError,
    Geometry,
    check_codestream,
    encapsulated_frame,
    geometry,
)

_FORMATS = {
    ("u", 1): "uint8",
    ("i", 1): "int8",
    ("u", 2): "uint16",
    ("i", 2): "int16",
}


@dataclass(frozen=True)
class Frame:
    """One decoded frame and what the browser needs to show it."""

    samples: bytes
    sample_format: str
    rows: int
    columns: int
    photometric: str
    frames: int
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None
    spacing: tuple[float, float] | None = None
    frame_time_ms: float | None = None

    def headers(self) -> dict[str, str]:
        """The ``X-`` response headers describing the samples."""
        headers = {
            "X-Sample-Format": self.sample_format,
            "X-Rows": str(self.rows),
            "X-Columns": str(self.columns),
            "X-Photometric": self.photometric,
            "X-Number-Of-Frames": str(self.frames),
            "X-Rescale-Slope": f"{self.slope:g}",
            "X-Rescale-Intercept": f"{self.intercept:g}",
        }
        if self.window is not None:
            headers["X-Window-Center"] = f"{self.window[0]:g}"
            headers["X-Window-Width"] = f"{self.window[1]:g}"
        if self.spacing is not None:
            headers["X-Pixel-Spacing"] = f"{self.spacing[0]:g}\\{self.spacing[1]:g}"
        if self.frame_time_ms is not None:
            headers["X-Frame-Time-Ms"] = f"{self.frame_time_ms:g}"
        return headers


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if value else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _window(ds: Dataset) -> tuple[float, float] | None:
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None
    return center, width


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            try:
                row, column = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if row > 0 and column > 0:
                return row, column
    return None


def _frame_time(ds: Dataset) -> float | None:
    frame_time = _first(ds.get("FrameTime"))
    if frame_time and frame_time > 0:
        return frame_time
    rate = _first(ds.get("RecommendedDisplayFrameRate")) or _first(ds.get("CineRate"))
    return 1000.0 / rate if rate and rate > 0 else None


def _to_rgb8(array: np.ndarray, bits: int) -> bytes:
    """RGB samples of `bits` bits as 8-bit RGB (scaled by the bit depth, not by the frame's content)."""
    if array.dtype != np.uint8 or bits != 8:
        top = float(2**bits - 1)
        array = (array.astype(np.float32) * (255.0 / top)).round().clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(array).tobytes()


def _colour_bits(ds: Dataset, photometric: str, array: np.ndarray) -> int:
    """The bit depth of colour samples: the palette's entries, or Bits Stored."""
    if photometric == "PALETTE COLOR":
        descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
        return int(descriptor[2]) if descriptor is not None and len(descriptor) == 3 else 8 * array.itemsize
    return int(ds.get("BitsStored") or 8 * array.itemsize)


def decode_frame(ds: Dataset, number: int, limits: DecodeLimits) -> Frame:
    """Frame `number` (1-based) of `ds`, decoded within `limits`; raise :class:`FrameError` if impossible.

    The frame's size is checked from the header, and a compressed frame's own header
    against it, before any decoder runs; RLE goes to pylibjpeg-rle, which decodes into a
    buffer of that size and stops at its end (pydicom's own RLE decoder grows a segment
    as far as its runs say, 64 times its length).
    """
    if "PixelData" not in ds:
        raise FrameError("the object has no pixel data")
    shape = geometry(ds)
    frames = shape.frames
    if not 1 <= number <= frames:
        raise FrameError(f"frame {number} does not exist; the object has {frames}", 404)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    size = shape.decoded_bytes(photometric)
    limits.check(size, f"frame {number} ({shape.describe()})")
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    if syntax.is_encapsulated:
        check_codestream(syntax, encapsulated_frame(ds, number - 1, frames), shape)
    plugin = "pylibjpeg" if syntax == RLELossless else ""
    with limits.reserve(size):
        try:
            array = pixel_array(ds, index=number - 1 if frames > 1 else None, decoding_plugin=plugin)
            if photometric == "PALETTE COLOR":
                array = apply_color_lut(array, ds)
        except BaseException as exc:  # a plugin's own error types; all mean "cannot decode"
            # pylibjpeg-rle's bounds checks panic (a BaseException) on runs past the frame.
            if not isinstance(exc, Exception) and type(exc).__module__ != "pyo3_runtime":
                raise
            raise FrameError(f"the pixel data cannot be decoded: {type(exc).__name__}") from exc
        return _frame(ds, array, shape, photometric)


def _frame(ds: Dataset, array: np.ndarray, shape: Geometry, photometric: str) -> Frame:
    """The samples of a decoded `array` as they go out, with what the browser needs to show them."""
    common = {
        "rows": shape.rows,
        "columns": shape.columns,
        "frames": shape.frames,
        "frame_time_ms": _frame_time(ds),
    }
    if array.ndim == 3 and array.shape[-1] == 3:
        samples = _to_rgb8(array, _colour_bits(ds, photometric, array))
        return Frame(samples, "rgb8", photometric="RGB", spacing=_spacing(ds), **common)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise FrameError(f"photometric interpretation {photometric} is not supported")
    if array.dtype.kind == "f" or array.dtype.itemsize > 2:
        samples, sample_format = array.astype("<f4").tobytes(), "float32"
    else:
        sample_format = _FORMATS[(array.dtype.kind, array.dtype.itemsize)]
        samples = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return Frame(
        samples,
        sample_format,
        photometric=photometric,
        slope=_first(ds.get("RescaleSlope")) or 1.0,
        intercept=_first(ds.get("RescaleIntercept")) or 0.0,
        window=_window(ds),
        spacing=_spacing(ds),
        **common,
    )


class MemoryCache:
    """A thread-safe LRU cache bounded by the bytes of its values."""

    def __init__(self, budget: int, size_of: Callable[[Any], int] = len) -> None:
        self._budget = budget
        self._size_of = size_of
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        """The cached value for `key`, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, value: Any, *, size: int | None = None) -> None:
        """Cache `value` (unless it alone exceeds the budget), evicting the least recently used.

        `size` is its memory in bytes, when the cache's own measure would not know it.
        """
        size = self._size_of(value) if size is None else size
        if size > self._budget:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._used -= old[1]
            self._items[key] = (value, size)
            self._used += size
            while self._used > self._budget:
                _, (_, freed) = self._items.popitem(last=False)
                self._used -= freed
