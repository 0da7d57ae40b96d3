"""A software WebAuthn authenticator (P-256, "none" attestation) for tests without a
browser: it answers creation and request options the way a platform authenticator with
user verification does, in the JSON forms of ``PublicKeyCredential.toJSON()``."""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.encode_cbor import encode_cbor

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


@dataclass
class SoftCredential:
    credential_id: bytes
    user_handle: bytes
    rp_id: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    sign_count: int = 0

    def copy(self, sign_count: int) -> SoftCredential:
        """A clone: the same key on another authenticator, with its own counter."""
        return SoftCredential(
            self.credential_id, self.user_handle, self.rp_id, self.key, sign_count
        )

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return encode_cbor(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    return json.dumps(
        {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
    ).encode()


class SoftAuthenticator:
    """``counter_step`` 0 makes an authenticator that keeps no signature counter (as
    synced passkeys do)."""

    def __init__(self, origin: str, *, counter_step: int = 1, user_verified: bool = True):
        self.origin = origin
        self.counter_step = counter_step
        self.user_verified = user_verified
        self.credentials: dict[bytes, SoftCredential] = {}

    def _flags(self, *extra: int) -> int:
        flags = UP | (UV if self.user_verified else 0)
        for bit in extra:
            flags |= bit
        return flags

    def create(self, options: dict[str, Any], credential_id: bytes | None = None) -> dict[str, Any]:
        """A new credential for the options (``credential_id``: one of another's)."""
        public_key = options["publicKey"]
        rp_id = public_key["rp"]["id"]
        excluded = {base64url_to_bytes(c["id"]) for c in public_key.get("excludeCredentials", [])}
        if excluded & set(self.credentials):
            raise ValueError("InvalidStateError: a credential here is excluded")
        credential = SoftCredential(
            credential_id=credential_id or secrets.token_bytes(32),
            user_handle=base64url_to_bytes(public_key["user"]["id"]),
            rp_id=rp_id,
            key=ec.generate_private_key(ec.SECP256R1()),
        )
        self.credentials[credential.credential_id] = credential
        attested = (
            bytes(16)  # AAGUID
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.cose_public_key()
        )
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags(AT)])
            + struct.pack(">I", credential.sign_count)
            + attested
        )
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = _client_data("webauthn.create", public_key["challenge"], self.origin)
        return {
            "id": bytes_to_base64url(credential.credential_id),
            "rawId": bytes_to_base64url(credential.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data),
                "attestationObject": bytes_to_base64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {"credProps": {"rk": True}},
        }

    def get(
        self, options: dict[str, Any], credential: SoftCredential | None = None
    ) -> dict[str, Any]:
        """An assertion with ``credential`` (default: the only one this authenticator has
        for the RP, or the first one the options allow)."""
        public_key = options["publicKey"]
        if credential is None:
            allowed = [base64url_to_bytes(c["id"]) for c in public_key.get("allowCredentials", [])]
            found = [c for cid, c in self.credentials.items() if not allowed or cid in allowed]
            credential = found[0]
        credential.sign_count += self.counter_step
        auth_data = (
            hashlib.sha256(public_key["rpId"].encode()).digest()
            + bytes([self._flags()])
            + struct.pack(">I", credential.sign_count)
        )
        client_data = _client_data("webauthn.get", public_key["challenge"], self.origin)
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": bytes_to_base64url(credential.credential_id),
            "rawId": bytes_to_base64url(credential.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
                "userHandle": bytes_to_base64url(credential.user_handle),
            },
            "clientExtensionResults": {},
        }

    def credential_ids(self) -> list[str]:
        return [bytes_to_base64url(cid) for cid in self.credentials]

    def only(self) -> SoftCredential:
        (credential,) = self.credentials.values()
        return credential
