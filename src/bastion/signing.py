"""Purpose-salted HMAC-SHA256 signatures over the current secret and fallback secrets.

In the spirit of Django's ``signing`` and itsdangerous, written small:

- Each purpose gets its own key, ``HMAC-SHA256(secret, label + purpose)``, so a MAC made for
  one purpose never validates for another, and the master secret itself never keys a MAC.
- New signatures always use the current secret; verification also accepts each fallback, which
  is how ``BASTION_SECRET_KEY`` is rotated without logging everybody out.
- Signed strings are ASCII and URL/cookie safe: ``b64(value) "." b64(mac)`` for :class:`Signer`
  and ``b64(value) "." timestamp "." b64(mac)`` for :class:`TimestampSigner` (base64url without
  padding, decoded strictly, so every value has exactly one signed form).
- Every malformed input raises :class:`BadSignature`, never another exception.

This is a core module: it imports neither FastAPI nor Starlette.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

from bastion.clock import Clock, system_clock
from bastion.exceptions import BastionError

__all__ = ["BadSignature", "SignatureExpired", "Signer", "TimestampSigner"]

MAC_SIZE = hashlib.sha256().digest_size
_MAC_B64_LEN = 43  # len(b64 of 32 bytes, no padding)
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# Decimal seconds, no sign, no leading zero, no "_" or Unicode digits (int() would accept those).
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,15}")

# Labels keep the two signer kinds apart: neither prefix is a prefix of the other, so no choice
# of purpose makes a Signer key equal to a TimestampSigner key.
_SIGNER_LABEL = b"bastion.signing:"
_TIMESTAMP_LABEL = b"bastion.signing.timestamp:"


# The names follow Django and itsdangerous, so users recognise them.
class BadSignature(BastionError):
    """A signed value is malformed, forged, or was signed for another purpose or secret."""

    def __init__(self, reason: str = "bad signature") -> None:
        self.reason = reason
        super().__init__(reason)


class SignatureExpired(BadSignature):
    """A genuine timestamped signature is older than the allowed ``max_age``."""

    def __init__(self, age: float, max_age: float) -> None:
        self.age = age
        self.max_age = max_age
        super().__init__("signature expired")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding; raises BadSignature on anything else."""
    if not text.isascii() or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise BadSignature("malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadSignature("malformed") from None
    # Non-zero trailing bits decode to the same bytes; refuse them so encodings are canonical.
    if _b64encode(data) != text:
        raise BadSignature("malformed")
    return data


def _check_secret(secret: object, what: str) -> bytes:
    if not isinstance(secret, bytes):
        raise TypeError(f"{what} must be bytes")
    if not secret:
        raise ValueError(f"{what} must not be empty")
    return secret


class _Keyring:
    """Purpose keys derived from the current and fallback secrets; the secrets are not kept."""

    __slots__ = ("_keys",)

    def __init__(self, secret: bytes, fallbacks: Sequence[bytes], label: bytes) -> None:
        all_secrets = [_check_secret(secret, "secret")]
        all_secrets += [_check_secret(f, "fallback secret") for f in fallbacks]
        self._keys = tuple(hmac.digest(s, label, "sha256") for s in all_secrets)

    def mac(self, data: bytes) -> bytes:
        return hmac.digest(self._keys[0], data, "sha256")

    def verify(self, data: bytes, mac: bytes) -> bool:
        # Which key matched may leak through timing; that is harmless, the MAC itself cannot.
        return any(hmac.compare_digest(hmac.digest(k, data, "sha256"), mac) for k in self._keys)

    def __repr__(self) -> str:
        return f"<_Keyring: {len(self._keys)} keys>"


def _check_purpose(purpose: object) -> str:
    if not isinstance(purpose, str) or not purpose:
        raise ValueError("purpose must be a non-empty string")
    return purpose


class Signer:
    """Signs and verifies byte strings for one purpose.

    >>> signer = Signer(b"k" * 32, purpose="example")
    >>> signer.unsign(signer.sign(b"42"))
    b'42'
    """

    __slots__ = ("_fallback_count", "_keys", "purpose")

    def __init__(self, secret: bytes, fallbacks: Sequence[bytes] = (), *, purpose: str) -> None:
        self.purpose = _check_purpose(purpose)
        self._keys = _Keyring(secret, fallbacks, _SIGNER_LABEL + purpose.encode("utf-8"))
        self._fallback_count = len(fallbacks)

    def __repr__(self) -> str:
        return f"Signer(purpose={self.purpose!r}, fallbacks={self._fallback_count})"

    def mac(self, value: bytes) -> bytes:
        """The raw 32-byte MAC of ``value`` under the current secret."""
        return self._keys.mac(value)

    def verify_mac(self, value: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is the MAC of ``value`` under the current or any fallback secret."""
        if not isinstance(value, bytes) or not isinstance(mac, bytes) or len(mac) != MAC_SIZE:
            return False
        return self._keys.verify(value, mac)

    def sign(self, value: bytes) -> str:
        """``b64(value) "." b64(mac)``, ASCII and URL/cookie safe."""
        if not isinstance(value, bytes):
            raise TypeError("value must be bytes")
        return f"{_b64encode(value)}.{_b64encode(self._keys.mac(value))}"

    def unsign(self, signed: str) -> bytes:
        """The value inside ``signed``; raises :class:`BadSignature` for anything not genuine."""
        if not isinstance(signed, str):
            raise BadSignature("malformed")
        payload, dot, mac_text = signed.rpartition(".")
        if not dot or len(mac_text) != _MAC_B64_LEN:
            raise BadSignature("malformed")
        mac = _b64decode(mac_text)
        value = _b64decode(payload)
        if not self._keys.verify(value, mac):
            raise BadSignature("bad signature")
        return value


class TimestampSigner:
    """Signs byte strings with the signing time, so :meth:`unsign` can enforce a ``max_age``.

    Its keys are separate from :class:`Signer`'s even for an equal purpose. A timestamp in the
    future (clock skew between processes) is accepted: only we can have signed it.
    """

    __slots__ = ("_clock", "_fallback_count", "_keys", "purpose")

    def __init__(
        self,
        secret: bytes,
        fallbacks: Sequence[bytes] = (),
        *,
        purpose: str,
        clock: Clock = system_clock,
    ) -> None:
        self.purpose = _check_purpose(purpose)
        self._keys = _Keyring(secret, fallbacks, _TIMESTAMP_LABEL + purpose.encode("utf-8"))
        self._fallback_count = len(fallbacks)
        self._clock = clock

    def __repr__(self) -> str:
        return f"TimestampSigner(purpose={self.purpose!r}, fallbacks={self._fallback_count})"

    def sign(self, value: bytes) -> str:
        """``b64(value) "." seconds "." b64(mac)``; the MAC covers value and timestamp."""
        if not isinstance(value, bytes):
            raise TypeError("value must be bytes")
        head = f"{_b64encode(value)}.{int(self._clock())}"
        return f"{head}.{_b64encode(self._keys.mac(head.encode('ascii')))}"

    def unsign(self, signed: str, *, max_age: float | None = None) -> bytes:
        """The value inside ``signed``; see :meth:`unsign_timestamp`."""
        return self.unsign_timestamp(signed, max_age=max_age)[0]

    def unsign_timestamp(self, signed: str, *, max_age: float | None = None) -> tuple[bytes, int]:
        """The value and its signing time (epoch seconds).

        Raises :class:`SignatureExpired` when the signature is genuine but older than
        ``max_age`` seconds, and :class:`BadSignature` for anything not genuine.
        """
        if not isinstance(signed, str) or not signed.isascii():
            raise BadSignature("malformed")
        head, dot, mac_text = signed.rpartition(".")
        payload, dot2, stamp = head.rpartition(".")
        if not dot or not dot2 or len(mac_text) != _MAC_B64_LEN or not _TIMESTAMP.fullmatch(stamp):
            raise BadSignature("malformed")
        mac = _b64decode(mac_text)
        value = _b64decode(payload)
        if not self._keys.verify(head.encode("ascii"), mac):
            raise BadSignature("bad signature")
        # Expiry only after the MAC check: a forger learns nothing from the reason.
        timestamp = int(stamp)
        if max_age is not None:
            age = self._clock() - timestamp
            if age > max_age:
                raise SignatureExpired(age, max_age)
        return value, timestamp
