"""A request body handed to the WSGI app as it arrives, for the requests that may be large (STOW-RS).

hypercorn's WSGI bridge reads a whole body before the app runs; :mod:`pacs.serve.https` does
that only up to 64 KiB. A STOW-RS store (:func:`webviewer.stow.is_stow_request`) instead gets a
:class:`StreamedBody` as ``wsgi.input``: each read on the app's thread takes the next message
from the connection on the event loop, so the body flows through in pieces (hypercorn's queue
of a few messages, and the flow control of HTTP/2, hold the client back meanwhile) and a
gigabyte part never sits in memory. A client that stops sending for :data:`READ_TIMEOUT`
seconds or goes away ends the body with :class:`BodyInterruptedError` (an ``OSError``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
from typing import Any

from hypercorn.typing import ASGIReceiveCallable

READ_TIMEOUT = 30.0


class BodyInterruptedError(OSError):
    """The client stopped sending or went away before the end of the body."""


class StreamedBody(io.RawIOBase):
    """The body of one request, read from `receive` on `loop` by the app's thread."""

    def __init__(self, receive: ASGIReceiveCallable, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._receive = receive
        self._loop = loop
        self._pending = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Copy what has arrived into `buffer` (waiting for the next message if need be); 0 at the end."""
        while not self._pending and not self._ended:
            self._next_message()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _next_message(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._receive(), self._loop)
        try:
            message = future.result(timeout=READ_TIMEOUT)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            self._ended = True
            raise BodyInterruptedError(f"no part of the request body came for {READ_TIMEOUT:.0f} s") from exc
        if message["type"] != "http.request":
            self._ended = True
            raise BodyInterruptedError("the client went away before the end of the request body")
        self._pending = memoryview(message.get("body", b""))
        self._ended = not message.get("more_body", False)
