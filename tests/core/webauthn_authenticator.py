"""A software WebAuthn authenticator for tests without a browser: it answers options as a browser would.

It holds one ES256 key pair (or an Ed25519 one read from a browser's authenticator, to sign
with), answers ``navigator.credentials.create`` with a ``none`` attestation and
``navigator.credentials.get`` with a signed assertion, for any origin and RP ID it is told (so
tests can be the phishing page), and counts its signatures like a real one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from webauthn.helpers import bytes_to_base64url

ORIGIN = "https://localhost"
RP_ID = "localhost"
_UP, _UV, _AT = 0x01, 0x04, 0x40


def _b64(data: bytes) -> str:
    return bytes_to_base64url(data)


@dataclass
class SoftAuthenticator:
    """One credential: its id, key and signature counter."""

    credential_id: bytes = field(default_factory=lambda: os.urandom(16))
    key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    sign_count: int = 0

    def _cose_key(self) -> bytes:
        assert isinstance(self.key, ec.EllipticCurvePrivateKey), "only an ES256 key registers here"
        numbers = self.key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return bytes(cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y}))

    def _auth_data(self, rp_id: str, flags: int, attested: bytes = b"") -> bytes:
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + self.sign_count.to_bytes(4, "big") + attested

    @staticmethod
    def _client_data(kind: str, options: dict[str, Any], origin: str) -> bytes:
        data = {"type": kind, "challenge": options["challenge"], "origin": origin, "crossOrigin": False}
        return json.dumps(data).encode()

    def create(self, options_json: str, *, origin: str = ORIGIN, rp_id: str | None = None) -> str:
        """The registration answer to `options_json`, as a browser at `origin` would post it."""
        options = json.loads(options_json)
        rp = rp_id if rp_id is not None else options["rp"]["id"]
        attested = (
            bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self._cose_key()
        )
        auth_data = self._auth_data(rp, _UP | _UV | _AT, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        response = {
            "clientDataJSON": _b64(self._client_data("webauthn.create", options, origin)),
            "attestationObject": _b64(attestation),
            "transports": ["internal"],
        }
        return self._credential(response)

    def get(
        self, options_json: str, *, origin: str = ORIGIN, rp_id: str | None = None, count: int = 1
    ) -> str:
        """The assertion answering `options_json` (the counter grows by `count`; 0 replays it)."""
        options = json.loads(options_json)
        rp = rp_id if rp_id is not None else options["rpId"]
        self.sign_count += count
        auth_data = self._auth_data(rp, _UP | _UV)
        client_data = self._client_data("webauthn.get", options, origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        if isinstance(self.key, Ed25519PrivateKey):
            signature = self.key.sign(signed)
        else:
            signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": _b64(client_data),
            "authenticatorData": _b64(auth_data),
            "signature": _b64(signature),
            "userHandle": None,
        }
        return self._credential(response)

    def _credential(self, response: dict[str, Any]) -> str:
        credential = {
            "id": _b64(self.credential_id),
            "rawId": _b64(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
        }
        return json.dumps(credential)
