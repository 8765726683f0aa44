"""The state of what the admin's status page and ``pacs selfcheck`` both judge: certificates and free disk.

One rule each, so the page and the report never disagree: a certificate wants attention
from :data:`CERT_WARNING_DAYS` before it expires (or while it is not valid yet), and the
disk once it has less than twice the free-space watermark left (or no watermark is set).
"""

from __future__ import annotations

import enum
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from pacs.core import pki
from pacs.core.config import Settings

CERT_WARNING_DAYS = 30


class CertificateState(enum.Enum):
    """Where a certificate stands in its validity period."""

    NOT_YET_VALID = "not yet valid"
    EXPIRED = "expired"
    EXPIRING = "expiring"
    VALID = "valid"


@dataclass(frozen=True)
class CertificateStatus:
    """A certificate's state and the days it has left (negative once expired)."""

    state: CertificateState
    days: float

    @property
    def ok(self) -> bool:
        """Whether the certificate needs nothing done for the next :data:`CERT_WARNING_DAYS` days."""
        return self.state is CertificateState.VALID


def certificate_status(cert: x509.Certificate, now: datetime | None = None) -> CertificateStatus:
    """The state of `cert` at `now` (default: the present)."""
    now = now or datetime.now(UTC)
    days = pki.days_until_expiry(cert, now)
    if cert.not_valid_before_utc > now:
        state = CertificateState.NOT_YET_VALID
    elif days < 0:
        state = CertificateState.EXPIRED
    elif days < CERT_WARNING_DAYS:
        state = CertificateState.EXPIRING
    else:
        state = CertificateState.VALID
    return CertificateStatus(state, days)


class DiskState(enum.Enum):
    """Free disk under the blobs against the ``[storage] min_free_mb`` watermark."""

    NO_WATERMARK = "no watermark"
    BELOW = "below"
    NEAR = "near"
    ROOM = "room to spare"


@dataclass(frozen=True)
class DiskStatus:
    """Free MiB under the blob directory, the watermark in MiB and what they make together."""

    state: DiskState
    free_mb: int
    watermark_mb: int

    @property
    def ok(self) -> bool:
        """Whether there is a watermark and at least twice its room is free."""
        return self.state is DiskState.ROOM


def disk_status(settings: Settings) -> DiskStatus:
    """The free disk of the archive of `settings`, now."""
    watermark = settings.storage.min_free_mb
    free = shutil.disk_usage(settings.blob_dir).free // 2**20
    if watermark == 0:
        state = DiskState.NO_WATERMARK
    elif free < watermark:
        state = DiskState.BELOW
    elif free < 2 * watermark:
        state = DiskState.NEAR
    else:
        state = DiskState.ROOM
    return DiskStatus(state, free, watermark)
