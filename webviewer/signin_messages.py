"""What the login pages confirm on screen: a logout, and a login with a recovery code."""

from __future__ import annotations

SIGNED_OUT = "You have been signed out."
# At most this many recovery codes left, the confirmation says how to get new ones.
FEW_RECOVERY_CODES = 3


def recovery_code_used(left: int) -> str:
    """The confirmation after a login with a recovery code: how many are left, and what to do when few are."""
    used = f"Recovery code used; {left or 'none'} left."
    if left > FEW_RECOVERY_CODES:
        return used
    return (
        f"{used} Ask an administrator to reset your second factor soon: at the next login you "
        "set up your authenticator again and receive ten new recovery codes."
    )
