"""Where each frame of a stored object lies: the frame map recorded at ingest, packed for the index.

:class:`FrameMap` is what :mod:`storage.walker` finds as an object streams in: where the data
set starts in the file, where the Pixel Data element starts (everything before it is the
object's header) and, for native data, where its value starts and how long a frame is; for
encapsulated data each fragment's position, length and first bytes, the Basic Offset Table
and the Extended Offset Table. Positions are offsets into the data set (after the file meta;
for a deflated object, into the inflated data set). :meth:`FrameMap.runs` says which byte
ranges hold frame `n`: arithmetic for native data; for encapsulated data the fragments that
an offset table starts it with, one fragment a frame when they are as many as the frames,
or else the fragments grouped by the JPEG / JPEG 2000 start markers their first bytes show.

:meth:`FrameMap.pack` / :func:`unpack` give the form kept in the ``instances.frame_map`` column.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from storage.errors import ArchiveError, NotFoundError

HEAD_BYTES = 4  # first bytes kept of every fragment
MAX_FRAGMENTS = 1 << 20  # more are not mapped: their frames are refused
EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_LENGTHS = 0x7FE00001, 0x7FE00002
_PHOTOMETRIC = 0x00280004
# The attributes the walk collects for the map beyond the header's, with the longest value taken.
MAP_TAGS = {
    EXTENDED_OFFSET_TABLE: 8 * MAX_FRAGMENTS,
    EXTENDED_OFFSET_LENGTHS: 8 * MAX_FRAGMENTS,
    _PHOTOMETRIC: 64,
}
_VERSION = 1
_FIXED = struct.Struct("<BBIQQQQQQIII?")
_FRAGMENT = struct.Struct(f"<QI{HEAD_BYTES}s")
# A frame of JPEG, JPEG-LS, JPEG XL (codestream or box), JPEG 2000 (codestream or JP2 box) starts so.
_STARTS = (b"\xff\xd8\xff", b"\xff\x0a", b"\x00\x00\x00\x0cJXL ", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP")


class FrameMapError(ArchiveError):
    """The object's frames cannot be told apart."""


class NoSuchFrameError(FrameMapError, NotFoundError):
    """The object has no such frame (or no pixel data)."""


@dataclass
class FrameMap:
    """The positions of an object's header and frames; see the module docstring."""

    dataset_start: int  # file offset of the first data set byte
    pixel_start: int  # data set offset of the Pixel Data element (the data set's end if there is none)
    frames: int  # Number of Frames (1 when absent)
    dataset_end: int = 0  # bytes of the data set (inflated, for a deflated object)
    encapsulated: bool = False
    value_start: int = 0  # data set offset of the Pixel Data value (0: there is none)
    value_length: int = 0  # bytes of native Pixel Data
    frame_bits: int = 0  # bits of one native frame
    fragments: list[tuple[int, int, bytes]] = field(default_factory=list)  # (offset, length, head)
    basic_offsets: list[int] = field(default_factory=list)
    extended_offsets: list[int] = field(default_factory=list)
    too_many_fragments: bool = False

    @property
    def has_pixels(self) -> bool:
        """Whether the object has Pixel Data."""
        return self.value_start > 0

    def runs(self, number: int) -> list[tuple[int, int]]:
        """The (data set offset, length) ranges of frame `number` (1-based), in order.

        A native frame whose bits do not start on a byte (1-bit data) is the range of bytes
        that holds it; :func:`bit_shift` says by how many bits it is offset. Raises
        :class:`NoSuchFrameError` for a frame the object does not have, :class:`FrameMapError`
        when it cannot be found.
        """
        if not self.has_pixels:
            raise NoSuchFrameError("the object has no pixel data")
        if not 1 <= number <= self.frames:
            raise NoSuchFrameError(f"frame {number} does not exist; the object has {self.frames}")
        if not self.encapsulated:
            first_bit = (number - 1) * self.frame_bits
            start = first_bit // 8
            end = min(-(-(first_bit + self.frame_bits) // 8), self.value_length)
            return [(self.value_start + start, max(0, end - start))]
        groups = self._groups()
        return [(offset, length) for offset, length, _ in groups[number - 1]]

    def bit_shift(self, number: int) -> int:
        """Bits between the first byte of native frame `number` and the frame's first bit."""
        return 0 if self.encapsulated else (number - 1) * self.frame_bits % 8

    def _groups(self) -> list[list[tuple[int, int, bytes]]]:
        """The fragments of every frame."""
        if self.too_many_fragments:
            raise FrameMapError(f"the pixel data has more than {MAX_FRAGMENTS} fragments")
        fragments = self.fragments
        table = self.extended_offsets or self.basic_offsets
        if table and len(table) == self.frames and fragments:
            return _by_offsets(fragments, table)
        if self.frames == 1:
            return [fragments]
        if len(fragments) == self.frames:
            return [[fragment] for fragment in fragments]
        groups: list[list[tuple[int, int, bytes]]] = []
        for fragment in fragments:
            if not groups or fragment[2].startswith(_STARTS):
                groups.append([])
            groups[-1].append(fragment)
        if len(groups) != self.frames:
            raise FrameMapError(
                f"the {len(fragments)} fragments of the pixel data cannot be told apart as "
                f"{self.frames} frames (no offset table)"
            )
        return groups

    def pack(self) -> bytes:
        """The map in the form the index keeps (compressed)."""
        fixed = _FIXED.pack(
            _VERSION,
            self.encapsulated,
            self.frames,
            self.dataset_end,
            self.dataset_start,
            self.pixel_start,
            self.value_start,
            self.value_length,
            self.frame_bits,
            len(self.fragments),
            len(self.basic_offsets),
            len(self.extended_offsets),
            self.too_many_fragments,
        )
        parts = [fixed, *(_FRAGMENT.pack(*fragment) for fragment in self.fragments)]
        parts.append(struct.pack(f"<{len(self.basic_offsets)}I", *self.basic_offsets))
        parts.append(struct.pack(f"<{len(self.extended_offsets)}Q", *self.extended_offsets))
        return zlib.compress(b"".join(parts), 1)


@dataclass
class PixelsSeen:
    """Where the top-level Pixel Data and its fragments are, as the walk finds them."""

    element_start: int | None = None
    value_start: int = 0
    length: int | None = None  # of native Pixel Data
    encapsulated: bool = False
    basic_offsets: bytes | None = None  # None until the first item (the Basic Offset Table) is seen
    fragments: list[tuple[int, int, bytearray]] = field(default_factory=list)
    head_left: int = 0
    too_many: bool = False

    def found(self, element_start: int, value_start: int, length: int) -> None:
        """Note the Pixel Data element at `element_start`, its value at `value_start`."""
        self.element_start, self.value_start = element_start, value_start
        self.encapsulated = length == 0xFFFFFFFF
        self.length = None if self.encapsulated else length

    def item(self, position: int, length: int) -> bool:
        """Note an item of the pixel data at `position`; True for the Basic Offset Table."""
        if self.basic_offsets is None:
            self.basic_offsets = b""
            return length <= 4 * MAX_FRAGMENTS
        if len(self.fragments) >= MAX_FRAGMENTS:
            self.too_many = True
            return False
        self.fragments.append((position, length, bytearray()))
        self.head_left = min(length, HEAD_BYTES)
        return False

    def take_head(self, data: memoryview) -> None:
        """Keep the first bytes of the current fragment."""
        self.fragments[-1][2].extend(data)
        self.head_left -= len(data)

    def frame_map(self, dataset_start: int, end: int, elements: dict[int, RawDataElement]) -> FrameMap:
        """The frame map of the walked object (see :func:`frame_map`); `end` is the data set's end."""
        return frame_map(
            elements,
            dataset_start=dataset_start,
            pixel_start=end if self.element_start is None else self.element_start,
            dataset_end=end,
            value_start=self.value_start,
            value_length=self.length or 0,
            encapsulated=self.encapsulated,
            fragments=[(offset, length, bytes(head)) for offset, length, head in self.fragments],
            basic_offsets=self.basic_offsets or b"",
            too_many=self.too_many,
        )


def frame_map(
    elements: dict[int, RawDataElement],
    *,
    dataset_start: int,
    pixel_start: int,
    dataset_end: int,
    value_start: int,
    value_length: int,
    encapsulated: bool,
    fragments: list[tuple[int, int, bytes]],
    basic_offsets: bytes,
    too_many: bool,
) -> FrameMap:
    """The map of an object from the walk's positions and its collected top-level `elements`."""
    ds = Dataset(dict(elements))
    little = all(element.is_little_endian for element in elements.values())
    extended = elements.get(EXTENDED_OFFSET_TABLE)
    return FrameMap(
        dataset_start=dataset_start,
        pixel_start=pixel_start,
        frames=max(1, _whole(ds, "NumberOfFrames")),
        dataset_end=dataset_end,
        encapsulated=encapsulated,
        value_start=value_start,
        value_length=0 if encapsulated else value_length,
        frame_bits=0 if encapsulated else _frame_bits(ds),
        fragments=fragments,
        basic_offsets=_numbers(basic_offsets, "I", little),
        extended_offsets=_numbers(extended.value if extended is not None else b"", "Q", little),
        too_many_fragments=too_many,
    )


def _numbers(data: bytes, kind: str, little: bool) -> list[int]:
    """The unsigned integers (struct `kind`) packed in `data`, a trailing part ignored."""
    count = len(data) // struct.calcsize(kind)
    return list(struct.unpack_from(f"{'<' if little else '>'}{count}{kind}", data))


def _whole(ds: Dataset, keyword: str) -> int:
    """`keyword`'s value as a whole number; 0 when absent or unreadable."""
    try:
        return int(ds.get(keyword) or 0)
    except (TypeError, ValueError):
        return 0


def _frame_bits(ds: Dataset) -> int:
    """Bits of one native frame: Rows x Columns x Samples x Bits Allocated (YBR 4:2:2: 2 samples)."""
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = 2 if photometric in ("YBR_FULL_422", "YBR_PARTIAL_422") else _whole(ds, "SamplesPerPixel") or 1
    return _whole(ds, "Rows") * _whole(ds, "Columns") * samples * _whole(ds, "BitsAllocated")


def _by_offsets(
    fragments: list[tuple[int, int, bytes]], table: list[int]
) -> list[list[tuple[int, int, bytes]]]:
    """Fragments grouped by an offset table (offsets of each frame's first item, from the first one)."""
    first_item = fragments[0][0] - 8
    where = {offset - 8 - first_item: index for index, (offset, _, _) in enumerate(fragments)}
    starts = []
    for offset in table:
        if offset not in where:
            raise FrameMapError(f"the offset table points at {offset}, where no fragment starts")
        starts.append(where[offset])
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise FrameMapError("the offset table is not in ascending order")
    return [fragments[start:end] for start, end in zip(starts, [*starts[1:], len(fragments)], strict=True)]


def unpack(packed: bytes) -> FrameMap:
    """The :class:`FrameMap` that :meth:`FrameMap.pack` gave `packed`."""
    data = zlib.decompress(packed)
    version, encapsulated, frames, end, *positions, fragments, basic, extended, too_many = _FIXED.unpack_from(
        data
    )
    if version != _VERSION:
        raise FrameMapError(f"frame map version {version} is not known")
    dataset_start, pixel_start, value_start, value_length, frame_bits = positions
    at = _FIXED.size
    found = []
    for _ in range(fragments):
        found.append(_FRAGMENT.unpack_from(data, at))
        at += _FRAGMENT.size
    basic_offsets = list(struct.unpack_from(f"<{basic}I", data, at))
    extended_offsets = list(struct.unpack_from(f"<{extended}Q", data, at + 4 * basic))
    return FrameMap(
        dataset_start,
        pixel_start,
        frames,
        end,
        bool(encapsulated),
        value_start,
        value_length,
        frame_bits,
        [(offset, length, head) for offset, length, head in found],
        basic_offsets,
        extended_offsets,
        bool(too_many),
    )
