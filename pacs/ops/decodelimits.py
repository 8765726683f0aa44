"""What decoding one frame may allocate, decided from headers before any decoder runs.

A stored object is untrusted: its header can declare a 65535 x 65535 frame over a few
bytes of RLE, a JPEG or JPEG-LS stream's own frame header can claim far more than the
DICOM header, a JPEG 2000 stream can cut a small image into tens of thousands (or, in
pydicom's ``JPEG2000-embedded-sequence-delimiter.dcm``, millions) of tiles (openjpeg
spends about 10 KiB on each before it decodes anything), and a deflated data set can
inflate a thousandfold. :func:`geometry` and :func:`check_codestream` refuse those from
the headers alone, :func:`check_inflated_size` counts a deflated data set without keeping
it, and a :class:`FrameLimit` refuses a frame above the largest one decoded. The viewer
(``webviewer.decodelimits``, ``[web] max_frame_mb``) and the transcoder on retrieve
(:mod:`pacs.ops.transcode`, ``[dicom] max_frame_mb``) both decode only past these checks.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from storage.errors import PacsError

MAX_J2K_TILES = 1024
_BITS_ALLOCATED = (1, 8, 16, 32, 64)
# Start-of-frame markers: JPEG's SOF0-SOF15 (not DHT, JPG, DAC) and JPEG-LS's SOF55.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
_INFLATE_CHUNK = 1 << 20


class FrameError(PacsError, ValueError):
    """The object has no such frame, or its pixel data cannot or may not be decoded.

    `status` is the HTTP status that answers it on the web: 404 (no such frame), 422
    (cannot or may not be decoded) or 503 (the viewer's decoding budget stayed taken).
    """

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def mib(size: int) -> str:
    """`size` bytes in MiB with one decimal (``512.0 MiB``), as refusals state sizes."""
    return f"{size / 2**20:,.1f} MiB"


class FrameLimit:
    """The largest frame decoded, in bytes, and the setting that says so (named in refusals)."""

    def __init__(self, max_frame_bytes: int, setting: str) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.setting = setting

    def check(self, size: int, what: str) -> None:
        """Refuse a frame of `size` decoded bytes (`what` describes it) above the maximum."""
        if size > self.max_frame_bytes:
            raise FrameError(
                f"{what} would decode to {mib(size)}; {self.setting} allows "
                f"{mib(self.max_frame_bytes)} per frame"
            )


@dataclass(frozen=True)
class Geometry:
    """The header's description of the pixel data, checked."""

    rows: int
    columns: int
    samples: int
    bits: int
    frames: int

    @property
    def native_bytes(self) -> int:
        """Bytes of one frame as decoded, before any palette (a whole byte per sample of 1 to 8 bits)."""
        return self.rows * self.columns * self.samples * max(1, self.bits // 8)

    def decoded_bytes(self, photometric: str) -> int:
        """Bytes of one decoded frame (palette colour counts as its 16-bit RGB expansion)."""
        if photometric == "PALETTE COLOR":
            return self.rows * self.columns * 3 * max(self.bits // 8, 2)
        return self.native_bytes

    def describe(self) -> str:
        return f"{self.rows} x {self.columns}, {self.samples} sample(s) of {self.bits} bits"


def _whole(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise FrameError(f"the header has no {keyword}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FrameError(f"the header's {keyword} is not a whole number") from None


def geometry(ds: Dataset) -> Geometry:
    """Rows, Columns, Samples per Pixel, Bits Allocated and Number of Frames of `ds`, checked."""
    found = Geometry(
        rows=_whole(ds, "Rows"),
        columns=_whole(ds, "Columns"),
        samples=_whole(ds, "SamplesPerPixel", 1),
        bits=_whole(ds, "BitsAllocated"),
        frames=_whole(ds, "NumberOfFrames", 1),
    )
    if not (0 < found.rows <= 0xFFFF and 0 < found.columns <= 0xFFFF):
        raise FrameError(f"the header declares a frame of {found.rows} x {found.columns}")
    if found.samples not in (1, 3):
        raise FrameError(f"{found.samples} samples per pixel are not supported")
    if found.bits not in _BITS_ALLOCATED:
        raise FrameError(f"{found.bits} bits allocated are not supported")
    if found.frames < 1:
        raise FrameError(f"the header declares {found.frames} frames")
    return found


def _jpeg_frame_header(stream: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) of a JPEG or JPEG-LS stream's start-of-frame segment."""
    if stream[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(stream):
        if stream[position] != 0xFF:
            return None
        marker = stream[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker in _SOF:
            if position + 10 > len(stream):
                return None
            rows, columns, components = struct.unpack_from(">HHB", stream, position + 5)
            return rows, columns, components
        if marker in (0xD9, 0xDA):  # the image ends, or a scan starts, before any frame header
            return None
        position += 2 + struct.unpack_from(">H", stream, position + 2)[0]
    return None


def _j2k_codestream_start(stream: bytes) -> int | None:
    """Where the JPEG 2000 codestream starts: 0, or inside a JP2 file's codestream box."""
    if stream[:4] == b"\xff\x4f\xff\x51":
        return 0
    if stream[4:8] != b"jP  ":
        return None
    position = 0
    while position + 8 <= len(stream):
        length, kind = struct.unpack_from(">I4s", stream, position)
        header = 8
        if length == 1 and position + 16 <= len(stream):
            length, header = struct.unpack_from(">Q", stream, position + 8)[0], 16
        if kind == b"jp2c":
            return position + header
        if length < header:
            return None
        position += length
    return None


def _j2k_size(stream: bytes) -> tuple[tuple[int, int, int], int] | None:
    """((rows, columns, components), tiles) from a JPEG 2000 stream's SIZ segment."""
    start = _j2k_codestream_start(stream)
    if start is None or stream[start : start + 4] != b"\xff\x4f\xff\x51" or len(stream) < start + 42:
        return None
    x, y, x_origin, y_origin, tile_x, tile_y, tile_x_origin, tile_y_origin, components = struct.unpack_from(
        ">IIIIIIIIH", stream, start + 8
    )
    if tile_x == 0 or tile_y == 0 or x <= x_origin or y <= y_origin:
        return None
    across = -(-(x - tile_x_origin) // tile_x)
    down = -(-(y - tile_y_origin) // tile_y)
    return (y - y_origin, x - x_origin, components), across * down


def check_codestream(transfer_syntax: str, stream: bytes, expected: Geometry) -> None:
    """Refuse a compressed frame whose own header disagrees with `expected` (or is unreadable)."""
    if transfer_syntax in JPEGTransferSyntaxes or transfer_syntax in JPEGLSTransferSyntaxes:
        kind, found = "JPEG", _jpeg_frame_header(stream)
    elif transfer_syntax in JPEG2000TransferSyntaxes:
        kind, size = "JPEG 2000", _j2k_size(stream)
        found = size[0] if size is not None else None
        if size is not None and size[1] > MAX_J2K_TILES:
            tiles = f"{size[1]:,} tiles (at most {MAX_J2K_TILES} decoded)"
            raise FrameError(f"the JPEG 2000 stream has {tiles}")
    else:
        return
    if found is None:
        raise FrameError(f"the {kind} stream has no readable frame header")
    wanted = (expected.rows, expected.columns, expected.samples)
    if found != wanted:
        raise FrameError(
            f"the {kind} stream declares {found[0]} x {found[1]} with {found[2]} component(s), "
            f"the header {wanted[0]} x {wanted[1]} with {wanted[2]}"
        )


def _past_file_meta(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group != 2


def check_inflated_size(data: bytes, limit: FrameLimit) -> None:
    """Refuse a deflated Part 10 object whose data set inflates to more than `limit`'s largest frame.

    The data set is inflated a chunk at a time and counted, not kept.
    """
    source = io.BytesIO(data)
    try:
        read_preamble(source, False)
        read_dataset(source, is_implicit_VR=False, is_little_endian=True, stop_when=_past_file_meta)
    except Exception as exc:  # pydicom raises several kinds on a malformed file meta group
        raise FrameError(f"the file meta information cannot be read: {type(exc).__name__}") from exc
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending, total = data[source.tell() :], 0
    try:
        while pending and not inflater.eof:
            total += len(inflater.decompress(pending, _INFLATE_CHUNK))
            pending = inflater.unconsumed_tail
            if total > limit.max_frame_bytes:
                raise FrameError(
                    f"the deflated data set inflates to more than {mib(limit.max_frame_bytes)}, "
                    f"the largest frame decoded ({limit.setting})"
                )
    except zlib.error as exc:
        raise FrameError(f"the deflated data set is damaged: {exc}") from exc
