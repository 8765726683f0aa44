"""The file meta information of a DICOM Part 10 stream (PS3.10 7.1): where it ends, and its values.

The meta group is always explicit VR little endian. :func:`meta_end` finds the first data set
byte once enough of a stream's beginning is buffered (from File Meta Information Group Length,
or by walking the group 0002 elements when that is absent); :func:`read_meta` reads the values.
"""

from __future__ import annotations

import struct

from storage.header import HeaderError

PREAMBLE = 132  # the 128-byte preamble and "DICM"
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


def meta_end(prefix: bytes | bytearray) -> int | None:
    """Offset of the first data set byte, once enough of the meta group is buffered."""
    if len(prefix) < PREAMBLE + 12:
        return None
    group, element = struct.unpack_from("<HH", prefix, PREAMBLE)
    if (group, element) == (2, 0) and prefix[PREAMBLE + 4 : PREAMBLE + 6] == b"UL":
        end = PREAMBLE + 12 + struct.unpack_from("<I", prefix, PREAMBLE + 8)[0]
        return end if len(prefix) >= end else None
    position = PREAMBLE
    while position + 8 <= len(prefix):
        if struct.unpack_from("<H", prefix, position)[0] != 2:
            return position
        vr = bytes(prefix[position + 4 : position + 6]).decode("latin-1")
        if vr in LONG_VRS:
            if position + 12 > len(prefix):
                return None
            position += 12 + struct.unpack_from("<I", prefix, position + 8)[0]
        else:
            position += 8 + struct.unpack_from("<H", prefix, position + 6)[0]
    return None


def read_meta(meta: bytes) -> dict[int, bytes]:
    """The values of the file meta elements (explicit VR little endian) in `meta`."""
    values: dict[int, bytes] = {}
    position = 0
    while position + 8 <= len(meta):
        group, element = struct.unpack_from("<HH", meta, position)
        vr = meta[position + 4 : position + 6].decode("latin-1")
        if vr in LONG_VRS:
            length = struct.unpack_from("<I", meta, position + 8)[0]
            position += 12
        else:
            length = struct.unpack_from("<H", meta, position + 6)[0]
            position += 8
        if group != 2 or position + length > len(meta):
            raise HeaderError("malformed: the file meta information is cut short")
        values[(group << 16) | element] = meta[position : position + length]
        position += length
    return values
