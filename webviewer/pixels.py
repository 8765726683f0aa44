"""Decoding frames into the samples the browser windows and draws, and a memory-only cache.

Every transfer syntax we accept decodes through pydicom and its plugins (pylibjpeg's
libjpeg, openjpeg and RLE decoders, pyjpegls, and pydicom's own deflate; 12-bit JPEG
Extended that libjpeg refuses through GDCM, :mod:`pacs.ops.jpeg12`; the choice of decoders is
:mod:`pacs.ops.decoders`). Colour frames (RGB,
YBR, palette) go out as 8-bit RGB. Decrypted objects and decoded frames are cached in
memory only, within a byte budget, never on disk.

Grayscale frames go out as their stored values (8- or 16-bit, signed or not, or float),
and window/level happens in the browser (``static/viewer/frames.js`` and
``windowing.js``). What the frame needs for that is read from the attributes that hold for
it (:mod:`webviewer.functional_groups`: a multi-frame object's per-frame and shared
functional groups override the top level) and sent as ``X-`` headers
(:meth:`Frame.headers`): the rescale; the windows, all of them, with their explanations,
and the VOI LUT function; the VOI LUT Sequence's tables; the Presentation LUT Shape; the
pixel padding value; the pixel spacing and the frame's geometry (position, orientation,
thickness, slice location, frame of reference); the overlay planes of the frame
(:mod:`webviewer.overlays`). A Modality LUT Sequence is applied here and its output sent as
the samples, with a rescale of 1 and 0 (:mod:`webviewer.luts`).

Nothing is decoded before its size is known and allowed (:class:`DecodeLimits`): the size
comes from the header (Rows, Columns, Samples per Pixel, Bits Allocated), a compressed
frame's own header (JPEG, JPEG-LS, JPEG 2000) must say the same, a deflated data set is
inflated only up to the limit, and the frames being decoded at once share one budget.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_color_lut, get_decoder, pixel_array
from pydicom.uid import UID, JPEGExtended12Bit, RLELossless

from pacs.ops import decoders, jpeg12
from webviewer.decodelimits import (
    DecodeLimits,
    FrameError,
    Geometry,
    check_codestream,
    geometry,
)
from webviewer.functional_groups import frame_attributes
from webviewer.luts import (
    VoiLut,
    Window,
    has_modality_lut,
    modality_lut_output,
    numbers,
    voi_function,
    voi_luts,
    windows,
)
from webviewer.overlays import Overlay, frame_overlays

_FORMATS = {
    ("u", 1): "uint8",
    ("i", 1): "int8",
    ("u", 2): "uint16",
    ("i", 2): "int16",
}
_UID = re.compile(r"^[0-9.]{1,64}$")
# libjpeg first for JPEG Extended, GDCM's IJG codec for what libjpeg refuses (pacs.ops.jpeg12).
_PREFERRED = {JPEGExtended12Bit: ("pylibjpeg", jpeg12.LABEL)}
decoders.configure()


def _number(value: float) -> str:
    """`value` as short as it reads back exactly (``2.734375``, ``-1024``, ``0.1``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def _list(values: tuple[float, ...]) -> str:
    return "\\".join(_number(value) for value in values)


@dataclass(frozen=True)
class Geometry3D:
    """Where a frame is in the patient: PS3.3 C.7.6.2 (all in mm)."""

    position: tuple[float, ...] | None = None
    orientation: tuple[float, ...] | None = None
    thickness: float | None = None
    slice_location: float | None = None
    frame_of_reference: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.position is not None:
            headers["X-Image-Position-Patient"] = _list(self.position)
        if self.orientation is not None:
            headers["X-Image-Orientation-Patient"] = _list(self.orientation)
        if self.thickness is not None:
            headers["X-Slice-Thickness"] = _number(self.thickness)
        if self.slice_location is not None:
            headers["X-Slice-Location"] = _number(self.slice_location)
        if self.frame_of_reference is not None:
            headers["X-Frame-Of-Reference-UID"] = self.frame_of_reference
        return headers


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
    windows: tuple[Window, ...] = ()
    voi_function: str = "LINEAR"
    voi_luts: tuple[VoiLut, ...] = ()
    presentation_shape: str | None = None
    padding: tuple[float, ...] | None = None
    spacing: tuple[float, float] | None = None
    frame_time_ms: float | None = None
    place: Geometry3D = Geometry3D()
    overlays: tuple[Overlay, ...] = ()

    def headers(self) -> dict[str, str]:
        """The ``X-`` response headers describing the samples and how to show them."""
        headers = {
            "X-Sample-Format": self.sample_format,
            "X-Rows": str(self.rows),
            "X-Columns": str(self.columns),
            "X-Photometric": self.photometric,
            "X-Number-Of-Frames": str(self.frames),
            "X-Rescale-Slope": _number(self.slope),
            "X-Rescale-Intercept": _number(self.intercept),
        }
        headers.update(self._grayscale_headers())
        if self.spacing is not None:
            headers["X-Pixel-Spacing"] = _list(self.spacing)
        if self.frame_time_ms is not None:
            headers["X-Frame-Time-Ms"] = _number(self.frame_time_ms)
        headers.update(self.place.headers())
        if self.overlays:
            headers["X-Overlays"] = json.dumps([overlay.describe() for overlay in self.overlays])
        return headers

    def _grayscale_headers(self) -> dict[str, str]:
        headers = {}
        if self.windows:
            headers["X-Window-Center"] = _list(tuple(w.center for w in self.windows))
            headers["X-Window-Width"] = _list(tuple(w.width for w in self.windows))
            if any(w.explanation for w in self.windows):
                explanations = (quote(w.explanation, safe=" ") for w in self.windows)
                headers["X-Window-Explanation"] = "\\".join(explanations)
        if self.windows or self.voi_luts:
            headers["X-Voi-Lut-Function"] = self.voi_function
        if self.voi_luts:
            headers["X-Voi-Luts"] = json.dumps([lut.describe() for lut in self.voi_luts])
        if self.presentation_shape is not None:
            headers["X-Presentation-Lut-Shape"] = self.presentation_shape
        if self.padding is not None:
            headers["X-Pixel-Padding"] = _list(self.padding)
        return headers


def _first(value: Any) -> float | None:
    found = numbers(value)
    return found[0] if found else None


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = numbers(ds.get(keyword))
        if len(value) == 2 and value[0] > 0 and value[1] > 0:
            return value[0], value[1]
    return None


def _frame_time(ds: Dataset) -> float | None:
    frame_time = _first(ds.get("FrameTime"))
    if frame_time and frame_time > 0:
        return frame_time
    rate = _first(ds.get("RecommendedDisplayFrameRate")) or _first(ds.get("CineRate"))
    return 1000.0 / rate if rate and rate > 0 else None


def _place(flat: Dataset) -> Geometry3D:
    position, orientation = (
        numbers(flat.get("ImagePositionPatient")),
        numbers(flat.get("ImageOrientationPatient")),
    )
    thickness = _first(flat.get("SliceThickness"))
    uid = str(flat.get("FrameOfReferenceUID", "") or "").strip()
    return Geometry3D(
        position=tuple(position) if len(position) == 3 else None,
        orientation=tuple(orientation) if len(orientation) == 6 else None,
        thickness=thickness if thickness is not None and thickness > 0 else None,
        slice_location=_first(flat.get("SliceLocation")),
        frame_of_reference=uid if _UID.match(uid) else None,
    )


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


def decoding_plugins(syntax: UID) -> tuple[str, ...]:
    """The decoding plugins to try for `syntax`, in order ("" lets pydicom pick, for native data)."""
    if not syntax.is_encapsulated:
        return ("",)
    if syntax == RLELossless:
        # pylibjpeg-rle decodes into a buffer of the frame's size and stops at its end (pydicom's
        # own RLE decoder grows a segment as far as its runs say, 64 times its length).
        return ("pylibjpeg",)
    available = get_decoder(syntax).available_plugins
    preferred = [name for name in _PREFERRED.get(syntax, ()) if name in available]
    plugins = (*preferred, *(name for name in available if name not in preferred))
    return plugins or ("",)


def decode_array(ds: Dataset, index: int | None, syntax: UID) -> np.ndarray:
    """The frame's samples, from the first plugin of :func:`decoding_plugins` that decodes it."""
    failures = []
    for plugin in decoding_plugins(syntax):
        try:
            return pixel_array(ds, index=index, decoding_plugin=plugin)
        except BaseException as exc:  # a plugin's own error types; all mean "cannot decode"
            # pylibjpeg-rle's bounds checks panic (a BaseException) on runs past the frame.
            if not isinstance(exc, Exception) and type(exc).__module__ != "pyo3_runtime":
                raise
            failures.append(exc)
    raise FrameError(f"the pixel data cannot be decoded: {type(failures[-1]).__name__}") from failures[-1]


def single_frame(ds: Dataset, stored: bytes) -> Dataset:
    """A one-frame data set of `stored` (a frame's stored bytes), with `ds`'s file meta and group 0028."""
    single = Dataset()
    single.file_meta = ds.file_meta
    for element in ds.group_dataset(0x0028):
        if element.keyword != "NumberOfFrames":
            single.add(element)
    if UID(str(ds.file_meta.get("TransferSyntaxUID", ""))).is_encapsulated:
        single.add_new(0x7FE00010, "OB", encapsulate([stored]))
        single["PixelData"].is_undefined_length = True
    else:
        single.add_new(0x7FE00010, "OB" if int(ds.get("BitsAllocated") or 8) <= 8 else "OW", stored)
    return single


def decode_frame(ds: Dataset, number: int, limits: DecodeLimits, stored: Callable[[], bytes] | None) -> Frame:
    """Frame `number` (1-based) of an object, decoded within `limits`; :class:`FrameError` if impossible.

    `ds` is the object's data set before Pixel Data, and `stored` reads the frame's stored
    bytes (None: the object has no Pixel Data). The frame's size is checked from the
    header before they are read, and a compressed frame's own header against it, before
    any decoder runs.
    """
    if stored is None:
        raise FrameError("the object has no pixel data")
    shape = geometry(ds)
    frames = shape.frames
    if not 1 <= number <= frames:
        raise FrameError(f"frame {number} does not exist; the object has {frames}", 404)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    size = shape.decoded_bytes(photometric)
    limits.check(size, f"frame {number} ({shape.describe()})")
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    encoded = stored()
    if syntax.is_encapsulated:
        check_codestream(syntax, encoded, shape)
    with limits.reserve(size):
        array = decode_array(single_frame(ds, encoded), None, syntax)
        if photometric == "PALETTE COLOR":
            try:
                array = apply_color_lut(array, ds)
            except Exception as exc:  # a malformed palette: pydicom raises several kinds
                raise FrameError(f"the palette cannot be applied: {type(exc).__name__}") from exc
        return _frame(ds, number, array, shape, photometric, limits)


def _frame(
    ds: Dataset, number: int, array: np.ndarray, shape: Geometry, photometric: str, limits: DecodeLimits
) -> Frame:
    """The samples of a decoded `array` as they go out, with what the browser needs to show them."""
    flat = frame_attributes(ds, number - 1)
    common = {
        "rows": shape.rows,
        "columns": shape.columns,
        "frames": shape.frames,
        "frame_time_ms": _frame_time(ds),
        "spacing": _spacing(flat),
        "place": _place(flat),
        "overlays": frame_overlays(ds, number, limits.max_frame_bytes),
    }
    if array.ndim == 3 and array.shape[-1] == 3:
        samples = _to_rgb8(array, _colour_bits(ds, photometric, array))
        return Frame(samples, "rgb8", photometric="RGB", **common)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise FrameError(f"photometric interpretation {photometric} is not supported")
    return _grayscale(flat, array, photometric, common)


def _grayscale(flat: Dataset, array: np.ndarray, photometric: str, common: dict[str, Any]) -> Frame:
    slope, intercept = _first(flat.get("RescaleSlope")) or 1.0, _first(flat.get("RescaleIntercept")) or 0.0
    if has_modality_lut(flat):
        try:
            array = modality_lut_output(array, flat)
        except Exception as exc:  # a descriptor that disagrees with its data: pydicom raises several kinds
            raise FrameError(f"the Modality LUT cannot be applied: {type(exc).__name__}") from exc
        slope, intercept = 1.0, 0.0
    if array.dtype.kind == "f" or array.dtype.itemsize > 2:
        samples, sample_format = array.astype("<f4").tobytes(), "float32"
    else:
        sample_format = _FORMATS[(array.dtype.kind, array.dtype.itemsize)]
        samples = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    shape = str(flat.get("PresentationLUTShape", "") or "").strip().upper()
    padding = numbers(flat.get("PixelPaddingValue"))[:1] + numbers(flat.get("PixelPaddingRangeLimit"))[:1]
    return Frame(
        samples,
        sample_format,
        photometric=photometric,
        slope=slope,
        intercept=intercept,
        windows=windows(flat),
        voi_function=voi_function(flat),
        voi_luts=voi_luts(flat),
        presentation_shape=shape if shape in ("IDENTITY", "INVERSE") else None,
        padding=tuple(padding) if padding else None,
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
