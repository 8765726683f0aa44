"""The errors the archive reports to its callers, each with a one-line message."""

from __future__ import annotations


class ArchiveError(Exception):
    """Base of the errors the archive reports to its callers."""


class OutOfSpaceError(ArchiveError):
    """Free disk space is below the configured watermark, or the disk is full (DICOM 0xA700)."""


class ObjectTooLargeError(ArchiveError):
    """The object is larger than the configured maximum."""


class IndexUnavailableError(ArchiveError):
    """The index could not be written; the object's blob is durable and is indexed later."""


class NotFoundError(ArchiveError, LookupError):
    """No such study or instance in the archive."""
