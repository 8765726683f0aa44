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

Nothing is decoded before :mod:`pacs.ops.decodelimits` allows it: the header's geometry
and each frame's decoded size against the caller's :class:`FrameLimit` (``[dicom]
max_frame_mb`` on C-GET and C-MOVE), then, frame by frame, the compressed stream's own
header (its size, and at most 1024 JPEG 2000 tiles) before that frame alone is decoded;
a deflated object's inflated size before pydicom reads it (:func:`transcode_file`).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder, pack_bits
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    RLELossless,
)

from pacs.ops import decoders
from pacs.ops.decodelimits import (
    FrameError,
    FrameLimit,
    Geometry,
    check_codestream,
    check_inflated_size,
    geometry,
)
from storage.errors import PacsError

MAX_NATIVE_BYTES = 2**32 - 2
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# What a caller that names no limit gets: the default of [dicom] and [web] max_frame_mb.
DEFAULT_LIMIT = FrameLimit(256 * 2**20, "max_frame_mb's default")
_LOSSY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEG2000, JPEGLSNearLossless})
_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}

decoders.configure()


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


def transcode_for(ds: Dataset, accepted: Sequence[str], limit: FrameLimit = DEFAULT_LIMIT) -> Dataset:
    """`ds` if its transfer syntax is in `accepted`, else a native copy the receiver accepts.

    Raises :class:`TranscodeError` when no accepted syntax can be reached, or the Pixel Data
    may not (a frame larger than `limit`, a stream whose own header disagrees or claims too
    many tiles: checked before each frame is decoded) or cannot be decoded.
    """
    stored = UID(str(ds.file_meta.TransferSyntaxUID))
    target = target_syntax(stored, accepted)
    if target == stored:
        return ds
    out = _shallow_copy(ds)
    if stored == ExplicitVRBigEndian:
        _swap_to_little_endian(out)
    if (stored.is_compressed or stored == ExplicitVRBigEndian) and "PixelData" in ds:
        _decode_pixels(ds, out, stored, limit)
    out.file_meta = _file_meta(ds.file_meta, target)
    out.set_original_encoding(target == ImplicitVRLittleEndian, True, ds.original_character_set)
    return out


def transcode_file(data: bytes, stored: str, accepted: Sequence[str], limit: FrameLimit) -> Dataset:
    """The Part 10 object `data`, stored in transfer syntax `stored`, read and given to :func:`transcode_for`.

    A deflated object is refused, before pydicom inflates it whole, when its data set
    inflates to more than `limit`'s largest frame. Raises :class:`TranscodeError`, and
    pydicom's :class:`~pydicom.errors.InvalidDicomError` for what is not DICOM.
    """
    if stored == DeflatedExplicitVRLittleEndian:
        try:
            check_inflated_size(data, limit)
        except FrameError as error:
            raise TranscodeError(str(error)) from None
    return transcode_for(pydicom.dcmread(io.BytesIO(data)), accepted, limit)


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


def _checked_geometry(ds: Dataset, limit: FrameLimit) -> Geometry:
    """`ds`'s pixel geometry, refused when a frame exceeds `limit` or all frames what DICOM can hold."""
    shape = geometry(ds)
    limit.check(shape.native_bytes, "a frame")
    size = shape.native_bytes * shape.frames
    if size > MAX_NATIVE_BYTES:
        raise TranscodeError(f"the decoded pixel data would take {size} bytes, more than DICOM allows")
    return shape


def _extended_offsets(ds: Dataset) -> tuple[bytes, bytes] | None:
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        return ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths
    return None


def _one_frame(ds: Dataset, encoded: bytes) -> Dataset:
    """A one-frame data set of `encoded` (one frame's stream) with `ds`'s file meta and group 0028."""
    single = Dataset()
    single.file_meta = ds.file_meta
    for elem in ds.group_dataset(0x0028):
        if elem.keyword != "NumberOfFrames":
            single.add(elem)
    single.add_new(0x7FE00010, "OB", encapsulate([encoded]))
    single["PixelData"].is_undefined_length = True
    return single


def _frames(ds: Dataset, stored: UID, shape: Geometry) -> Iterator[tuple[Dataset, int | None]]:
    """What the decoder is given for each frame: (data set, frame index), each checked first.

    A compressed frame is taken out of the encapsulated Pixel Data, its own stream header
    checked against the DICOM header (:func:`check_codestream`), and decoded alone: what
    is checked is what the decoder reads.
    """
    if not stored.is_encapsulated:
        for index in range(shape.frames):
            yield ds, index
        return
    offsets = _extended_offsets(ds)
    for encoded in generate_frames(ds.PixelData, number_of_frames=shape.frames, extended_offsets=offsets):
        check_codestream(stored, encoded, shape)
        yield _one_frame(ds, encoded), None


def _failure(error: BaseException) -> str:
    """The first line of a decoder's error (its type when it says nothing)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _decode_pixels(ds: Dataset, out: Dataset, stored: UID, limit: FrameLimit) -> None:
    """Put `ds`'s decoded frames, and the pixel module that describes them, into `out`."""
    try:
        shape = _checked_geometry(ds, limit)
        decoder = get_decoder(stored)
    except FrameError as error:
        raise TranscodeError(str(error)) from None
    except NotImplementedError:
        raise TranscodeError(f"no decoder for {stored.name}") from None
    # pylibjpeg-rle decodes into a buffer of the frame's size; pydicom's own RLE decoder
    # grows a segment as far as its runs say.
    plugin = "pylibjpeg" if stored == RLELossless and "pylibjpeg" in decoder.available_plugins else ""
    # BytesIO hands its buffer over as the bytes value without copying it (getvalue).
    pixels = io.BytesIO()
    image_pixel: dict[str, Any] = {}
    decoded = 0
    try:
        for source, index in _frames(ds, stored, shape):
            array, image_pixel = decoder.as_array(source, index=index, as_rgb=True, decoding_plugin=plugin)
            pixels.write(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")))
            decoded += 1
            if pixels.tell() > shape.native_bytes * shape.frames:
                raise ValueError("the decoded frames are larger than the header declares")
    except FrameError as error:
        raise TranscodeError(str(error)) from None
    except BaseException as error:  # every decoder failure, whatever its library raises
        # pylibjpeg-rle's bounds checks panic (a BaseException) on runs past the frame.
        if not isinstance(error, Exception) and type(error).__module__ != "pyo3_runtime":
            raise
        raise TranscodeError(f"cannot decode {stored.name} pixel data: {_failure(error)}") from None
    if decoded != shape.frames:
        raise TranscodeError(f"the pixel data holds {decoded} frames, the header declares {shape.frames}")
    value = pixels.getvalue()
    if shape.bits == 1:  # decoded one byte per pixel; native 1-bit data is packed
        value = pack_bits(np.frombuffer(value, dtype=np.uint8), pad=False)
    if len(value) % 2:
        value += b"\0"
    _put_pixel_module(ds, out, value, shape.frames, image_pixel)
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
