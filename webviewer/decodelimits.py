"""The viewer's decoding limits: ``[web] max_frame_mb``, also the budget of the frames decoded at once.

The checks made from headers before any decoder runs (frame geometry, a compressed
stream's own frame header, JPEG 2000 tiles, a deflated data set's inflated size) are
:mod:`pacs.ops.decodelimits`', shared with the transcoder on retrieve; they are imported
from here too. What is the viewer's own: :class:`DecodeLimits`, whose refusals name
``[web] max_frame_mb`` and whose budget answers 503 when it stays taken.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pacs.ops import decodelimits
from pacs.ops.decodelimits import MAX_J2K_TILES, FrameError, FrameLimit, Geometry, check_codestream, geometry

__all__ = [
    "MAX_J2K_TILES",
    "DecodeLimits",
    "FrameError",
    "Geometry",
    "check_codestream",
    "check_inflated_size",
    "geometry",
]
SETTING = "[web] max_frame_mb"


def check_inflated_size(data: bytes, limit: int) -> None:
    """Refuse a deflated Part 10 object whose data set inflates to more than `limit` bytes."""
    decodelimits.check_inflated_size(data, FrameLimit(limit, SETTING))


class DecodeLimits(FrameLimit):
    """The largest frame the viewer decodes, also the budget of the frames decoded at once.

    A request holds the decoded size of its frame from the budget while it decodes, so
    however many requests arrive together, the frames being decoded never add up to more
    than one frame of the largest size. A request that cannot get its share within
    `wait_seconds` is answered 503.
    """

    def __init__(self, max_frame_bytes: int, *, wait_seconds: float = 10.0) -> None:
        super().__init__(max_frame_bytes, SETTING)
        self._wait_seconds = wait_seconds
        self._in_use = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        """Hold `size` bytes of the budget for the duration of the block."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: self._in_use + size <= self.max_frame_bytes, timeout=self._wait_seconds
            ):
                raise FrameError("the viewer is busy decoding other large frames; try again shortly", 503)
            self._in_use += size
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= size
                self._changed.notify_all()
