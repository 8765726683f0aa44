"""What a frame should look like, 8-bit gray, by pydicom with its plugins and by dcmtk's dcm2pnm.

Both references are written from the standard's pipeline (PS3.4 N.2), independently of the
viewer: stored values -> Modality LUT or rescale -> VOI (a window or a VOI LUT) ->
polarity -> 8 bits, with the overlay planes painted white. pydicom gives the stored
values, the modality values (``apply_modality_lut``), the VOI values (``apply_windowing``,
``apply_voi``) and the overlays (``Dataset.overlay_array``); the functional groups of a
multi-frame object are read here by hand, macro by macro. dcmtk renders the whole frame
itself (``dcm2pnm``, which reads what it can: not JPEG 2000).
"""

from __future__ import annotations

import copy
import math
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, pixel_array
from pydicom.uid import (
    JPEG2000,
    JPEG2000TransferSyntaxes,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from webviewer.pixels import decoding_plugins

LOSSY = {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000}
MACROS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"),
}


def stored_values(path: Path, number: int) -> np.ndarray:
    """Frame `number` (1-based) of `path` as pydicom decodes it, with the plugin the server uses.

    Lossy JPEG is not decoded bit for bit alike by every decoder, so the reference uses the
    server's (:func:`webviewer.pixels.decoding_plugins`, in order); dcmtk checks it
    independently (:func:`lossy_tolerance`).
    """
    ds = pydicom.dcmread(path)
    index = number - 1 if int(ds.get("NumberOfFrames", 1) or 1) > 1 else None
    *first, last = decoding_plugins(ds.file_meta.TransferSyntaxUID)
    for plugin in first:
        try:
            return pixel_array(ds, index=index, decoding_plugin=plugin)
        except Exception:  # the next plugin, as the server does
            continue
    return pixel_array(ds, index=index, decoding_plugin=last)


def lossy_tolerance(path: Path, window_width: float, slope: float) -> int:
    """How far two decoders of a lossy frame may differ in 8-bit gray: a stored value through the window.

    dcmtk's IJG and pylibjpeg's libjpeg differ by one stored value on some pixels of a
    lossy JPEG stream; under a window of `window_width` (modality values) one stored value
    is ``255 * slope / window_width`` gray levels. Lossless syntaxes must agree within 1.
    """
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if syntax not in LOSSY:
        return 1
    return 1 + math.ceil(255 * abs(slope) / window_width)


def frame_dataset(ds: Dataset, index: int) -> Dataset:
    """`ds` with the rescale and window of frame `index` copied up from its functional groups."""
    flat = copy.deepcopy(ds)
    for groups, item in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", index)):
        for macro, keywords in MACROS.items():
            if groups in ds and macro in ds[groups][item]:
                for keyword in keywords:
                    if keyword in ds[groups][item][macro][0]:
                        setattr(flat, keyword, ds[groups][item][macro][0][keyword].value)
    return flat


def inverted(ds: Dataset) -> bool:
    """dcmtk's polarity: the Presentation LUT Shape's when there is one, else MONOCHROME1 inverted."""
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    if shape in ("IDENTITY", "INVERSE"):
        return shape == "INVERSE"
    return ds.PhotometricInterpretation == "MONOCHROME1"


def voi_levels(modality: np.ndarray, ds: Dataset, voi: dict[str, object]) -> np.ndarray:
    """The VOI of `modality` as levels 0..1: VOI LUT number ``voi["lut"]``, or window (center, width)."""
    if "lut" in voi:
        index = int(voi["lut"])  # type: ignore[call-overload]
        bits = int(ds.VOILUTSequence[index].LUTDescriptor[2])
        return apply_voi(modality, ds, index).astype(np.float64) / (2**bits - 1)
    windowed = copy.deepcopy(ds)
    windowed.WindowCenter, windowed.WindowWidth = voi["center"], voi["width"]
    windowed.BitsStored = 16
    windowed.PixelRepresentation = 0
    for keyword in ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence"):
        if keyword in windowed:
            delattr(windowed, keyword)
    # Unsigned 16-bit, no rescale: apply_windowing's output runs from 0 to 65535.
    return apply_windowing(modality, windowed).astype(np.float64) / 65535.0


def overlay_mask(ds: Dataset, number: int, shape: tuple[int, int]) -> np.ndarray:
    """Where the overlay planes that apply to frame `number` cover the image."""
    mask = np.zeros(shape, dtype=bool)
    for group in range(0x6000, 0x6020, 2):
        if (group, 0x3000) not in ds:
            continue
        first = int(ds[group, 0x0051].value) if (group, 0x0051) in ds else 1
        count = int(ds[group, 0x0015].value) if (group, 0x0015) in ds else 1
        if not 0 <= number - first < count:
            continue
        bits = ds.overlay_array(group)
        bits = bits[number - first] if bits.ndim == 3 else bits
        top, left = (int(v) - 1 for v in ds[group, 0x0050].value) if (group, 0x0050) in ds else (0, 0)
        for r, c in zip(*np.nonzero(bits), strict=True):
            if 0 <= r + top < shape[0] and 0 <= c + left < shape[1]:
                mask[r + top, c + left] = True
    return mask


def pydicom_gray(path: Path, number: int, voi: dict[str, object], overlays: bool = True) -> np.ndarray:
    """Frame `number` (1-based) of `path` as 8-bit gray under `voi` (its overlays on top unless not
    `overlays`), by pydicom's processing functions."""
    ds = pydicom.dcmread(path)
    stored = stored_values(path, number)
    flat = frame_dataset(ds, number - 1)
    modality = apply_modality_lut(stored, flat)
    levels = voi_levels(modality, flat, voi)
    if inverted(flat):
        levels = 1.0 - levels
    gray = np.round(levels * 255).astype(np.uint8)
    if overlays:
        gray[overlay_mask(ds, number, gray.shape)] = 255
    return gray


def _pnm(data: bytes) -> np.ndarray:
    """A binary PGM (P5) or PPM (P6) image of 8-bit samples."""
    fields, position = [], 0
    while len(fields) < 4:
        while data[position : position + 1].isspace():
            position += 1
        end = position
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    magic, width, height = fields[0], int(fields[1]), int(fields[2])
    channels = 3 if magic == b"P6" else 1
    pixels = np.frombuffer(data[position + 1 :], dtype=np.uint8)
    return pixels.reshape(height, width, channels) if channels == 3 else pixels.reshape(height, width)


def dcmtk_tool(path: Path) -> str | None:
    """The dcmtk converter that reads `path`'s transfer syntax (None for JPEG 2000, which dcmtk lacks)."""
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if syntax in JPEG2000TransferSyntaxes:
        return None
    if syntax in JPEGLSTransferSyntaxes:
        return "dcml2pnm"
    return "dcmj2pnm" if syntax in JPEGTransferSyntaxes else "dcm2pnm"


def dcmtk_gray(path: Path, number: int, options: list[str], out: Path) -> np.ndarray:
    """Frame `number` of `path` rendered by dcmtk with VOI `options` (e.g. ``+Wi 1``).

    The converter is :func:`dcmtk_tool`'s.
    """
    tool = dcmtk_tool(path)
    assert tool is not None, f"dcmtk does not read {path.name}"
    subprocess.run(
        [tool, "+F", str(number), *options, str(path), str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return _pnm(out.read_bytes())
