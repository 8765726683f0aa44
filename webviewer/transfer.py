"""How a large frame travels to the viewer: losslessly packed, with a preview first.

A frame of at least :data:`MIN_PACKED_PIXELS` pixels, asked for with ``Accept:``
:data:`PACKED` (the viewer's ``transfer.js`` does), answers with a body of parts: first a
preview (the frame reduced :data:`PREVIEW_FACTOR` times per axis by block means, with its
own ``X-Rows``/``X-Columns``, ``X-Preview-Of: ROWSxCOLUMNS`` and the pixel spacing scaled to
the same extent), then the frame itself. Every other request gets the raw samples.

A part is an 8-byte header (the big-endian lengths of a JSON object and of the payload;
the payload length of the last part is 0: it runs to the end of the body) followed by the
JSON object (the part's ``X-`` headers, as :meth:`webviewer.pixels.Frame.headers` gives
them) and the payload. The payload is :data:`CODEC`, chosen by measurement (the
ARCHITECTURE.md section "Frame transfer"): each sample minus the one above it (modulo its
width, so signedness does not matter; colour channels apart), zigzag-mapped so that small
differences of either sign are small numbers, its bytes split into planes (least
significant first) per strip of :data:`STRIP_ROWS` rows, and the whole compressed as one
zlib (RFC 1950) stream, which the browser inflates with its ``DecompressionStream``. The
full frame is encoded strip by strip as it is sent, so encoding, transfer and decoding
overlap. The decoding is exact: the browser gets the very samples of the raw response.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from collections.abc import Iterator

import numpy as np

from webviewer.pixels import Frame

PACKED = "application/vnd.pacs.frame-parts"
CODEC = "up-zigzag-planes-deflate"
MIN_PACKED_PIXELS = 4_000_000
PREVIEW_FACTOR = 4
STRIP_ROWS = 128
# zlib level 1 matching runs only: as small as level 6 (noise defeats its matches) at a third of its time.
_LEVEL, _STRATEGY = 1, zlib.Z_RLE
_PART = struct.Struct(">II")
_WIDTHS = {"uint8": 1, "int8": 1, "rgb8": 1, "uint16": 2, "int16": 2, "float32": 4}
_CHANNELS = {"rgb8": 3}


def accepts_packed(accept: str) -> bool:
    """Whether an ``Accept`` header value names :data:`PACKED`."""
    return any(item.split(";", 1)[0].strip().lower() == PACKED for item in accept.split(","))


def packs(frame: Frame) -> bool:
    """Whether `frame` is large enough to travel packed."""
    return frame.rows * frame.columns >= MIN_PACKED_PIXELS


def _grid(frame: Frame) -> np.ndarray:
    """The samples of `frame` as a (rows, columns, channels) array of unsigned integers of their width."""
    width = _WIDTHS[frame.sample_format]
    channels = _CHANNELS.get(frame.sample_format, 1)
    flat = np.frombuffer(frame.samples, dtype=f"<u{width}")
    return flat.reshape(frame.rows, frame.columns, channels)


def encode_strip(strip: np.ndarray, above: np.ndarray | None) -> bytes:
    """The byte planes of a strip's zigzagged differences to the row above (`above`: its last row, or None).

    `strip` is (rows, columns, channels) of an unsigned dtype; the first row of a frame is
    taken as it is (the row above it counts as zeros).
    """
    previous = np.empty_like(strip)
    previous[1:] = strip[:-1]
    previous[0] = 0 if above is None else above
    signed = np.dtype(f"<i{strip.dtype.itemsize}")
    difference = (strip - previous).view(signed)
    zigzag = (difference << 1) ^ (difference >> (8 * strip.dtype.itemsize - 1))
    planes = zigzag.reshape(-1).view(np.uint8).reshape(-1, strip.dtype.itemsize).T
    return np.ascontiguousarray(planes).tobytes()


def encode(frame: Frame) -> Iterator[bytes]:
    """The :data:`CODEC` payload of `frame`, in pieces as its strips are compressed."""
    grid = _grid(frame)
    compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, 15, 9, _STRATEGY)
    above = None
    for start in range(0, frame.rows, STRIP_ROWS):
        strip = grid[start : start + STRIP_ROWS]
        piece = compressor.compress(encode_strip(strip, above))
        if piece:
            yield piece
        above = strip[-1]
    yield compressor.flush()


def preview(frame: Frame) -> Frame:
    """`frame` reduced :data:`PREVIEW_FACTOR` times per axis, each pixel the rounded mean of its block.

    Blocks at the right and bottom edges that the frame does not fill repeat its edge.
    The pixel spacing is scaled so that the preview spans the same extent as the frame.
    """
    factor = PREVIEW_FACTOR
    rows, columns = -(-frame.rows // factor), -(-frame.columns // factor)
    dtype = np.dtype(frame.sample_format if frame.sample_format != "rgb8" else "uint8").newbyteorder("<")
    grid = _grid(frame).view(dtype)
    edges = ((0, rows * factor - frame.rows), (0, columns * factor - frame.columns), (0, 0))
    padded = np.pad(grid, edges, "edge")
    blocks = padded.reshape(rows, factor, columns, factor, -1)
    if dtype.kind == "f":
        means = blocks.mean(axis=(1, 3), dtype=np.float64).astype(dtype)
    else:
        sums = blocks.sum(axis=(1, 3), dtype=np.int64)
        means = ((sums + factor * factor // 2) // (factor * factor)).astype(dtype)
    spacing = frame.spacing
    if spacing is not None:
        spacing = (spacing[0] * frame.rows / rows, spacing[1] * frame.columns / columns)
    return dataclasses.replace(frame, samples=means.tobytes(), rows=rows, columns=columns, spacing=spacing)


def _part_header(headers: dict[str, str], payload_bytes: int) -> bytes:
    described = json.dumps({**headers, "X-Codec": CODEC, "X-Strip-Rows": str(STRIP_ROWS)}).encode()
    return _PART.pack(len(described), payload_bytes) + described


def parts(frame: Frame) -> Iterator[bytes]:
    """The :data:`PACKED` body of `frame`: its preview part, then the frame's part, in pieces."""
    small = preview(frame)
    payload = b"".join(encode(small))
    headers = {**small.headers(), "X-Preview-Of": f"{frame.rows}x{frame.columns}"}
    yield _part_header(headers, len(payload)) + payload
    yield _part_header(frame.headers(), 0)
    yield from encode(frame)
