"""WADO-RS frames (PS3.18 10.4, 8.7.3): one multipart/related part per requested frame.

The viewer's own form (``Accept`` naming :data:`webviewer.transfer.PACKED`, or a bare
``application/octet-stream`` alone) is answered by :func:`webviewer.dicomweb.viewer_frame`
for one frame. Every other request (no ``Accept``, ``*/*``, ``multipart/related`` with a
``type`` and ``transfer-syntax``) gets PS3.18's answer, the first ``Accept`` item (by q) that
can be produced deciding:

- ``application/octet-stream`` (the default; transfer syntax Explicit or Implicit VR Little
  Endian): the frame's native samples, little endian, colour interleaved, as a decoder
  gives them (YBR JPEG as RGB); a compressed frame is decoded within the viewer's
  :class:`~webviewer.decodelimits.DecodeLimits`.
- ``image/jpeg``, ``image/jls``, ``image/jp2``, ``image/jpx``, ``image/x-dicom-rle`` (or
  ``image/dicom-rle``), or ``application/octet-stream`` with ``transfer-syntax=*`` or the
  stored syntax: the stored compressed bitstream, unchanged, when the object is stored in a
  syntax of that media type (a ``transfer-syntax`` other than the stored one cannot be
  produced: nothing is re-encoded). Each part's ``Content-Type`` names its transfer syntax.

Only the object's header and the blob chunks that hold each frame are decrypted
(:meth:`storage.archive.Archive.frame_bytes`); the parts after the first are made as they
are sent. A single-part media type (``image/jpeg`` alone) is read as its multipart form. 406 when
nothing asked can be produced, 404 for a frame number out of range, 400 for a malformed list.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from logging import Logger
from typing import NoReturn

import numpy as np
from flask import Response, abort, current_app, request
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    JPEG2000MC,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from storage.archive import Archive, InstanceInfo
from storage.framemap import FrameMapError, NoSuchFrameError
from webviewer import transfer
from webviewer.decodelimits import DecodeLimits, FrameError, check_codestream, geometry
from webviewer.dicomweb import load_header, viewer_frame
from webviewer.multipart import (
    MediaRange,
    Part,
    content_type,
    new_boundary,
    not_acceptable,
    parse_accept,
    related,
)
from webviewer.pixels import decode_array, single_frame

OCTETS = "application/octet-stream"
NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
COMPRESSED_TYPES: dict[str, tuple[str, ...]] = {
    "image/jpeg": (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1),
    "image/jls": (JPEGLSLossless, JPEGLSNearLossless),
    "image/jp2": (JPEG2000Lossless, JPEG2000),
    "image/jpx": (JPEG2000MCLossless, JPEG2000MC),
    "image/x-dicom-rle": (RLELossless,),
    "image/dicom-rle": (RLELossless,),
}
_LIST = re.compile(r"^[0-9]{1,9}(,[0-9]{1,9})*$")


@dataclass(frozen=True)
class Choice:
    """What the frames go out as: a media type and a transfer syntax; `native` when decoded to samples."""

    media_type: str
    syntax: str
    native: bool


def frame_numbers(frame_list: str) -> list[int]:
    """The frame numbers of a URL's list (``1,3,5``); 400 when it is not such a list."""
    if not _LIST.match(frame_list):
        abort(Response(f"{frame_list!r} is not a list of frame numbers", status=400, mimetype="text/plain"))
    return [int(number) for number in frame_list.split(",")]


def viewer_form(accept: str | None) -> bool:
    """Whether ``Accept`` asks for the viewer's form: :data:`~webviewer.transfer.PACKED`, or bare octets."""
    ranges = parse_accept(accept)
    if any(found.media_type == transfer.PACKED for found in ranges):
        return True
    return len(ranges) == 1 and ranges[0].media_type == OCTETS and not ranges[0].params


def media_type_of(syntax: str) -> str | None:
    """The compressed media type whose transfer syntaxes include `syntax`, or None."""
    return next((kind for kind, syntaxes in COMPRESSED_TYPES.items() if syntax in syntaxes), None)


def _choice(found: MediaRange, stored: str) -> Choice | None:
    """What `found` asks for, if it can be produced from frames stored in `stored`."""
    if found.media_type in ("*/*", "multipart/*"):
        return Choice(OCTETS, ExplicitVRLittleEndian, native=True)
    kind = (found.type_param or OCTETS) if found.media_type == "multipart/related" else found.media_type
    if kind == "*/*":  # dicomweb-client's default: multipart/related; type="*/*"
        kind = OCTETS
    wanted = found.transfer_syntax
    encapsulated = UID(stored).is_encapsulated
    if kind == OCTETS:
        if wanted is None or wanted in NATIVE or (wanted == "*" and not encapsulated):
            return Choice(OCTETS, wanted if wanted in NATIVE else ExplicitVRLittleEndian, native=True)
        if encapsulated and wanted in ("*", stored):
            return Choice(media_type_of(stored) or OCTETS, stored, native=False)
        return None
    if kind == "image/*" and encapsulated and wanted in (None, "*", stored):
        kind = media_type_of(stored) or kind
    if stored in COMPRESSED_TYPES.get(kind, ()) and wanted in (None, "*", stored):
        return Choice(kind, stored, native=False)
    return None


def choose(accept: str | None, stored: str) -> Choice:
    """The first ``Accept`` item (by q) that frames stored in `stored` can be sent as; 406 if none."""
    ranges = parse_accept(accept) or [MediaRange("multipart/related", {"type": OCTETS})]
    for found in ranges:
        chosen = _choice(found, stored)
        if chosen is not None:
            return chosen
    not_acceptable(f"frames stored as {UID(stored).name} cannot be sent as {accept}")


def _refuse(exc: FrameError) -> NoReturn:
    abort(Response(str(exc), status=exc.status, mimetype="text/plain"))


def native_frame(ds: Dataset, number: int, encoded: bytes, limits: DecodeLimits) -> bytes:
    """Frame `number` (`encoded`: its stored bytes) of the object whose header is `ds`, as native samples.

    Native samples are little endian (a big endian object's are swapped); a compressed
    frame is decoded within `limits`.
    """
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if not syntax.is_encapsulated:
        width = int(ds.BitsAllocated) // 8
        if syntax != ExplicitVRBigEndian or width < 2:
            return encoded
        return np.frombuffer(encoded, dtype=f">u{width}").astype(f"<u{width}").tobytes()
    shape = geometry(ds)
    size = shape.decoded_bytes("")
    limits.check(size, f"frame {number} ({shape.describe()})")
    check_codestream(syntax, encoded, shape)
    with limits.reserve(size):
        array = decode_array(single_frame(ds, encoded), None, syntax)
    return np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False)).tobytes()


@dataclass(frozen=True)
class _Frames:
    """The frames of one object as one answer sends them (nothing in it needs the request's context)."""

    info: InstanceInfo
    header: Dataset
    archive: Archive
    choice: Choice
    limits: DecodeLimits
    base: str

    def stored(self, number: int) -> bytes:
        """The stored bytes of frame `number` (only the blob's chunks that hold it are decrypted)."""
        try:
            return self.archive.frame_bytes(self.info, number)
        except FrameMapError as exc:
            raise FrameError(str(exc), 404 if isinstance(exc, NoSuchFrameError) else 422) from exc

    def part(self, number: int) -> Part:
        """Frame `number`'s part (:class:`FrameError` when it cannot be made)."""
        encoded = self.stored(number)
        body = native_frame(self.header, number, encoded, self.limits) if self.choice.native else encoded
        kind = f"{self.choice.media_type}; transfer-syntax={self.choice.syntax}"
        return Part(kind, (body,), f"{self.base}/frames/{number}")

    def rest(self, numbers: list[int], log: Logger) -> Iterator[Part]:
        """The parts of `numbers`, each made as it is sent; a frame that fails ends the answer (logged)."""
        for number in numbers:
            try:
                yield self.part(number)
            except FrameError as exc:
                log.warning("WADO-RS frames: the answer ends before frame %d: %s", number, exc)
                return


def answer(info: InstanceInfo, numbers: list[int], base: str) -> Response:
    """The frames `numbers` of `info` as the request's ``Accept`` asks (`base`: the instance's URL)."""
    accept = request.headers.get("Accept")
    if viewer_form(accept):
        if len(numbers) != 1:
            not_acceptable("one frame at a time in this form; ask multipart/related for several")
        return viewer_frame(info, numbers[0])
    choice = choose(accept, info.transfer_syntax)
    services = current_app.extensions["pacs"]
    header = load_header(info)
    try:
        if not services.archive.frame_map(info).has_pixels:
            raise FrameError("the object has no pixel data")
        count = geometry(header).frames
        missing = [number for number in numbers if not 1 <= number <= count]
        if missing:
            raise FrameError(f"frame {missing[0]} does not exist; the object has {count}", 404)
        frames = _Frames(info, header, services.archive, choice, services.decoding, base)
        head = frames.part(numbers[0])
    except FrameError as exc:
        _refuse(exc)
    boundary = new_boundary()
    parts = itertools.chain([head], frames.rest(numbers[1:], current_app.logger))
    response = Response(related(parts, boundary), content_type=content_type(choice.media_type, boundary))
    response.vary.add("Accept")
    return response
