"""Secrets encrypted at rest (AES-256-GCM) under keys derived from the master secret.

A :class:`SecretBox` serves one purpose (e.g. "totp"): its key is HKDF-SHA256 of the
master secret with the purpose as label, so the master secret never encrypts anything
itself and boxes of different purposes cannot open each other's values. Each value is
sealed with a ``context`` (the owner's user id) as associated data: a sealed secret
copied into another user's row does not open there.

New values use the current secret; opening also tries each fallback secret, which is
how ``BASTION_SECRET_KEY`` rotates without breaking enrolled authenticators. A value
opened with a fallback is reported ``stale`` so the caller can seal it again.

Sealed form: ``"v1." + base64url(nonce || ciphertext || tag)`` (no padding), ASCII.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.exceptions import BastionError

__all__ = ["Opened", "SecretBox", "SecretBoxError"]

_VERSION = "v1."
_NONCE_SIZE = 12  # 96-bit random nonces: safe for far more values than a user table holds
_KEY_SIZE = 32
_LABEL = b"bastion.secretbox:"


class SecretBoxError(BastionError):
    """A sealed value is malformed, tampered with, sealed for another owner or purpose,
    or sealed under a secret that is neither current nor a fallback."""


@dataclass(frozen=True, slots=True)
class Opened:
    value: bytes = field(repr=False)
    # Opened with a fallback secret: seal it again under the current one.
    stale: bool


def _derive(secret: bytes, purpose: str) -> AESGCM:
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("secrets must be non-empty bytes")
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_SIZE,
        salt=None,
        info=_LABEL + purpose.encode("utf-8"),
    ).derive(secret)
    return AESGCM(key)


class SecretBox:
    """Seals and opens small secrets for one purpose.

    >>> box = SecretBox(b"k" * 32, purpose="example")
    >>> box.open(box.seal(b"hi", context="7"), context="7").value
    b'hi'
    """

    __slots__ = ("_ciphers", "purpose")

    def __init__(self, secret: bytes, fallbacks: Sequence[bytes] = (), *, purpose: str) -> None:
        if not purpose:
            raise ValueError("purpose must be a non-empty string")
        self.purpose = purpose
        self._ciphers = tuple(_derive(s, purpose) for s in (secret, *fallbacks))

    def __repr__(self) -> str:
        return f"SecretBox(purpose={self.purpose!r}, fallbacks={len(self._ciphers) - 1})"

    def _associated(self, context: str) -> bytes:
        # The purpose is in the key already; the context binds the value to its owner.
        return f"{self.purpose}\x00{context}".encode()

    def seal(self, value: bytes, *, context: str) -> str:
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._ciphers[0].encrypt(nonce, value, self._associated(context))
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, sealed: str, *, context: str) -> Opened:
        """The value inside ``sealed``; :class:`SecretBoxError` for anything else."""
        if not isinstance(sealed, str) or not sealed.isascii() or not sealed.startswith(_VERSION):
            raise SecretBoxError("malformed sealed value")
        body = sealed[len(_VERSION) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise SecretBoxError("malformed sealed value") from None
        if len(raw) <= _NONCE_SIZE + 16:
            raise SecretBoxError("malformed sealed value")
        nonce, ciphertext = raw[:_NONCE_SIZE], raw[_NONCE_SIZE:]
        associated = self._associated(context)
        for index, cipher in enumerate(self._ciphers):
            try:
                value = cipher.decrypt(nonce, ciphertext, associated)
            except InvalidTag:
                continue
            return Opened(value, stale=index > 0)
        raise SecretBoxError("cannot open sealed value")
