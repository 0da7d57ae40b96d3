"""JWT signing keys: a private JWK set (RFC 7517) file shared by every process.

File format (UTF-8 JSON, mode 0600)::

    {
      "signing_kid": "Q0n3...",            # the one key that signs new tokens
      "keys": [                            # every key here verifies
        {
          "kid": "Q0n3...",                # 16 random bytes, base64url (22 characters)
          "alg": "EdDSA",                  # HS256 | EdDSA | ES256 | RS256, tied to kty
          "use": "sig",
          "iat": 1700000000,               # custom member: creation time, epoch seconds
          "retired": 1700086400,           # custom member, optional: when it stopped signing
          "kty": "OKP", "crv": "Ed25519", "x": "...", "d": "..."
        }
      ]
    }

Key material is the RFC 7517/7518 members written by PyJWT's ``to_jwk``: ``oct`` (``k``,
at least 256 bits) for HS256, ``OKP`` Ed25519 for EdDSA, ``EC`` P-256 for ES256 and ``RSA``
(3072 bits generated, 2048 accepted) for RS256. Every key holds its private part.

Writers replace the file atomically (temp file + ``os.link``/``os.replace``), so readers
never see half a file; ``rotate`` and ``prune`` also hold an ``fcntl.flock`` on
``<file>.lock`` so that two concurrent CLIs never lose a key. POSIX only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

from bastion.clock import Clock, system_clock
from bastion.exceptions import ConfigError

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "Key",
    "KeyRing",
    "KeySet",
    "KeySource",
    "generate_key",
    "load",
    "load_or_create",
    "new_key_set",
    "prune",
    "rotate",
    "save",
]

security_log = logging.getLogger("bastion.security")

SUPPORTED_ALGORITHMS: Final = ("HS256", "EdDSA", "ES256", "RS256")
_KTY: Final = {"HS256": "oct", "EdDSA": "OKP", "ES256": "EC", "RS256": "RSA"}
_CRV: Final = {"EdDSA": "Ed25519", "ES256": "P-256"}
# Only these members of a public key are ever published: an allow-list, so a private
# member added by a future PyJWT (or a hand-edited file) can never leak.
_PUBLIC_MEMBERS: Final = {"OKP": ("crv", "x"), "EC": ("crv", "x", "y"), "RSA": ("n", "e")}
HMAC_MIN_BYTES: Final = 32
RSA_GENERATED_BITS: Final = 3072
RSA_MIN_BITS: Final = 2048
# A key file is a few KiB even with many RSA keys; refuse anything absurd before parsing.
_MAX_FILE_BYTES: Final = 1 << 20
# Tokens are accepted up to the verifier's leeway (at most 60 s) after ``exp``.
PRUNE_GRACE_SECONDS: Final = 60
DEFAULT_CHECK_INTERVAL: Final = 5.0

PrivateKey = bytes | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = bytes | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_MATERIAL_TYPES: Final[dict[str, type[object]]] = {
    "HS256": bytes,
    "EdDSA": ed25519.Ed25519PrivateKey,
    "ES256": ec.EllipticCurvePrivateKey,
    "RS256": rsa.RSAPrivateKey,
}


@dataclass(frozen=True, eq=False, repr=False)
class Key:
    """One JWK: its id, algorithm, creation time and (hidden) private material.

    ``eq=False``: comparing keys would compare secrets in non-constant time; compare ``kid``.
    """

    kid: str
    alg: str
    created_at: int
    retired_at: int | None = None
    _material: PrivateKey = field(kw_only=True)

    def __post_init__(self) -> None:
        # A Key is only ever signing material that fits its alg: no empty or mismatched secret.
        expected = _MATERIAL_TYPES.get(self.alg)
        if expected is None or not isinstance(self._material, expected):
            raise ConfigError(f"JWT key {self.kid!r}: material does not fit alg {self.alg!r}")
        if isinstance(self._material, bytes) and len(self._material) < HMAC_MIN_BYTES:
            raise ConfigError(f"JWT key {self.kid!r}: an HS256 key needs at least 256 bits")

    def __repr__(self) -> str:
        retired = "" if self.retired_at is None else f", retired_at={self.retired_at}"
        return f"Key(kid={self.kid!r}, alg={self.alg!r}, created_at={self.created_at}{retired})"

    __str__ = __repr__

    @property
    def kty(self) -> str:
        return _KTY[self.alg]

    @property
    def is_symmetric(self) -> bool:
        return self.alg == "HS256"

    @property
    def signing_key(self) -> PrivateKey:
        """The object PyJWT signs with (secret bytes or a private key)."""
        return self._material

    @property
    def verification_key(self) -> PublicKey:
        """The object PyJWT verifies with (secret bytes or a public key)."""
        material = self._material
        if isinstance(material, bytes):
            return material
        return material.public_key()

    def public_jwk(self) -> dict[str, Any] | None:
        """The public JWK of an asymmetric key; ``None`` for a symmetric one."""
        material = self._material
        full: dict[str, Any]
        if isinstance(material, bytes):
            return None
        if isinstance(material, ed25519.Ed25519PrivateKey):
            full = OKPAlgorithm.to_jwk(material.public_key(), as_dict=True)
        elif isinstance(material, ec.EllipticCurvePrivateKey):
            full = ECAlgorithm.to_jwk(material.public_key(), as_dict=True)
        else:
            full = RSAAlgorithm.to_jwk(material.public_key(), as_dict=True)
        jwk: dict[str, Any] = {"kid": self.kid, "alg": self.alg, "use": "sig", "kty": self.kty}
        jwk.update((name, full[name]) for name in _PUBLIC_MEMBERS[self.kty])
        return jwk

    def private_jwk(self) -> dict[str, Any]:
        """The full JWK, private members included, as written to the key file."""
        material = self._material
        if isinstance(material, bytes):
            body = HMACAlgorithm.to_jwk(material, as_dict=True)
        elif isinstance(material, ed25519.Ed25519PrivateKey):
            body = OKPAlgorithm.to_jwk(material, as_dict=True)
        elif isinstance(material, ec.EllipticCurvePrivateKey):
            body = ECAlgorithm.to_jwk(material, as_dict=True)
        else:
            body = RSAAlgorithm.to_jwk(material, as_dict=True)
        body.pop("key_ops", None)  # "use" says it; RFC 7517 4.3 advises not to send both
        jwk: dict[str, Any] = {
            "kid": self.kid,
            "alg": self.alg,
            "use": "sig",
            "iat": self.created_at,
        }
        if self.retired_at is not None:
            jwk["retired"] = self.retired_at
        jwk.update(body)
        return jwk


@dataclass(frozen=True, eq=False, repr=False)
class KeySet:
    """Keys that verify, one of which (``signing_kid``) signs. Immutable: changes return copies."""

    keys: tuple[Key, ...]
    signing_kid: str
    _by_kid: dict[str, Key] = field(init=False)

    def __post_init__(self) -> None:
        by_kid: dict[str, Key] = {}
        for key in self.keys:
            if key.kid in by_kid:
                raise ConfigError("JWT key set: duplicate kid")
            by_kid[key.kid] = key
        if not by_kid:
            raise ConfigError("JWT key set: no keys")
        if self.signing_kid not in by_kid:
            raise ConfigError("JWT key set: signing_kid names no key in the set")
        object.__setattr__(self, "_by_kid", by_kid)

    def __repr__(self) -> str:
        return f"KeySet(signing_kid={self.signing_kid!r}, keys={list(self.keys)!r})"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    @property
    def signing_key(self) -> Key:
        return self._by_kid[self.signing_kid]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(key.kid for key in self.keys)

    def get(self, kid: str) -> Key | None:
        return self._by_kid.get(kid)

    def current(self) -> KeySet:
        """A key set is its own (static) :class:`KeySource`."""
        return self

    def refresh(self) -> KeySet:
        return self

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS document for ``/.well-known/jwks.json``: asymmetric public keys only."""
        public = (key.public_jwk() for key in self.keys)
        return {"keys": [jwk for jwk in public if jwk is not None]}

    def with_signing_key(self, key: Key, now: float) -> KeySet:
        """Add ``key`` as the signing key; the old one stays for verification, marked retired."""
        old = self.signing_key
        retired = Key(old.kid, old.alg, old.created_at, int(now), _material=old._material)
        others = tuple(k for k in self.keys if k.kid != old.kid)
        return KeySet((*others, retired, key), key.kid)

    def without(self, kids: Iterable[str]) -> KeySet:
        drop = set(kids)
        if self.signing_kid in drop:
            raise ValueError("the signing key cannot be removed")
        return KeySet(tuple(k for k in self.keys if k.kid not in drop), self.signing_kid)

    def to_json(self) -> str:
        document = {"signing_kid": self.signing_kid, "keys": [k.private_jwk() for k in self.keys]}
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, known: KeySet | None = None) -> KeySet:
        """Parse and strictly validate a key file; any flaw is a one-line :class:`ConfigError`.

        A key identical to one in ``known`` reuses its parsed material: loading an RSA key
        validates it (~0.2 s for 3072 bits), which a reload after a rotation need not repeat.
        """
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            raise ConfigError("JWT key set file is not valid JSON") from None
        if not isinstance(document, dict):
            raise ConfigError("JWT key set file must hold a JSON object")
        raw_keys = document.get("keys")
        signing_kid = document.get("signing_kid")
        if not isinstance(raw_keys, list) or not raw_keys:
            raise ConfigError("JWT key set file needs a non-empty 'keys' list")
        if not isinstance(signing_kid, str) or not signing_kid:
            raise ConfigError("JWT key set file needs a 'signing_kid' string")
        keys = tuple(_parse_key(raw, index, known) for index, raw in enumerate(raw_keys))
        return cls(keys, signing_kid)


def _same_material(raw: dict[str, Any], key: Key) -> bool:
    ignored = ("iat", "retired")
    known = {k: v for k, v in key.private_jwk().items() if k not in ignored}
    return known == {k: v for k, v in raw.items() if k not in ignored}


def _parse_key(raw: object, index: int, known: KeySet | None = None) -> Key:
    where = f"JWT key set: key #{index}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not a JSON object")
    kid, alg, kty = raw.get("kid"), raw.get("alg"), raw.get("kty")
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        raise ConfigError(f"{where} needs a 'kid' string")
    if not isinstance(alg, str) or alg not in _KTY:
        raise ConfigError(f"{where} has an unsupported 'alg' (use {', '.join(_KTY)})")
    if kty != _KTY[alg]:
        raise ConfigError(f"{where}: 'kty' does not match alg {alg}")
    if alg in _CRV and raw.get("crv") != _CRV[alg]:
        raise ConfigError(f"{where}: alg {alg} needs crv {_CRV[alg]}")
    if raw.get("use", "sig") != "sig":
        raise ConfigError(f"{where}: 'use' must be 'sig'")
    created_at = _epoch(raw.get("iat"), f"{where}: 'iat' must be epoch seconds")
    retired_at = None
    if "retired" in raw:
        retired_at = _epoch(raw["retired"], f"{where}: 'retired' must be epoch seconds")
    previous = known.get(kid) if known is not None else None
    if previous is not None and _same_material(raw, previous):
        material = previous.signing_key
    else:
        material = _material_from_jwk(raw, alg, where)
    return Key(kid, alg, created_at, retired_at, _material=material)


def _epoch(value: object, message: str) -> int:
    # bool is an int subclass; true/false in a time field is a broken file, not 0/1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(message)
    return value


def _material_from_jwk(raw: dict[str, Any], alg: str, where: str) -> PrivateKey:
    # PyJWT's messages may quote key members; never let them (or their chain) escape.
    material: object
    try:
        if alg == "HS256":
            material = HMACAlgorithm.from_jwk(raw)
        elif alg == "EdDSA":
            material = OKPAlgorithm.from_jwk(raw)
        elif alg == "ES256":
            material = ECAlgorithm.from_jwk(raw)
        else:
            material = RSAAlgorithm.from_jwk(raw)
    except Exception:
        raise ConfigError(f"{where} has invalid key material") from None
    if isinstance(material, bytes):
        if len(material) < HMAC_MIN_BYTES:
            raise ConfigError(f"{where}: an HS256 key needs at least 256 bits")
        return material
    if isinstance(material, ed25519.Ed25519PrivateKey):
        return material
    if isinstance(material, ec.EllipticCurvePrivateKey):
        if not isinstance(material.curve, ec.SECP256R1):
            raise ConfigError(f"{where}: ES256 needs a P-256 key")
        return material
    if isinstance(material, rsa.RSAPrivateKey):
        if material.key_size < RSA_MIN_BITS:
            raise ConfigError(f"{where}: an RSA key needs at least {RSA_MIN_BITS} bits")
        return material
    raise ConfigError(f"{where} must hold a private key (the 'd' member is missing)")


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in _KTY:
        raise ConfigError(f"unsupported JWT algorithm (use {', '.join(SUPPORTED_ALGORITHMS)})")


def generate_key(algorithm: str, now: float, *, kid: str | None = None) -> Key:
    """A fresh key for ``algorithm``; RS256 takes a moment (3072-bit RSA)."""
    _check_algorithm(algorithm)
    material: PrivateKey
    if algorithm == "HS256":
        material = secrets.token_bytes(HMAC_MIN_BYTES)
    elif algorithm == "EdDSA":
        material = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        material = ec.generate_private_key(ec.SECP256R1())
    else:
        material = rsa.generate_private_key(public_exponent=65537, key_size=RSA_GENERATED_BITS)
    return Key(kid or secrets.token_urlsafe(16), algorithm, int(now), _material=material)


def new_key_set(algorithm: str, now: float) -> KeySet:
    key = generate_key(algorithm, now)
    return KeySet((key,), key.kid)


# --- the file ---------------------------------------------------------------------------


_Stamp = tuple[int, int, int]


def load(path: str | os.PathLike[str]) -> KeySet:
    """Read and strictly validate a key file. Any problem is a one-line :class:`ConfigError`."""
    return _load_stamped(path)[0]


def _load_stamped(
    path: str | os.PathLike[str], known: KeySet | None = None
) -> tuple[KeySet, _Stamp]:
    """Load the file and the (inode, mtime, size) of exactly the bytes read."""
    try:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            data = file.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("JWT key set file does not exist") from None
    except OSError as exc:
        raise ConfigError(f"JWT key set file cannot be read ({exc.strerror})") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ConfigError("JWT key set file is too large")
    if stat.S_IMODE(info.st_mode) & 0o077:
        security_log.warning("JWT key set file is readable by others; chmod 600 it")
    return KeySet.from_json(data, known=known), _stamp(info)


def _stamp(info: os.stat_result) -> _Stamp:
    # Writers always replace the file (new inode), so this changes with every new content.
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _write_failed(exc: OSError) -> ConfigError:
    return ConfigError(f"JWT key set file cannot be written ({exc.strerror or exc})")


def _write_temp(path: Path, keyset: KeySet) -> Path:
    """Write ``keyset`` to a new 0600 temp file beside ``path`` and return its name."""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_failed(exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)  # mkstemp already does; be explicit
            file.write(keyset.to_json())
            file.flush()
            os.fsync(file.fileno())
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        if isinstance(exc, OSError):
            raise _write_failed(exc) from None
        raise
    return Path(temp_name)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; best effort (some filesystems refuse O_RDONLY dirs).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _replace(path: Path, keyset: KeySet) -> None:
    temp = _write_temp(path, keyset)
    try:
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise _write_failed(exc) from None
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``<path>.lock``, held for one read-modify-write.

    The lock file is never deleted: unlinking it would let two processes lock different inodes.
    """
    try:
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"JWT key set lock file cannot be opened ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # also releases the lock


def save(path: str | os.PathLike[str], keyset: KeySet) -> None:
    """Atomically replace the key file with ``keyset`` (mode 0600), under the file lock."""
    target = Path(path)
    with _locked(target):
        _replace(target, keyset)


def load_or_create(
    path: str | os.PathLike[str], algorithm: str, clock: Clock = system_clock
) -> KeySet:
    """Load the key file, or create it with one ``algorithm`` key on first start.

    Several processes starting at once all end up with the same file: each writes a complete
    temp file and ``os.link``s it into place, which fails if the name exists, so exactly one
    wins and the others read the winner's file. ``algorithm`` only matters for a new file.
    """
    _check_algorithm(algorithm)
    target = Path(path)
    if target.exists():
        return load(target)  # a broken file is the operator's to fix, never replaced
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _write_failed(exc) from None
    temp = _write_temp(target, new_key_set(algorithm, clock()))
    try:
        os.link(temp, target)
    except FileExistsError:
        pass  # another process won the race; use its keys
    except OSError as exc:
        raise _write_failed(exc) from None
    else:
        _fsync_dir(target.parent)
        security_log.info("created JWT key set file with one %s key", algorithm)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    return load(target)


def rotate(path: str | os.PathLike[str], algorithm: str, clock: Clock = system_clock) -> KeySet:
    """Add a new ``algorithm`` signing key; older keys stay to verify tokens they signed."""
    _check_algorithm(algorithm)
    target = Path(path)
    with _locked(target):
        now = clock()
        keyset = load(target).with_signing_key(generate_key(algorithm, now), now)
        _replace(target, keyset)
    security_log.info("rotated JWT signing key; new kid %s", keyset.signing_kid)
    return keyset


def prune(
    path: str | os.PathLike[str], max_age_seconds: float, clock: Clock = system_clock
) -> list[str]:
    """Remove verification-only keys that can no longer have a live token; return their kids.

    A key's age counts from when it stopped signing (``retired``), not from its creation:
    a key made a year ago and rotated out a minute ago still signed tokens a minute ago.
    A key is removed once ``max_age_seconds`` (pass the longest token lifetime) plus
    ``PRUNE_GRACE_SECONDS`` (the largest leeway) have passed since then. A key without
    ``retired`` (hand-edited file) counts as retired when the newest key was created.
    The signing key is never removed.
    """
    target = Path(path)
    with _locked(target):
        now = clock()
        keyset = load(target)
        newest = max(key.created_at for key in keyset.keys)
        removed = [
            key.kid
            for key in keyset.keys
            if key.kid != keyset.signing_kid
            and now - (key.retired_at if key.retired_at is not None else newest)
            > max_age_seconds + PRUNE_GRACE_SECONDS
        ]
        if removed:
            _replace(target, keyset.without(removed))
    if removed:
        security_log.info("pruned JWT keys %s", ", ".join(removed))
    return removed


# --- running processes ------------------------------------------------------------------


class KeySource(Protocol):
    """Where a token codec gets its keys: a :class:`KeyRing`, or a fixed :class:`KeySet`."""

    def current(self) -> KeySet:
        """The key set, possibly re-read if the file changed (cheap; call per token)."""
        ...

    def refresh(self) -> KeySet:
        """Like :meth:`current` but checks the file now (e.g. on an unknown ``kid``)."""
        ...


class KeyRing:
    """The key file as seen by a running process, re-read when it changes.

    ``current()`` looks at the file's inode/mtime/size at most once per ``check_interval``
    seconds (by ``clock``) and reloads only when they changed, so ``bastion keys rotate`` in
    another process takes effect here without a restart. A file that turns unreadable or
    invalid is logged and the last good set kept: a bad edit must not take the API down.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = system_clock,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._check_interval = check_interval
        self._lock = threading.Lock()
        self._keyset, self._stamp = _load_stamped(self.path)
        self._checked_at = clock()

    @classmethod
    def load_or_create(
        cls,
        path: str | os.PathLike[str],
        algorithm: str,
        *,
        clock: Clock = system_clock,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> KeyRing:
        """Create the key file if missing (see :func:`load_or_create`), then watch it."""
        load_or_create(path, algorithm, clock)
        return cls(path, clock=clock, check_interval=check_interval)

    def __repr__(self) -> str:
        return f"KeyRing(path={str(self.path)!r}, keyset={self._keyset!r})"

    def current(self) -> KeySet:
        if self._clock() - self._checked_at < self._check_interval:
            return self._keyset
        return self.refresh()

    def refresh(self) -> KeySet:
        with self._lock:
            self._checked_at = self._clock()
            try:
                changed = _stamp(os.stat(self.path)) != self._stamp
            except OSError:
                changed = True  # gone or unreadable: let the load below log why
            if not changed:
                return self._keyset
            try:
                keyset, stamp = _load_stamped(self.path, self._keyset)
            except ConfigError as exc:
                security_log.error("JWT key set not reloaded, keeping the previous one: %s", exc)
                return self._keyset
            if keyset.kids != self._keyset.kids or keyset.signing_kid != self._keyset.signing_kid:
                security_log.info("reloaded JWT key set; signing kid %s", keyset.signing_kid)
            self._keyset, self._stamp = keyset, stamp
            return keyset

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        return self.current().public_jwks()
