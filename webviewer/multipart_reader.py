"""Reading a multipart/related request body (RFC 2046, RFC 2387) as it streams in, in bounded memory.

:class:`MultipartReader` reads the body from a file object in pieces of :data:`READ_SIZE` and
hands each part's content on as it arrives (:meth:`MultipartReader.parts` yields a
:class:`Part` whose :meth:`Part.chunks` come straight from the stream): it never holds more
than one piece and the few bytes that might start a delimiter split across two reads, so a
part of gigabytes costs what a piece does. A body that breaks the syntax (no delimiter, a
part's header fields too long, the end before the close delimiter) raises
:class:`MultipartError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from storage.errors import PacsError

READ_SIZE = 1 << 20
MAX_PART_HEADER = 16 * 1024
_CRLF = b"\r\n"
_HEADER_END = b"\r\n\r\n"


class MultipartError(PacsError):
    """The body is not a well-formed multipart body."""


class Part:
    """One body part: its header fields (names in lower case) and its content, read as it comes."""

    def __init__(self, reader: MultipartReader, headers: dict[str, str]) -> None:
        self.headers = headers
        self._reader = reader

    @property
    def content_type(self) -> str:
        """The part's Content-Type field ("" if it has none)."""
        return self.headers.get("content-type", "")

    def chunks(self) -> Iterator[bytes]:
        """The part's content in pieces, up to its closing delimiter (read once)."""
        return self._reader._content()


class MultipartReader:
    """The parts of a multipart body with `boundary`, read from `stream`; see the module docstring."""

    def __init__(self, stream: BinaryIO, boundary: str, *, read_size: int = READ_SIZE) -> None:
        if not 1 <= len(boundary) <= 70:
            raise MultipartError("the multipart boundary must be 1 to 70 characters long")
        self._stream = stream
        self._read_size = read_size
        # The first delimiter may open the body without a CRLF before it.
        self._buffer = bytearray(_CRLF)
        self._delimiter = _CRLF + b"--" + boundary.encode("latin-1")
        self._eof = False
        self._in_content = False

    def _fill(self) -> bool:
        """Read the next piece into the buffer; False at the end of the body."""
        if self._eof:
            return False
        data = self._stream.read(self._read_size)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def _need(self, size: int, what: str) -> None:
        """Have at least `size` bytes buffered, or raise that the body ended inside `what`."""
        while len(self._buffer) < size:
            if not self._fill():
                raise MultipartError(f"the body ends inside {what}")

    def parts(self) -> Iterator[Part]:
        """Each part in turn; the previous part's unread content is skipped first."""
        self._skip_preamble()
        while True:
            if self._in_content:
                for _ in self._content():
                    pass
            if self._after_delimiter():
                return
            self._in_content = True
            yield Part(self, self._headers())

    def _skip_preamble(self) -> None:
        """Drop everything up to and including the first delimiter."""
        keep = len(self._delimiter) - 1
        while (found := self._buffer.find(self._delimiter)) < 0:
            del self._buffer[: max(0, len(self._buffer) - keep)]
            if not self._fill():
                raise MultipartError("the body holds no part: its boundary is not found")
        del self._buffer[: found + len(self._delimiter)]

    def _after_delimiter(self) -> bool:
        """Consume what follows a delimiter; True if it was the close delimiter."""
        self._need(2, "a delimiter")
        if self._buffer[:2] == b"--":
            return True
        while True:
            self._need(2, "a delimiter")
            if self._buffer[:2] == _CRLF:
                del self._buffer[:2]
                return False
            if self._buffer[:1] not in (b" ", b"\t"):
                raise MultipartError("a delimiter is followed by something other than a line end")
            del self._buffer[:1]

    def _headers(self) -> dict[str, str]:
        """The header fields of the part that starts here (an empty line ends them)."""
        if self._buffer.startswith(_CRLF):
            del self._buffer[:2]
            return {}
        while (end := self._buffer.find(_HEADER_END)) < 0:
            if len(self._buffer) > MAX_PART_HEADER:
                raise MultipartError(f"a part's header fields exceed {MAX_PART_HEADER} bytes")
            if not self._fill():
                raise MultipartError("the body ends inside a part's header fields")
        if end > MAX_PART_HEADER:
            raise MultipartError(f"a part's header fields exceed {MAX_PART_HEADER} bytes")
        text = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + len(_HEADER_END)]
        headers: dict[str, str] = {}
        for line in text.split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                raise MultipartError("a part has a malformed header field")
            headers[name.strip().lower()] = value.strip()
        return headers

    def _content(self) -> Iterator[bytes]:
        """The current part's content in pieces; the delimiter that ends it is consumed."""
        if not self._in_content:
            return
        keep = len(self._delimiter) - 1
        while True:
            found = self._buffer.find(self._delimiter)
            if found >= 0:
                piece = bytes(self._buffer[:found])
                del self._buffer[: found + len(self._delimiter)]
                self._in_content = False
                if piece:
                    yield piece
                return
            safe = len(self._buffer) - keep
            if safe > 0:
                piece = bytes(self._buffer[:safe])
                del self._buffer[:safe]
                yield piece
            if not self._fill():
                self._in_content = False
                raise MultipartError("the body ends inside a part, before its closing delimiter")
