"""Recovery codes: ten single-use codes a user keeps on paper for a lost authenticator.

Each code is 12 characters of Crockford's base32 (60 random bits), shown grouped as
``xxxx-xxxx-xxxx``. Input is read generously: any case, spaces and dashes ignored, and
the look-alikes Crockford's alphabet leaves out (o, i, l) read as 0 and 1.

Codes are stored as HMAC-SHA-256 under a key derived from the master secret (hex, 64
characters): a stolen table gives nothing to try offline without the secret, and 60 bits
need no slow hash. Matching also tries the fallback secrets' keys, so codes made before a
secret rotation keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

__all__ = ["COUNT", "RecoveryCodeHasher", "generate", "normalize"]

COUNT = 10
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32: no i, l, o, u
_LENGTH = 12  # 12 x 5 = 60 bits
_GROUP = 4
_LOOK_ALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
_LABEL = b"bastion.recovery-code"


def generate(count: int = COUNT) -> list[str]:
    """``count`` new codes, distinct, as shown to the user."""
    codes: set[str] = set()
    while len(codes) < count:
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
        codes.add("-".join(raw[at : at + _GROUP] for at in range(0, _LENGTH, _GROUP)))
    return sorted(codes)


def normalize(code: str) -> str | None:
    """The 12 characters of ``code`` as stored, or None when it cannot be a code."""
    cleaned = "".join(code.split()).replace("-", "").lower().translate(_LOOK_ALIKES)
    if len(cleaned) != _LENGTH or any(c not in _ALPHABET for c in cleaned):
        return None
    return cleaned


class RecoveryCodeHasher:
    """Keyed hashes of codes: :meth:`hash` under the current secret, :meth:`candidates`
    under every secret (current and fallbacks)."""

    __slots__ = ("_keys",)

    def __init__(self, secret: bytes, fallbacks: Sequence[bytes] = ()) -> None:
        self._keys = tuple(hmac.digest(s, _LABEL, "sha256") for s in (secret, *fallbacks))

    def __repr__(self) -> str:
        return f"RecoveryCodeHasher(fallbacks={len(self._keys) - 1})"

    def hash(self, code: str) -> str:
        """The stored form of a code from :func:`generate` (or typed in)."""
        normal = normalize(code)
        if normal is None:
            raise ValueError("not a recovery code")
        return self._digest(self._keys[0], normal)

    def candidates(self, code: str) -> list[str]:
        """Every stored form ``code`` may have; empty when it cannot be a code."""
        normal = normalize(code)
        if normal is None:
            return []
        return list(dict.fromkeys(self._digest(k, normal) for k in self._keys))

    @staticmethod
    def _digest(key: bytes, normal: str) -> str:
        return hmac.new(key, normal.encode("ascii"), hashlib.sha256).hexdigest()
