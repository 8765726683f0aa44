"""``[web] require_passkey``: whether admins must log in with a passkey (a field of the web settings).

``"none"`` (the default): a passkey is one second factor beside TOTP, for anyone who registers
one. ``"admins"``: an admin who has a passkey must use it (or a recovery code) at login, a TOTP
code is refused; an admin without one logs in with TOTP once more and is sent to register a
passkey before any other page. What this means at login is :mod:`webviewer.passkey_policy`.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

REQUIRE_CHOICES = ("none", "admins")


def check_requirement(value: str) -> str | None:
    """Why `value` is not a valid ``require_passkey``, or None."""
    return None if value in REQUIRE_CHOICES else f"must be one of {', '.join(REQUIRE_CHOICES)}"


def require_passkey_field() -> Any:
    """The ``require_passkey`` field of :class:`pacs.core.config.WebSettings`."""
    text = 'Who must log in with a passkey: "none", or "admins" (TOTP codes are then refused for them).'
    return field(default="none", metadata={"doc": text, "check": check_requirement})
