"""The errors the archive reports to its callers, each with a one-line message.

:class:`PacsError` is the base of every error a user can cause, in ``storage`` and in
the packages above it: its message is one line that names what was wrong (a file, a
value, a node), so a front-end shows it as it is (``pacs: error: ...``, an HTTP 4xx,
a DICOM status comment) and never a traceback.
"""

from __future__ import annotations


class PacsError(Exception):
    """Base of every error a user can cause; ``str(error)`` is a one-line message for them."""


class ArchiveError(PacsError):
    """Base of the errors the archive reports to its callers."""


class OutOfSpaceError(ArchiveError):
    """Free disk space is below the configured watermark, or the disk is full (DICOM 0xA700)."""


class ObjectTooLargeError(ArchiveError):
    """The object is larger than the configured maximum."""


class IndexUnavailableError(ArchiveError):
    """The index could not be written; the object's blob is durable and is indexed later."""


class NotFoundError(ArchiveError, LookupError):
    """No such study or instance in the archive."""
