"""Checking a DICOM Part 10 byte stream as it passes, and collecting its identifying header.

:class:`Part10Walker` is fed the bytes of an object in pieces of any size, as they arrive
from a socket or a file, and never holds more than one element header and the few short
attributes the index needs. It checks the preamble and file meta, follows the element
structure of the data set (nested sequences and items, encapsulated pixel data, deflate),
and at :meth:`Part10Walker.close` proves the object is complete. Values are skipped, not
decoded: only the wanted top-level attributes are kept, as pydicom raw elements converted
by pydicom itself (:func:`storage.header.header_from`), and where Pixel Data and its
fragments lie (:class:`storage.framemap.FrameMap`). Asked to (`keep_head`), it also keeps a
copy of the data set before Pixel Data while that stays within `keep_head` bytes, for the
object's DICOM JSON (:mod:`storage.instance_json`).

The identifying header is everything before group 0029; it must end within a
configured number of bytes, so that a peer cannot make us read a huge prefix before
the object can be identified.
"""

from __future__ import annotations

import functools
import struct
import zlib
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from storage.filemeta import LONG_VRS, PREAMBLE, meta_end, read_meta
from storage.framemap import MAP_TAGS, FrameMap, PixelsSeen
from storage.header import WANTED_TAGS, HeaderError, InstanceHeader, header_from

DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
PIXEL_DATA = 0x7FE00010
HEADER_ENDS_AT = 0x00290000  # the first tag that is no longer part of the identifying header
MAX_ATTRIBUTE = 4096
MAX_META = 1 << 16
_UNDEFINED = 0xFFFFFFFF
_INFLATE_STEP = 1 << 16  # most bytes inflated per call
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TRANSFER_SYNTAX = 0x00020010
_WANTED = frozenset(WANTED_TAGS) | frozenset(MAP_TAGS)


@dataclass
class _Frame:
    """An open container: a sequence, an item, or encapsulated pixel data."""

    kind: str  # "sequence", "item" or "fragments"
    end: int | None  # absolute end offset, None for undefined length
    explicit: bool


@dataclass
class WalkedObject:
    """What the walk of a complete object found."""

    transfer_syntax: str
    elements: dict[int, RawDataElement]
    header_bytes: int
    dataset_bytes: int
    pixel_data_length: int | None  # None: no native Pixel Data (absent or encapsulated)
    explicit: bool
    little_endian: bool
    frame_map: FrameMap
    head: bytes | None = None  # the data set before Pixel Data, if kept

    def header(self) -> InstanceHeader:
        """The validated header of the object (see :func:`storage.header.header_from`)."""
        return header_from(
            self.elements,
            self.transfer_syntax,
            implicit=not self.explicit,
            little_endian=self.little_endian,
            pixel_data_length=self.pixel_data_length,
        )


@dataclass
class _DatasetParser:
    """The element structure of a data set, followed a piece at a time."""

    explicit: bool
    little: bool
    max_header: int
    max_depth: int
    keep_head: int = 0
    position: int = 0
    elements: dict[int, RawDataElement] = field(default_factory=dict)
    header_end: int | None = None
    pixels: PixelsSeen = field(default_factory=PixelsSeen)
    _pending: bytearray = field(default_factory=bytearray)
    _skip: int = 0
    _collect: tuple[int, str | None, int] | None = None
    _value: bytearray = field(default_factory=bytearray)
    _stack: list[_Frame] = field(default_factory=list)
    _head: bytearray | None = None

    def __post_init__(self) -> None:
        if self.keep_head:
            self._head = bytearray()
        self._u16 = struct.Struct("<H" if self.little else ">H")
        self._u32 = struct.Struct("<I" if self.little else ">I")
        self._tag_format = struct.Struct("<HH" if self.little else ">HH")

    def feed(self, data: memoryview) -> None:
        """Follow the structure through `data`; raise :class:`HeaderError` when it is malformed."""
        if self._head is not None and self.pixels.element_start is None:
            self._head += data
        offset, size = 0, len(data)
        while offset < size:
            if self._skip:
                step = min(self._skip, size - offset)
                if self._collect is not None:
                    self._value += data[offset : offset + step]
                elif self.pixels.head_left:
                    self.pixels.take_head(data[offset : offset + min(step, self.pixels.head_left)])
                self._skip -= step
                offset += step
                self.position += step
                if not self._skip:
                    self._finish_value()
                    self._close_ended_frames()
                continue
            need = self._header_size()
            take = min(need - len(self._pending), size - offset)
            self._pending += data[offset : offset + take]
            offset += take
            self.position += take
            # At 8 bytes an explicit VR may turn out to be long: the header is then 12.
            if len(self._pending) == need and self._header_size() == need:
                self._element()
        if self.header_end is None and self.position > self.max_header:
            raise HeaderError(f"the header does not end within {self.max_header} bytes")
        if self._head is not None:
            self._trim_head()

    def _trim_head(self) -> None:
        """Drop what the kept head holds from Pixel Data on, or all of it once it is too long."""
        assert self._head is not None
        end = self.pixels.element_start if self.pixels.element_start is not None else len(self._head)
        if end > self.keep_head:
            self._head = None
        elif end < len(self._head):
            del self._head[end:]

    def head(self) -> bytes | None:
        """The data set before Pixel Data, if it was kept."""
        return bytes(self._head) if self._head is not None else None

    def _header_size(self) -> int:
        """Bytes of the element header now being read (8, or 12 for an explicit long VR)."""
        if len(self._pending) >= 6 and self._explicit_here() and not self._is_delimiter():
            return 12 if bytes(self._pending[4:6]).decode("latin-1") in LONG_VRS else 8
        return 8

    def _explicit_here(self) -> bool:
        return self._stack[-1].explicit if self._stack else self.explicit

    def _is_delimiter(self) -> bool:
        return self._tag_format.unpack_from(self._pending)[0] == 0xFFFE

    def _element(self) -> None:
        group, element = self._tag_format.unpack_from(self._pending)
        tag = (group << 16) | element
        start = self.position - len(self._pending)
        frame = self._stack[-1] if self._stack else None
        if group == 0xFFFE:
            length = self._u32.unpack_from(self._pending, 4)[0]
            self._pending.clear()
            self._delimiter(tag, length, frame)
        else:
            if frame is not None and frame.kind != "item":
                raise HeaderError(f"malformed: expected an item, found {_name(tag)}")
            vr, length = self._vr_and_length(tag)
            self._pending.clear()
            self._value_of(tag, vr, length, start, frame is None)
        self._close_ended_frames()

    def _vr_and_length(self, tag: int) -> tuple[str | None, int]:
        if not self._explicit_here():
            return None, self._u32.unpack_from(self._pending, 4)[0]
        vr = bytes(self._pending[4:6]).decode("latin-1")
        if len(self._pending) == 12:
            return vr, self._u32.unpack_from(self._pending, 8)[0]
        return vr, self._u16.unpack_from(self._pending, 6)[0]

    def _value_of(self, tag: int, vr: str | None, length: int, start: int, top: bool) -> None:
        if top and self.header_end is None and tag >= HEADER_ENDS_AT:
            if start > self.max_header:
                raise HeaderError(f"the header does not end within {self.max_header} bytes")
            self.header_end = start
        if top and tag == PIXEL_DATA:
            self.pixels.found(start, self.position, length)
        if length == _UNDEFINED:
            if top and tag == PIXEL_DATA:
                self._push("fragments", None, self._explicit_here())
            elif vr in (None, "SQ", "UN"):
                # An undefined-length UN holds a sequence encoded in implicit VR (PS3.5 6.2.2).
                self._push("sequence", None, vr == "SQ")
            else:
                raise HeaderError(f"malformed: {_name(tag)} has an undefined length")
            return
        if vr == "SQ" or (vr is None and _is_sequence(tag)):
            self._push("sequence", self.position + length, self._explicit_here())
            return
        if top and tag in _WANTED:
            if length > MAP_TAGS.get(tag, MAX_ATTRIBUTE):
                raise HeaderError(f"malformed: {_name(tag)} is {length} bytes long")
            self._collect = (tag, vr, length)
        self._skip = length
        if not length:
            self._finish_value()

    def _finish_value(self) -> None:
        if self._collect is None:
            return
        tag, vr, length = self._collect
        value = bytes(self._value)
        self._value.clear()
        self._collect = None
        if tag == _ITEM:
            self.pixels.basic_offsets = value
            return
        self.elements[tag] = RawDataElement(
            Tag(tag), vr, length, value, 0, not self._explicit_here(), self.little, True, False
        )

    def _delimiter(self, tag: int, length: int, frame: _Frame | None) -> None:
        if tag == _ITEM and frame is not None and frame.kind == "fragments":
            if length == _UNDEFINED:
                raise HeaderError("malformed: a pixel data fragment has an undefined length")
            self._skip = length
            if self.pixels.item(self.position, length):
                self._collect = (_ITEM, None, length)  # the Basic Offset Table
            if not length:
                self._finish_value()
            return
        if tag == _ITEM and frame is not None and frame.kind == "sequence":
            self._push("item", None if length == _UNDEFINED else self.position + length, frame.explicit)
            return
        if tag == _ITEM_END and frame is not None and frame.kind == "item" and frame.end is None:
            self._stack.pop()
            return
        if tag == _SEQUENCE_END and frame is not None and frame.kind != "item" and frame.end is None:
            self._stack.pop()
            return
        raise HeaderError(f"malformed: unexpected delimiter {_name(tag)}")

    def _push(self, kind: str, end: int | None, explicit: bool) -> None:
        if sum(1 for f in self._stack if f.kind == "sequence") >= self.max_depth:
            raise HeaderError(f"malformed: sequences nested more than {self.max_depth} deep")
        self._stack.append(_Frame(kind, end, explicit))

    def _close_ended_frames(self) -> None:
        while self._stack and self._stack[-1].end is not None and not self._skip:
            end = self._stack[-1].end
            assert end is not None
            if self.position < end:
                return
            if self.position > end:
                raise HeaderError("malformed: an element runs past the end of its sequence item")
            self._stack.pop()

    def check_complete(self) -> None:
        """Raise :class:`HeaderError` unless the data set ended between two top-level elements."""
        if self._skip or self._pending:
            raise HeaderError("truncated: the data set ends inside an element")
        if self._stack:
            raise HeaderError("truncated: the data set ends inside a sequence")


def _name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@functools.cache
def _is_sequence(tag: int) -> bool:
    """Whether the data dictionary makes `tag` a sequence (for implicit VR, which does not say)."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


class Part10Walker:
    """Follows a DICOM Part 10 object fed in pieces; see the module docstring."""

    def __init__(self, *, max_header: int, max_depth: int = 16, keep_head: int = 0) -> None:
        self.max_header = max_header
        self.max_depth = max_depth
        self.keep_head = keep_head
        self._prefix = bytearray()
        self._dataset_start = 0
        self.transfer_syntax = ""
        self._dataset: _DatasetParser | None = None
        self._inflater: zlib._Decompress | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Follow the next piece of the object; raise :class:`HeaderError` as soon as it is wrong."""
        if self._dataset is None:
            self._prefix += data
            rest = self._take_meta()
            if rest is None:
                return
            data = rest
        self._feed_dataset(memoryview(data))

    def _take_meta(self) -> bytes | None:
        """Parse preamble and file meta once buffered; return the data set bytes after them."""
        prefix = self._prefix
        if len(prefix) < PREAMBLE:
            return None
        if prefix[128:132] != b"DICM":
            raise HeaderError("not a DICOM Part 10 file (no 'DICM' prefix)")
        end = meta_end(prefix)
        if end is None:
            if len(prefix) > MAX_META:
                raise HeaderError("malformed: the file meta information does not end")
            return None
        elements = read_meta(bytes(prefix[PREAMBLE:end]))
        syntax = elements.get(_TRANSFER_SYNTAX, b"").decode("ascii", "replace").strip("\0 ")
        if not syntax:
            raise HeaderError("missing Transfer Syntax UID")
        self.transfer_syntax = syntax
        self._dataset_start = end
        self._dataset = _DatasetParser(
            explicit=syntax != IMPLICIT_LITTLE,
            little=syntax != EXPLICIT_BIG,
            max_header=self.max_header,
            max_depth=self.max_depth,
            keep_head=self.keep_head,
        )
        if syntax == DEFLATED:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        rest = bytes(prefix[end:])
        self._prefix = bytearray()
        return rest

    def _feed_dataset(self, data: memoryview) -> None:
        assert self._dataset is not None
        if self._inflater is None:
            self._dataset.feed(data)
            return
        if self._inflater.eof:
            return
        chunk: bytes | memoryview = data
        while not self._inflater.eof:
            inflated = self._inflater.decompress(chunk, _INFLATE_STEP)
            self._dataset.feed(memoryview(inflated))
            chunk = self._inflater.unconsumed_tail
            # With all input taken, output may still be pending (a full step came out): ask again.
            if not chunk and len(inflated) < _INFLATE_STEP:
                break

    def close(self) -> WalkedObject:
        """Check that the object is complete and return what the walk found."""
        dataset = self._dataset
        if dataset is None:
            if len(self._prefix) >= PREAMBLE and self._prefix[128:132] == b"DICM":
                raise HeaderError("truncated: the file ends inside the file meta information")
            raise HeaderError("not a DICOM Part 10 file (no 'DICM' prefix)")
        if self._inflater is not None and not self._inflater.eof:
            raise HeaderError("truncated: the deflated data set ends early")
        dataset.check_complete()
        if not dataset.position:
            raise HeaderError("the data set is empty")
        return WalkedObject(
            transfer_syntax=self.transfer_syntax,
            elements=dataset.elements,
            header_bytes=dataset.header_end if dataset.header_end is not None else dataset.position,
            dataset_bytes=dataset.position,
            pixel_data_length=dataset.pixels.length,
            explicit=dataset.explicit,
            little_endian=dataset.little,
            frame_map=dataset.pixels.frame_map(self._dataset_start, dataset.position, dataset.elements),
            head=dataset.head(),
        )
