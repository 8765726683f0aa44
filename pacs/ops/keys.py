"""Key rotation and certificate renewal, each audited as a change of the security configuration.

A rotation adds a key-encryption key and re-wraps every data key under it in batches;
no image is rewritten. It resumes where an interrupted one stopped, and says when
objects stored meanwhile are still under an older key.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509

from pacs.core import events, pki
from pacs.core.context import Context, renew_server_certificate
from storage import rotation


def start_rotation(pacs: Context, *, user: str) -> tuple[int, int, bool]:
    """Begin (or resume) a rotation; return the target KEK, data keys pending and whether it resumed."""
    current = pacs.keyring.current_version
    left = rotation.pending(pacs.database, current)
    if left and current > 1:
        pacs.audit.append(events.key_rotation_resumed(by=user, kek_version=current, pending=left))
        return current, left, True
    current = pacs.keyring.add_version()
    left = rotation.pending(pacs.database, current)
    pacs.audit.append(events.key_rotation_started(by=user, kek_version=current, pending=left))
    return current, left, False


def finish_rotation(
    pacs: Context, current: int, *, user: str, on_batch: Callable[[int], None] = lambda n: None
) -> tuple[int, int]:
    """Re-wrap every data key under KEK `current`; return (re-wrapped, still left), audited."""
    try:
        done = rotation.rewrap(pacs.database, pacs.keyring, on_batch=on_batch)
    except BaseException as exc:
        pacs.audit.append(events.key_rotation_interrupted(by=user, kek_version=current, error=repr(exc)))
        raise
    # An object whose store began before the new KEK appeared may commit after the last batch.
    left = rotation.pending(pacs.database, current)
    if left:
        event = events.key_rotation_unfinished(by=user, kek_version=current, pending=left)
    else:
        event = events.key_rotation_completed(by=user, kek_version=current, rewrapped=done)
    pacs.audit.append(event)
    return done, left


def renew_certificate(pacs: Context, *, user: str) -> x509.Certificate:
    """Issue a new server certificate from the archive's CA for the same key, audited."""
    certificate = renew_server_certificate(pacs.settings)
    pacs.audit.append(
        events.certificate_renewed(
            by=user,
            hostname=pacs.settings.server.hostname,
            not_after=certificate.not_valid_after_utc.isoformat(),
            fingerprint=pki.fingerprint(certificate),
        )
    )
    return certificate
