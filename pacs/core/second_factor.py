"""The TOTP second factor and recovery codes (the base of :class:`~pacs.core.accounts.Accounts`).

TOTP follows RFC 6238 (30 s steps, six digits, one step of drift either way), and each
step is accepted once; a pending enrolment keeps its secret until it is confirmed or reset.
TOTP secrets are stored encrypted (AES-GCM, bound to the user name) under a key derived from
the key-encryption key; recovery codes are stored as keyed hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable

import pyotp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from pacs.core.passwords import AccountError
from storage.db import Database
from storage.keys import KeyRing
from storage.models import User

TOTP_ISSUER = "mini-PACS"
RECOVERY_CODES = 10
_TOTP_KEY_PURPOSE = "totp secrets v1"
_RECOVERY_KEY_PURPOSE = "recovery codes v1"


class SecondFactor:
    """Enrols, checks and uses up second factors of the users in `_database`."""

    _database: Database
    _keyring: KeyRing
    _now: Callable[[], float]

    @staticmethod
    def _get(session: Session, name: str) -> User:
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        if user is None:
            raise AccountError(f"no user {name!r}")
        return user

    def _totp_key(self) -> bytes:
        return self._keyring.derive(_TOTP_KEY_PURPOSE, version=1)

    def _seal_secret(self, name: str, secret: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self._totp_key()).encrypt(nonce, secret.encode(), name.encode())

    def _open_secret(self, name: str, sealed: bytes) -> str:
        return AESGCM(self._totp_key()).decrypt(sealed[:12], sealed[12:], name.encode()).decode()

    def begin_totp_enrolment(self, name: str) -> str:
        """The TOTP secret (base32) of the account's pending enrolment, made and stored at the first call.

        Until the enrolment is confirmed (or reset) every call returns the same secret, so a
        reloaded page or a second try shows the key already scanned.
        """
        with self._database.write() as session:
            user = self._get(session, name)
            if user.totp_confirmed:
                raise AccountError(f"user {name!r} has already enrolled a second factor")
            if user.totp_secret is not None:
                return self._open_secret(name, user.totp_secret)
            secret = pyotp.random_base32()
            user.totp_secret = self._seal_secret(name, secret)
        return secret

    def provisioning_uri(self, name: str, secret: str) -> str:
        """The ``otpauth://`` URI an authenticator app reads from the QR code."""
        return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=TOTP_ISSUER)

    def _accept_code(self, session: Session, user: User, code: str) -> bool:
        if user.totp_secret is None or not (len(code) == 6 and code.isdigit()):
            return False
        totp = pyotp.TOTP(self._open_secret(user.name, user.totp_secret))
        now_step = int(self._now()) // totp.interval
        for step in (now_step - 1, now_step, now_step + 1):
            if step > user.last_totp_step and hmac.compare_digest(totp.at(step * totp.interval), code):
                user.last_totp_step = step
                return True
        return False

    def confirm_totp(self, name: str, code: str) -> list[str] | None:
        """Confirm a pending enrolment with a valid code; return new recovery codes, or None."""
        with self._database.write() as session:
            user = self._get(session, name)
            if user.totp_confirmed or not self._accept_code(session, user, code.strip()):
                return None
            user.totp_confirmed = True
            codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
            user.recovery_codes = json.dumps([self._code_hash(c) for c in codes])
            return codes

    def verify_totp(self, name: str, code: str) -> bool:
        """Whether `code` is a valid, unused TOTP code of the account (it is then used up)."""
        with self._database.write() as session:
            user = session.scalars(select(User).where(User.name == name)).one_or_none()
            if user is None or not user.totp_confirmed:
                return False
            return self._accept_code(session, user, code.strip())

    def _code_hash(self, code: str) -> str:
        key = self._keyring.derive(_RECOVERY_KEY_PURPOSE, version=1)
        normalised = code.replace("-", "").replace(" ", "").lower()
        return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()

    def use_recovery_code(self, name: str, code: str) -> bool:
        """Whether `code` is one of the account's unused recovery codes (it is then used up)."""
        digest = self._code_hash(code)
        with self._database.write() as session:
            user = session.scalars(select(User).where(User.name == name)).one_or_none()
            if user is None or not user.totp_confirmed:
                return False
            left = json.loads(user.recovery_codes)
            matches = [h for h in left if hmac.compare_digest(h, digest)]
            if not matches:
                return False
            user.recovery_codes = json.dumps([h for h in left if h != matches[0]])
            return True


def _recovery_code() -> str:
    raw = secrets.token_hex(5)
    return f"{raw[:5]}-{raw[5:]}"
