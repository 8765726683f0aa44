"""Passkeys (WebAuthn credentials) as a second factor beside TOTP: registration, login, list, rename, remove.

The relying party is the archive as the browser sees it (:class:`RelyingParty`): its ID is
``[server] hostname``, its one origin ``https://HOSTNAME:PORT`` (``[web] port``; no port for
443). Every registration and assertion is verified by the ``webauthn`` library against that
origin and RP ID, the challenge the caller issued (kept server-side, used once), and, at
login, the credential's stored public key and signature counter (a counter that did not
grow refuses the assertion: a cloned authenticator). User verification is preferred, not
required; attestation is not asked for (``none``), so any authenticator may register.

A login assertion is admitted and counted by :mod:`pacs.core.throttle` exactly like a TOTP
code (:meth:`Passkeys.check_login`, through :meth:`~pacs.core.accounts.Accounts.check_other_factor`,
which also audits a lockout). Registration, renaming and removal are audited here
(:mod:`pacs.core.security_events`); a login's outcome is audited by the web layer, which
completes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import webauthn
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from pacs.core import security_events
from pacs.core.accounts import Accounts, LoginVerdict
from pacs.core.audit import AuditLog
from storage.db import Database, as_utc
from storage.errors import PacsError
from storage.models import Passkey, User

TIMEOUT_MS = 120_000
MAX_NAME = 64
_TRANSPORTS = {t.value: t for t in AuthenticatorTransport}


class PasskeyError(PacsError):
    """A passkey request was refused (an unknown passkey, a bad name, a failed verification)."""


@dataclass(frozen=True)
class RelyingParty:
    """Who the browser is asked to make and use credentials for: an RP ID and the one origin."""

    rp_id: str = "localhost"
    origin: str = "https://localhost"
    name: str = "mini-PACS"

    @classmethod
    def of(cls, hostname: str, port: int) -> RelyingParty:
        """The archive's web viewer at ``https://hostname:port`` (no port shown for 443)."""
        return cls(hostname, f"https://{hostname}" if port == 443 else f"https://{hostname}:{port}")


@dataclass(frozen=True)
class PasskeyInfo:
    """What a user's passkey list shows."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    transports: tuple[str, ...]
    backed_up: bool


@dataclass(frozen=True)
class Challenge:
    """The options for the browser (JSON) and the challenge they carry, to keep server-side."""

    options: str
    challenge: bytes


def _info(row: Passkey) -> PasskeyInfo:
    return PasskeyInfo(
        row.id,
        row.name,
        as_utc(row.created_at),
        as_utc(row.last_used_at) if row.last_used_at is not None else None,
        tuple(t for t in row.transports.split(",") if t),
        row.backed_up,
    )


def _descriptor(row: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [_TRANSPORTS[t] for t in row.transports.split(",") if t in _TRANSPORTS]
    return PublicKeyCredentialDescriptor(id=row.credential_id, transports=transports or None)


def check_name(name: str) -> str:
    """`name` stripped, if it is a valid passkey name (1 to 64 characters)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise PasskeyError(f"a passkey name is 1 to {MAX_NAME} characters")
    return name


class Passkeys:
    """The passkeys of the users in `database`, for relying party `rp`; changes are audited to `audit`."""

    def __init__(
        self,
        database: Database,
        rp: RelyingParty,
        audit: AuditLog,
        accounts: Accounts,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._database = database
        self._accounts = accounts
        self.rp = rp
        self._audit = audit
        self._now = now

    def _utcnow(self) -> datetime:
        return datetime.fromtimestamp(self._now(), UTC)

    @staticmethod
    def _user(session: Session, name: str) -> User:
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        if user is None:
            raise PasskeyError(f"no user {name!r}")
        return user

    def _rows(self, session: Session, name: str) -> list[Passkey]:
        return list(
            session.scalars(
                select(Passkey)
                .join(User, Passkey.user_fk == User.id)
                .where(User.name == name)
                .order_by(Passkey.id)
            )
        )

    def of_user(self, name: str) -> list[PasskeyInfo]:
        """The passkeys of `name`, oldest first."""
        with self._database.read() as session:
            return [_info(row) for row in self._rows(session, name)]

    def count(self, name: str) -> int:
        """How many passkeys `name` has (0 for an unknown user)."""
        with self._database.read() as session:
            query = (
                select(func.count(Passkey.id)).join(User, Passkey.user_fk == User.id).where(User.name == name)
            )
            return int(session.scalar(query) or 0)

    def registration_options(self, name: str) -> Challenge:
        """Options for ``navigator.credentials.create`` for `name`, excluding the passkeys they have."""
        with self._database.read() as session:
            user = self._user(session, name)
            existing = [_descriptor(row) for row in self._rows(session, name)]
            handle = hashlib.sha256(f"{self.rp.rp_id}/user/{user.id}".encode()).digest()[:16]
        options = webauthn.generate_registration_options(
            rp_id=self.rp.rp_id,
            rp_name=self.rp.name,
            user_name=name,
            user_id=handle,
            timeout=TIMEOUT_MS,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=existing,
        )
        return Challenge(webauthn.options_to_json(options), options.challenge)

    def register(
        self, name: str, credential: str, challenge: bytes, label: str, *, source: str
    ) -> PasskeyInfo:
        """Verify the browser's answer to :meth:`registration_options` and keep the passkey (audited).

        A refusal is audited too, and raised as :class:`PasskeyError`.
        """
        try:
            label = check_name(label)
            verified = webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp.rp_id,
                expected_origin=self.rp.origin,
            )
            transports = json.loads(credential).get("response", {}).get("transports", [])
        except (WebAuthnException, PasskeyError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._audit.append(
                security_events.passkey_registration_failed(name, source=source, reason=str(exc))
            )
            raise PasskeyError(f"the passkey was not accepted: {exc}") from exc
        with self._database.write() as session:
            user = self._user(session, name)
            if session.scalar(select(Passkey.id).where(Passkey.credential_id == verified.credential_id)):
                raise PasskeyError("this passkey is already registered")
            row = Passkey(
                user_fk=user.id,
                name=label,
                credential_id=verified.credential_id,
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                transports=",".join(t for t in transports if t in _TRANSPORTS)[:128],
                aaguid=verified.aaguid,
                backup_eligible=verified.credential_device_type.value == "multi_device",
                backed_up=verified.credential_backed_up,
                created_at=self._utcnow(),
            )
            session.add(row)
            session.flush()
            info = _info(row)
        event = security_events.passkey_registered(
            name, source=source, passkey=info.name, passkey_id=info.id, aaguid=verified.aaguid
        )
        self._audit.append(event)
        return info

    def login_options(self, name: str) -> Challenge:
        """Options for ``navigator.credentials.get``, allowing only `name`'s passkeys."""
        with self._database.read() as session:
            allowed = [_descriptor(row) for row in self._rows(session, name)]
        options = webauthn.generate_authentication_options(
            rp_id=self.rp.rp_id,
            timeout=TIMEOUT_MS,
            allow_credentials=allowed,
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        return Challenge(webauthn.options_to_json(options), options.challenge)

    def verify_login(self, name: str, credential: str, challenge: bytes, *, source: str) -> PasskeyInfo:
        """The passkey of `name` that signed `challenge` in `credential`; its counter and last use are kept.

        Raises :class:`PasskeyError` if the credential is not one of `name`'s or fails verification.
        """
        try:
            raw_id = webauthn.base64url_to_bytes(json.loads(credential)["rawId"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PasskeyError("the answer is not a WebAuthn assertion") from exc
        with self._database.write() as session:
            user = self._user(session, name)
            row = session.scalars(
                select(Passkey).where(Passkey.credential_id == raw_id, Passkey.user_fk == user.id)
            ).one_or_none()
            if row is None:
                raise PasskeyError("not a registered passkey of this user")
            try:
                verified = webauthn.verify_authentication_response(
                    credential=credential,
                    expected_challenge=challenge,
                    expected_rp_id=self.rp.rp_id,
                    expected_origin=self.rp.origin,
                    credential_public_key=row.public_key,
                    credential_current_sign_count=row.sign_count,
                )
            except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
                raise PasskeyError(str(exc)) from exc
            row.sign_count = verified.new_sign_count
            row.backed_up = verified.credential_backed_up
            row.last_used_at, row.last_used_from = self._utcnow(), source[:64]
            return _info(row)

    def check_login(
        self, name: str, credential: str, challenge: bytes, *, source: str, password_right: bool = True
    ) -> tuple[LoginVerdict, PasskeyInfo | None, str]:
        """A login assertion, admitted and counted by the throttle like a TOTP code (through the accounts).

        Returns the verdict, the passkey used (when accepted) and the reason of a refusal. With
        `password_right` False (a deferred wrong password) the assertion is not even looked at.
        """
        used: list[PasskeyInfo] = []
        reasons = ["wrong password, told after the passkey"]

        def check() -> bool:
            if not password_right:
                return False
            try:
                used.append(self.verify_login(name, credential, challenge, source=source))
            except PasskeyError as exc:
                reasons[0] = str(exc)
            return bool(used)

        verdict = self._accounts.check_other_factor(name, source, check)
        if verdict is LoginVerdict.ACCEPTED:
            return verdict, used[0], ""
        return verdict, None, verdict.value if verdict is LoginVerdict.THROTTLED else reasons[0]

    def rename(self, name: str, passkey_id: int, label: str, *, source: str) -> PasskeyInfo:
        """Rename one of `name`'s passkeys (audited)."""
        label = check_name(label)
        with self._database.write() as session:
            row = self._own(session, name, passkey_id)
            old, row.name = row.name, label
            info = _info(row)
        self._audit.append(
            security_events.passkey_renamed(name, source=source, passkey_id=passkey_id, old=old, new=label)
        )
        return info

    def remove(self, name: str, passkey_id: int, *, source: str, keep_one: bool = False) -> PasskeyInfo:
        """Remove one of `name`'s passkeys (audited); with `keep_one`, never the last one."""
        with self._database.write() as session:
            row = self._own(session, name, passkey_id)
            if keep_one and len(self._rows(session, name)) == 1:
                raise PasskeyError(
                    "passkeys are required for admins: register another before removing the last one"
                )
            info = _info(row)
            session.execute(delete(Passkey).where(Passkey.id == row.id))
        self._audit.append(
            security_events.passkey_removed(name, source=source, passkey_id=passkey_id, passkey=info.name)
        )
        return info

    def _own(self, session: Session, name: str, passkey_id: int) -> Passkey:
        row = session.get(Passkey, passkey_id)
        if row is None or row.user_fk != self._user(session, name).id:
            raise PasskeyError(f"no passkey {passkey_id} of {name}")
        return row
