"""HTTP content negotiation and multipart/related bodies for DICOMweb (PS3.18 8.3.5, 8.7; RFC 2046, 2387).

:func:`parse_accept` reads an ``Accept`` header into :class:`MediaRange` items, best first
(quoted parameter values, ``q`` values; ``q=0`` refused items are dropped). :func:`related`
writes a multipart/related body as a stream: the parts are taken one at a time from an
iterable and each part's body is passed on chunk by chunk, so an answer of many large
objects never sits in memory. When every part's size is known beforehand,
:func:`related_length` gives the body's length, so it can be sent with a ``Content-Length``
instead of chunked (which costs the HTTPS server about twice the CPU per byte). The
boundary is random (:func:`new_boundary`), so no part's content can end a part early by
chance. :func:`not_acceptable` ends a request whose
``Accept`` header names nothing the server can produce (406, with the reason as text).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn

from flask import Response, abort

_ITEM = re.compile(r'\s*((?:[^,"]|"(?:[^"\\]|\\.)*")+)')
_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")


@dataclass(frozen=True)
class MediaRange:
    """One item of an ``Accept`` header: a media type (or range) in lower case, its parameters, its q."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        """Whether this range covers `media_type` (``*/*``, ``image/*``, or the type itself)."""
        kind, _, subtype = self.media_type.partition("/")
        wanted_kind, _, _ = media_type.partition("/")
        return self.media_type == media_type or (subtype == "*" and kind in ("*", wanted_kind))

    @property
    def type_param(self) -> str | None:
        """The ``type`` parameter of a multipart range, in lower case, or None."""
        value = self.params.get("type")
        return value.strip().lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        """The ``transfer-syntax`` parameter (a UID or ``*``), or None."""
        value = self.params.get("transfer-syntax")
        return value.strip() if value else None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def _media_range(item: str) -> MediaRange | None:
    """One ``Accept`` item, or None when it is not a media range (``text`` alone, empty)."""
    media_type, _, rest = item.partition(";")
    media_type = media_type.strip().lower()
    if media_type.count("/") != 1:
        return None
    params = {name.lower(): _unquote(value) for name, value in _PARAM.findall(";" + rest)}
    try:
        q = float(params.pop("q", "1"))
    except ValueError:
        q = 1.0
    return MediaRange(media_type, params, max(0.0, min(q, 1.0)))


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an ``Accept`` header, highest q first (in the header's order at equal q)."""
    ranges = [_media_range(item) for item in _ITEM.findall(header or "")]
    accepted = [found for found in ranges if found is not None and found.q > 0]
    return sorted(accepted, key=lambda found: -found.q)


@dataclass(frozen=True)
class Part:
    """One body part: its Content-Type, an optional Content-Location, its content in chunks and,
    if known beforehand, the content's size in bytes.
    """

    content_type: str
    chunks: Iterable[bytes]
    location: str | None = None
    size: int | None = None

    def head(self, boundary: str) -> bytes:
        """The delimiter and header fields that open this part in a body with `boundary`."""
        fields = [f"Content-Type: {self.content_type}"]
        if self.location:
            fields.append(f"Content-Location: {self.location}")
        return f"--{boundary}\r\n".encode() + "\r\n".join(fields).encode() + b"\r\n\r\n"


def new_boundary() -> str:
    """A random boundary (128 bits as hex): it occurs in no content but by a chance of 2**-128."""
    return secrets.token_hex(16)


def content_type(root_type: str, boundary: str) -> str:
    """The ``Content-Type`` of a multipart/related body whose parts are `root_type`."""
    return f'multipart/related; type="{root_type}"; boundary={boundary}'


def related(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The multipart/related body of `parts` with `boundary`, streamed part by part, chunk by chunk."""
    for part in parts:
        yield part.head(boundary)
        yield from part.chunks
        yield b"\r\n"
    yield _closing(boundary)


def related_length(parts: Iterable[Part], boundary: str) -> int | None:
    """The length of :func:`related` of `parts` (not read), or None if a part's size is unknown."""
    total = len(_closing(boundary))
    for part in parts:
        if part.size is None:
            return None
        total += len(part.head(boundary)) + part.size + 2
    return total


def _closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()


def not_acceptable(message: str) -> NoReturn:
    """End the request with 406 Not Acceptable and `message` (one line of text)."""
    abort(Response(message, status=406, mimetype="text/plain"))
