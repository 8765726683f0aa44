"""What passkeys change at login, for :mod:`webviewer.auth` (which cannot import :mod:`webviewer.passkeys`).

With ``[web] require_passkey = "admins"``, an admin who has a passkey must use it (or a recovery
code) as the second factor: :func:`totp_refused` tells the code step to refuse their TOTP code,
counted as a failure. An admin without one still logs in with TOTP and is then sent to register
one (:mod:`webviewer.passkeys` guards every other page until then).
"""

from __future__ import annotations

from flask import current_app

from pacs.core.passkeys import Passkeys

REQUIREMENT = "admins"


def service() -> Passkeys:
    """The passkeys of this app's users (set up by :func:`webviewer.passkeys.init_app`)."""
    passkeys: Passkeys = current_app.extensions["passkeys"]
    return passkeys


def required_for_admins() -> bool:
    """Whether ``[web] require_passkey`` is ``"admins"``."""
    return bool(current_app.extensions["pacs"].config.require_passkey == REQUIREMENT)


def totp_refused(name: str) -> bool:
    """Whether `name` is an admin who must use their passkey instead of a TOTP code."""
    if not required_for_admins():
        return False
    account = current_app.extensions["pacs"].accounts.get(name)
    return account is not None and account.is_admin and service().count(name) > 0
