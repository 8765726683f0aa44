"""Transcoding on retrieve: a stored object in a transfer syntax its receiver accepts.

:func:`transcode_for` leaves an object alone when its own transfer syntax is accepted, and
otherwise makes a copy in Explicit VR Little Endian (or Implicit VR Little Endian when only
that is accepted): compressed Pixel Data decoded with pydicom's decoders (pylibjpeg,
pyjpegls, GDCM and, for 12-bit JPEG that libjpeg refuses, :mod:`pacs.ops.jpeg12`), colour
converted to RGB as pydicom's ``decompress`` does (YBR_FULL_422, YBR_ICT, ... become RGB),
every frame native; big endian data byte-swapped; a deflated data set written plain. The
SOP Instance UID stays: it is the same instance. A source that was lossy compressed keeps
(or is given) Lossy Image Compression "01".

The input is never modified: the copy has its own File Meta Information and its own
elements wherever a value changes, and shares the unchanged ones. Memory: the decoded
Pixel Data is as large as the native object (Rows x Columns x Samples x Bits Allocated/8 x
Frames); it is built in one buffer, and refused beforehand when the header declares more
than :data:`MAX_NATIVE_BYTES` (what a 32-bit DICOM length can hold).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder, pack_bits
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

from pacs.ops import jpeg12
from storage.errors import PacsError

MAX_NATIVE_BYTES = 2**32 - 2
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_LOSSY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000, JPEGLSNearLossless})
_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}

jpeg12.add_to_pydicom()


class TranscodeError(PacsError):
    """The object cannot be given to the receiver in a syntax it accepts (the message says why)."""


def target_syntax(stored: str, accepted: Sequence[str]) -> str:
    """The syntax an object stored in `stored` goes out in: its own if accepted, else ELE, else ILE."""
    if stored in accepted:
        return stored
    for syntax in UNCOMPRESSED:
        if syntax in accepted:
            return syntax
    raise TranscodeError(
        f"the receiver accepts neither {UID(stored).name} nor an uncompressed transfer syntax"
    )


def transcode_for(ds: Dataset, accepted: Sequence[str]) -> Dataset:
    """`ds` if its transfer syntax is in `accepted`, else a native copy the receiver accepts.

    Raises :class:`TranscodeError` when no accepted syntax can be reached or the Pixel Data
    cannot be decoded.
    """
    stored = UID(str(ds.file_meta.TransferSyntaxUID))
    target = target_syntax(stored, accepted)
    if target == stored:
        return ds
    out = _shallow_copy(ds)
    if stored == ExplicitVRBigEndian:
        _swap_to_little_endian(out)
    if (stored.is_compressed or stored == ExplicitVRBigEndian) and "PixelData" in ds:
        _decode_pixels(ds, out, stored)
    out.file_meta = _file_meta(ds.file_meta, target)
    out.set_original_encoding(target == ImplicitVRLittleEndian, True, ds.original_character_set)
    return out


def _shallow_copy(ds: Dataset) -> Dataset:
    """A new dataset holding the same element objects (changed values get new elements)."""
    out = Dataset()
    for elem in ds:
        out.add(elem)
    return out


def _file_meta(meta: FileMetaDataset, syntax: str) -> FileMetaDataset:
    out = FileMetaDataset()
    for elem in meta:
        if elem.keyword != "FileMetaInformationGroupLength":
            out.add(elem)
    out.add(DataElement(0x00020010, "UI", syntax))
    return out


def _native_size(ds: Dataset) -> int:
    """The bytes of the native Pixel Data the header declares (all frames)."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        return int(ds.Rows) * int(ds.Columns) * samples * frames * ((bits + 7) // 8)
    except (AttributeError, TypeError, ValueError) as error:
        raise TranscodeError(f"the image pixel module is incomplete: {error}") from None


def _decode_pixels(ds: Dataset, out: Dataset, stored: UID) -> None:
    """Put `ds`'s decoded frames, and the pixel module that describes them, into `out`."""
    size = _native_size(ds)
    if size > MAX_NATIVE_BYTES:
        raise TranscodeError(f"the decoded pixel data would take {size} bytes, more than DICOM allows")
    try:
        decoder = get_decoder(stored)
    except NotImplementedError:
        raise TranscodeError(f"no decoder for {stored.name}") from None
    # BytesIO hands its buffer over as the bytes value without copying it (getvalue).
    pixels = io.BytesIO()
    image_pixel: dict[str, Any] = {}
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        # Frame by frame through as_array: pydicom 3.0's iter_array fails on the sign
        # correction of some JPEG 2000 frames (it shifts a read-only array in place).
        for index in range(frames):
            array, image_pixel = decoder.as_array(ds, index=index, as_rgb=True)
            pixels.write(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")))
            if pixels.tell() > size:
                raise ValueError("the decoded frames are larger than the header declares")
    except Exception as error:  # every decoder failure, whatever its library raises
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TranscodeError(f"cannot decode {stored.name} pixel data: {reason}") from None
    value = pixels.getvalue()
    if int(ds.BitsAllocated) == 1:  # decoded one byte per pixel; native 1-bit data is packed
        value = pack_bits(np.frombuffer(value, dtype=np.uint8), pad=False)
    if len(value) % 2:
        value += b"\0"
    _put_pixel_module(ds, out, value, frames, image_pixel)
    if stored in _LOSSY and "LossyImageCompression" not in ds:
        out.add(DataElement(0x00282110, "CS", "01"))


def _put_pixel_module(
    ds: Dataset, out: Dataset, pixels: bytes, frames: int, image_pixel: dict[str, Any]
) -> None:
    """Pixel Data, Photometric Interpretation, Planar Configuration and Number of Frames as decoded."""
    bits = int(ds.BitsAllocated)
    out.add(DataElement(0x7FE00010, "OB" if bits <= 8 else "OW", pixels))
    out.add(DataElement(0x00280004, "CS", image_pixel["photometric_interpretation"]))
    if int(image_pixel["samples_per_pixel"]) > 1:
        out.add(DataElement(0x00280006, "US", int(image_pixel["planar_configuration"])))
    if "NumberOfFrames" in ds or frames > 1:
        out.add(DataElement(0x00280008, "IS", frames))


def _swap_to_little_endian(out: Dataset) -> None:
    """Byte-swap the binary values of a big endian data set (its text and numbers pydicom re-encodes).

    The data set came from a big endian object, so it is small or rare; its sequences are
    copied whole before anything in them changes.
    """
    for elem in list(out):
        if elem.VR == "SQ":
            out.add(copy.deepcopy(elem))
    out.walk(_swap_element)


def _swap_element(ds: Dataset, elem: DataElement) -> None:
    width = _SWAP_WIDTH.get(str(elem.VR))
    if width is None or not isinstance(elem.value, bytes | bytearray) or elem.is_undefined_length:
        return
    whole = len(elem.value) - len(elem.value) % width
    words = np.frombuffer(elem.value, dtype=f">u{width}", count=whole // width)
    ds.add(DataElement(elem.tag, elem.VR, words.astype(f"<u{width}").tobytes() + bytes(elem.value[whole:])))
