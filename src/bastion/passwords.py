"""Password hashing: Argon2id for new hashes; legacy hashes verified and migrated on the next login.

Design choices, in short (docs/passwords.md has the long form):

* **Argon2id** via argon2-cffi, at least OWASP's m=19 MiB, t=2, p=1. ``p=1`` keeps one hash on
  one core, which is what the hashing pool (one worker thread per CPU) assumes.
* **argon2-cffi and bcrypt directly, not pwdlib's ``PasswordHash``**: pwdlib raises
  ``UnknownHashError`` on garbage (we need ``(False, False)`` after dummy work); its Argon2
  ``check_needs_rehash`` flags *any* difference, so two processes with different settings
  during a rolling deploy would re-hash a user back and forth (we flag only weaker hashes);
  it hides the Argon2 parameters that the dummy hash must copy; and its bcrypt verifier lets
  bcrypt 5's ``ValueError`` (password over 72 bytes) escape and accepts the buggy ``$2x$``.
* **Never truncated.** Passwords are ``str`` of at most 1024 UTF-8 bytes, NFKC-normalised
  (NIST SP 800-63B 5.1.1.2) before hashing and verifying. bcrypt cannot take more than 72
  bytes, so a longer password simply fails against a bcrypt hash.
* **Legacy schemes** (verify only, re-hashed at the next sign-in): bcrypt, and Django's
  ``pbkdf2_sha256``/``pbkdf2_sha1``, ``bcrypt_sha256``, ``bcrypt`` and ``argon2`` formats,
  so users brought over by ``bastion users import`` sign in with their old passwords.
  Django's PBKDF2 digests are compared with ``hmac.compare_digest``; its iteration count is
  capped (:data:`MAX_PBKDF2_ITERATIONS`) so an imported hash cannot make one check take long.
* **Unusable passwords**: an account made without a password stores a marker
  (:func:`unusable_password_hash`, ``!`` and random text, as Django's
  ``set_unusable_password``) that no password matches, at the cost of a real check.
* **Unknown users cost the same** as known ones: they are verified against a dummy Argon2id
  hash with the current parameters. Every failure path that skipped the real work (garbage
  hash, over-long password, a verifier error) does that dummy work too.
* **Never on the event loop.** The ``*_async`` methods run in a fixed pool of worker threads
  (default: usable CPUs less one), so a login flood queues; on Linux those threads run at a
  lower CPU priority, so a busy event loop preempts them.

Comparisons of secret material happen inside argon2/bcrypt's C code, in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import threading
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Literal, NamedTuple, Protocol, TypeVar

import argon2
import argon2.exceptions
import bcrypt
from argon2.low_level import ARGON2_VERSION, Type

__all__ = [
    "HASHING_NICENESS",
    "MAX_PASSWORD_BYTES",
    "MAX_PBKDF2_ITERATIONS",
    "MIN_MEMORY_COST",
    "MIN_PARALLELISM",
    "MIN_TIME_COST",
    "UNUSABLE_PASSWORD_PREFIX",
    "BcryptScheme",
    "DjangoArgon2Scheme",
    "DjangoBcryptSHA256Scheme",
    "DjangoBcryptScheme",
    "DjangoPBKDF2Scheme",
    "HashScheme",
    "PasswordTooLongError",
    "Passwords",
    "VerifyResult",
    "default_legacy_schemes",
    "default_passwords",
    "has_usable_password",
    "unusable_password_hash",
]

MIN_MEMORY_COST: Final = 19_456  # KiB (19 MiB): OWASP Password Storage Cheat Sheet minimum
MIN_TIME_COST: Final = 2
MIN_PARALLELISM: Final = 1
MAX_PASSWORD_BYTES: Final = 1024  # UTF-8 bytes of the password as given
# Added to a hashing thread's nice value: at +10 a thread gets about a tenth of the CPU
# share of a normal one when both want the same core.
HASHING_NICENESS: Final = 10

_TOO_LONG: Final = (
    f"password is longer than {MAX_PASSWORD_BYTES} bytes (UTF-8); it is refused, not truncated"
)
_HASH_LEN: Final = 32
_SALT_LEN: Final = 16
_BCRYPT_MAX_BYTES: Final = 72
# A stored value longer than this is not a hash we know; refuse it before any parsing.
_MAX_ENCODED_LEN: Final = 512
# Sanity caps on parameters read from a stored hash, so one corrupt row cannot pin a worker
# thread for hours (m=2^32-1, t=2^32-1). Raised to the configured values if those are higher.
_MAX_STORED_MEMORY_COST: Final = 1024 * 1024  # KiB = 1 GiB
_MAX_STORED_TIME_COST: Final = 16
_MAX_STORED_PARALLELISM: Final = 16
_MAX_BCRYPT_ROUNDS: Final = 16  # 2^16 rounds already takes seconds; real systems use 10-14
# Django's PBKDF2 iterations: 1,000,000 in Django 5.2 and 1,200,000 in 6.0 (each release adds
# about a fifth); one verification at 1,000,000 takes ~0.4 s on a 2-core server. Above the
# cap (~1.2 s there) a stored hash is refused as corrupt, so a row cannot pin a worker thread
# for minutes; raise it per scheme (``DjangoPBKDF2Scheme(max_iterations=...)``) if needed.
MAX_PBKDF2_ITERATIONS: Final = 3_000_000

_ARGON2_RE: Final = re.compile(
    r"\$argon2(?:id|i|d)\$(?:v=\d{1,3}\$)?m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,10})"
    r"\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+"
)
# $2a$, $2b$ (bcrypt, passlib) and $2y$ (PHP) are the same algorithm; $2x$ is a buggy variant.
_BCRYPT_RE: Final = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_BCRYPT_LIMITS: Final = "$2a$, $2b$ or $2y$, cost 4 to 16"

logger = logging.getLogger("bastion.security")

T = TypeVar("T")


# The first character of an unusable password's marker; no scheme's hash starts with it.
UNUSABLE_PASSWORD_PREFIX: Final = "!"  # noqa: S105 - a marker, not a password


def unusable_password_hash() -> str:
    """What to store for an account that has no password (yet): no password verifies
    against it. Random, so two such accounts never share a stored value."""
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)


def has_usable_password(hash: str | None) -> bool:
    """Whether a stored hash is a password at all (not :func:`unusable_password_hash`'s
    marker, not missing); says nothing about whether any scheme can check it."""
    return bool(hash) and not str(hash).startswith(UNUSABLE_PASSWORD_PREFIX)


class PasswordTooLongError(ValueError):
    """The password is longer than a hasher accepts; it is refused, never truncated."""


class VerifyResult(NamedTuple):
    """Outcome of a verification; unpacks as ``ok, needs_rehash = ...``."""

    ok: bool
    needs_rehash: bool  # only ever True together with ok


_FAILED: Final = VerifyResult(False, False)


class HashScheme(Protocol):
    """A stored-hash format that can be verified: the registry's extension point.

    ``verify`` gets the password as UTF-8 bytes and may raise (``ValueError`` for input it
    cannot check, anything for a malformed hash): the registry turns every error into a
    failed login, does the dummy work and logs the error type, never the values.
    """

    name: str

    def identify(self, hash: str) -> bool:
        """Whether ``hash`` is in this scheme's format (cheap, no hashing)."""
        ...

    def verify(self, secret: bytes, hash: str) -> bool: ...

    def needs_rehash(self, hash: str) -> bool: ...


def _bcrypt_identify(hash: str) -> bool:
    match = _BCRYPT_RE.fullmatch(hash)
    return match is not None and 4 <= int(match.group(1)) <= _MAX_BCRYPT_ROUNDS


def _argon2_identify(hash: str, memory_cost: int, time_cost: int, parallelism: int) -> bool:
    """Whether ``hash`` is an Argon2 hash with parameters within the sanity caps (raised to
    the given values when those are higher)."""
    match = _ARGON2_RE.fullmatch(hash)
    if match is None:
        return False
    m, t, p = (int(group) for group in match.groups())
    return (
        m <= max(_MAX_STORED_MEMORY_COST, memory_cost)
        and t <= max(_MAX_STORED_TIME_COST, time_cost)
        and p <= max(_MAX_STORED_PARALLELISM, parallelism)
    )


def _argon2_limits(memory_cost: int, time_cost: int, parallelism: int) -> str:
    m = max(_MAX_STORED_MEMORY_COST, memory_cost)
    t = max(_MAX_STORED_TIME_COST, time_cost)
    p = max(_MAX_STORED_PARALLELISM, parallelism)
    return f"$argon2id$, $argon2i$ or $argon2d$ with m up to {m} KiB, t up to {t}, p up to {p}"


class BcryptScheme:
    """Legacy bcrypt (``$2a$``, ``$2b$``, ``$2y$``): verify only, always asks for a re-hash."""

    name = "bcrypt"
    # ``prefix`` and ``limits`` (optional for other schemes) let ``Passwords.why_unusable``
    # say what is wrong with a hash that starts like this scheme's but is not one.
    prefix = "$2"
    limits = _BCRYPT_LIMITS

    def identify(self, hash: str) -> bool:
        return _bcrypt_identify(hash)

    def verify(self, secret: bytes, hash: str) -> bool:
        # bcrypt ignores bytes after the 72nd; bcrypt 5 raises instead. Either way such a
        # password cannot be checked in full, so it fails (no truncation, ever).
        if len(secret) > _BCRYPT_MAX_BYTES:
            raise PasswordTooLongError("bcrypt cannot check passwords over 72 bytes")
        return bcrypt.checkpw(secret, hash.encode("ascii"))

    def needs_rehash(self, hash: str) -> bool:
        return True


class DjangoPBKDF2Scheme:
    """Django's ``pbkdf2_sha256$<iterations>$<salt>$<base64 digest>`` (``digest="sha1"``:
    ``pbkdf2_sha1$...``): verify only, always asks for a re-hash.

    The digest is compared with ``hmac.compare_digest``. Iteration counts above
    ``max_iterations`` (default :data:`MAX_PBKDF2_ITERATIONS`) are refused as corrupt, like
    the caps on Argon2 and bcrypt parameters. Django salts are ASCII without ``$``.
    """

    def __init__(
        self,
        digest: Literal["sha256", "sha1"] = "sha256",
        *,
        max_iterations: int = MAX_PBKDF2_ITERATIONS,
    ) -> None:
        _check_int("max_iterations", max_iterations, 1)
        self.digest = digest
        self.max_iterations = max_iterations
        self.name = f"django_pbkdf2_{digest}"
        self.prefix = f"pbkdf2_{digest}$"
        size = hashlib.new(digest).digest_size
        padding = -size % 3
        chars = 4 * ((size + 2) // 3) - padding
        self._format = re.compile(
            re.escape(self.prefix)
            + r"([1-9][0-9]{0,9})\$([!-#%-~]{1,128})\$"
            + f"([A-Za-z0-9+/]{{{chars}}}={{{padding}}})"
        )
        self.limits = (
            f"1 to {max_iterations:,} iterations, a salt of printable ASCII without '$', "
            f"a {size}-byte digest in base64"
        )

    def _parse(self, hash: str) -> tuple[int, bytes, bytes] | None:
        match = self._format.fullmatch(hash)
        if match is None or int(match.group(1)) > self.max_iterations:
            return None
        iterations, salt, digest = match.groups()
        return int(iterations), salt.encode("ascii"), base64.b64decode(digest)

    def identify(self, hash: str) -> bool:
        return self._parse(hash) is not None

    def verify(self, secret: bytes, hash: str) -> bool:
        parsed = self._parse(hash)
        if parsed is None:
            raise ValueError("not a Django PBKDF2 hash")
        iterations, salt, expected = parsed
        actual = hashlib.pbkdf2_hmac(self.digest, secret, salt, iterations)
        return hmac.compare_digest(actual, expected)

    def needs_rehash(self, hash: str) -> bool:
        return True


class _DjangoBcryptFormat:
    """Django's ``<algorithm>$<bcrypt hash>``: verify only, always asks for a re-hash."""

    prefix: str
    limits = _BCRYPT_LIMITS

    def identify(self, hash: str) -> bool:
        return hash.startswith(self.prefix) and _bcrypt_identify(hash.removeprefix(self.prefix))

    def needs_rehash(self, hash: str) -> bool:
        return True


class DjangoBcryptSHA256Scheme(_DjangoBcryptFormat):
    """Django's ``bcrypt_sha256$<bcrypt hash>``: bcrypt of the hex SHA-256 of the password
    (so passwords over 72 bytes are checked in full)."""

    name = "django_bcrypt_sha256"
    prefix = "bcrypt_sha256$"

    def verify(self, secret: bytes, hash: str) -> bool:
        prehashed = binascii.hexlify(hashlib.sha256(secret).digest())
        return bcrypt.checkpw(prehashed, hash.removeprefix(self.prefix).encode("ascii"))


class DjangoBcryptScheme(_DjangoBcryptFormat):
    """Django's ``bcrypt$<bcrypt hash>``: plain bcrypt, with the 72-byte rule of
    :class:`BcryptScheme`."""

    name = "django_bcrypt"
    prefix = "bcrypt$"

    def verify(self, secret: bytes, hash: str) -> bool:
        return BcryptScheme().verify(secret, hash.removeprefix(self.prefix))


class DjangoArgon2Scheme:
    """Django's ``argon2$argon2id$...`` (older Django: ``argon2$argon2i$...``): an Argon2
    hash behind Django's algorithm name. Verify only, always asks for a re-hash into
    Bastion's own format."""

    name = "django_argon2"
    prefix = "argon2$"
    limits = _argon2_limits(0, 0, 0)

    def __init__(self) -> None:
        self._verifier = argon2.PasswordHasher()  # verify reads the parameters from the hash

    def identify(self, hash: str) -> bool:
        # Django's prefix is "argon2"; what follows is the usual "$argon2id$v=19$...".
        return hash.startswith(self.prefix) and _argon2_identify(hash[len("argon2") :], 0, 0, 0)

    def verify(self, secret: bytes, hash: str) -> bool:
        try:
            return self._verifier.verify(hash[len("argon2") :], secret)
        except argon2.exceptions.VerifyMismatchError:
            return False

    def needs_rehash(self, hash: str) -> bool:
        return True


def default_legacy_schemes() -> tuple[HashScheme, ...]:
    """The verify-only schemes a :class:`Passwords` accepts unless told otherwise: bcrypt
    and Django's PBKDF2 (SHA-256, SHA-1), bcrypt_sha256, bcrypt and argon2 formats."""
    return (
        BcryptScheme(),
        DjangoPBKDF2Scheme("sha256"),
        DjangoPBKDF2Scheme("sha1"),
        DjangoBcryptSHA256Scheme(),
        DjangoBcryptScheme(),
        DjangoArgon2Scheme(),
    )


class _Argon2Scheme:
    """The current scheme: makes Argon2id hashes, verifies any Argon2 variant."""

    name = "argon2"
    prefix = "$argon2"

    def __init__(self, memory_cost: int, time_cost: int, parallelism: int) -> None:
        self.memory_cost = memory_cost
        self.time_cost = time_cost
        self.parallelism = parallelism
        self.limits = _argon2_limits(memory_cost, time_cost, parallelism)
        self.hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=_HASH_LEN,
            salt_len=_SALT_LEN,
            type=Type.ID,
        )
        # A random salt and digest with the current parameters: verifying any password
        # against it costs exactly one real verification, and nothing can match it.
        self.dummy_hash = (
            f"$argon2id$v={ARGON2_VERSION}$m={memory_cost},t={time_cost},p={parallelism}"
            f"${_b64(secrets.token_bytes(_SALT_LEN))}${_b64(secrets.token_bytes(_HASH_LEN))}"
        )

    def identify(self, hash: str) -> bool:
        return _argon2_identify(hash, self.memory_cost, self.time_cost, self.parallelism)

    def hash(self, secret: bytes) -> str:
        return self.hasher.hash(secret)

    def verify(self, secret: bytes, hash: str) -> bool:
        try:
            return self.hasher.verify(hash, secret)
        except argon2.exceptions.VerifyMismatchError:
            return False

    def burn(self, secret: bytes) -> None:
        """Spend one verification's worth of work, for failure paths that skipped it."""
        with contextlib.suppress(argon2.exceptions.VerificationError):
            self.hasher.verify(self.dummy_hash, secret)

    def needs_rehash(self, hash: str) -> bool:
        # Only *weaker* hashes: a stronger one (another process's newer settings during a
        # rolling deploy) is kept, so two configurations never re-hash a user back and forth.
        # Parallelism is not strength (same total memory and work), so it is not compared.
        params = argon2.extract_parameters(hash)
        return (
            params.type is not Type.ID
            or params.version != ARGON2_VERSION
            or params.memory_cost < self.memory_cost
            or params.time_cost < self.time_cost
            or params.hash_len < _HASH_LEN
            or params.salt_len < _SALT_LEN
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def _usable_cpus() -> int:
    # Affinity-aware where the OS supports it (containers pinned to fewer cores).
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _check_int(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


class Passwords:
    """Hashes new passwords with Argon2id and verifies current and legacy hashes.

    ``memory_cost`` is in KiB. The minimums (OWASP: 19 MiB, t=2, p=1) are enforced; raise
    them if your hardware allows (docs/passwords.md has timings). ``legacy_schemes`` are
    verify-only formats, :func:`default_legacy_schemes` (bcrypt and Django's formats) by
    default; pass ``()`` to accept Argon2 only.
    ``max_concurrency`` is the number of worker threads the ``*_async`` methods hash in
    (default: usable CPUs less one, at least 1); share one instance per process.

    The sync methods do CPU-heavy work (tens of milliseconds): call them from threads or
    scripts, and the ``*_async`` ones from async code.
    """

    def __init__(
        self,
        *,
        memory_cost: int = MIN_MEMORY_COST,
        time_cost: int = MIN_TIME_COST,
        parallelism: int = MIN_PARALLELISM,
        legacy_schemes: Sequence[HashScheme] | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        _check_int("memory_cost", memory_cost, MIN_MEMORY_COST)
        _check_int("time_cost", time_cost, MIN_TIME_COST)
        _check_int("parallelism", parallelism, MIN_PARALLELISM)
        if parallelism > memory_cost // 8:
            raise ValueError("Argon2 needs memory_cost >= 8 * parallelism")
        if max_concurrency is None:
            # Leave a core to the event loop. Lowering the hashing threads' priority is not
            # enough on its own: each sign-in also costs the loop several milliseconds
            # (database, Redis, form), so more sign-ins a second means longer queues for
            # every other request (bench/run.py on 2 cores: bare-route p99 under sign-in
            # load x2.3-2.8 with one hashing thread, x4-5 with two at +25 % sign-ins).
            max_concurrency = max(1, _usable_cpus() - 1)
        _check_int("max_concurrency", max_concurrency, 1)
        self._argon2 = _Argon2Scheme(memory_cost, time_cost, parallelism)
        self._legacy: tuple[HashScheme, ...] = (
            default_legacy_schemes() if legacy_schemes is None else tuple(legacy_schemes)
        )
        self._max_concurrency = max_concurrency
        # Threads start on first use (ThreadPoolExecutor spawns them as work arrives).
        self._threads = ThreadPoolExecutor(
            max_workers=max_concurrency,
            thread_name_prefix="bastion-hash",
            initializer=_yield_to_the_event_loop,
        )

    def __repr__(self) -> str:
        return (
            f"Passwords(memory_cost={self.memory_cost}, time_cost={self.time_cost}, "
            f"parallelism={self.parallelism}, max_concurrency={self.max_concurrency}, "
            f"legacy={[scheme.name for scheme in self._legacy]})"
        )

    @property
    def memory_cost(self) -> int:
        return self._argon2.memory_cost

    @property
    def time_cost(self) -> int:
        return self._argon2.time_cost

    @property
    def parallelism(self) -> int:
        return self._argon2.parallelism

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    # -- sync API (CPU-bound) -------------------------------------------------------------

    def hash(self, password: str) -> str:
        """A new Argon2id hash of ``password``.

        Raises ``PasswordTooLongError`` (a ``ValueError``) over 1024 UTF-8 bytes and
        ``ValueError`` for text that is not valid Unicode (lone surrogates).
        """
        secret, _ = _encode(password)
        return self._argon2.hash(secret)

    def verify(self, password: str, hash: str | None) -> VerifyResult:
        """Check ``password`` against a stored ``hash``: ``(ok, needs_rehash)``.

        ``needs_rehash`` is True for legacy schemes and weaker Argon2 hashes; then store
        ``hash(password)`` in place of the old one. A missing, unrecognised or corrupt hash,
        or an over-long password, gives ``(False, False)`` after the same work as a real
        check; only a non-``str`` password raises (``TypeError``, a caller bug).
        """
        try:
            secret, raw = _encode(password)
        except ValueError:
            self._argon2.burn(b"")
            return _FAILED

        if isinstance(hash, str) and hash.startswith(UNUSABLE_PASSWORD_PREFIX):
            # An account without a password: it matches nothing, at a real check's cost.
            self._argon2.burn(secret)
            return _FAILED
        scheme = self._identify(hash)
        if scheme is None or not isinstance(hash, str):
            if hash is not None:
                logger.warning("stored password hash not recognised; login refused")
            self._argon2.burn(secret)
            return _FAILED

        # Legacy hashes were made from the password as typed; try that form too when
        # normalising changed it, so old accounts with such passwords can still sign in.
        candidates = [secret] if raw == secret or scheme is self._argon2 else [secret, raw]
        errored = False
        for candidate in candidates:
            try:
                if scheme.verify(candidate, hash):
                    return VerifyResult(True, self._needs_rehash(scheme, hash))
            except PasswordTooLongError:
                errored = True
            except Exception as exc:  # a verifier's error must never become a 500
                logger.warning(
                    "password verify error in %s scheme: %s", scheme.name, type(exc).__name__
                )
                errored = True
        if errored:
            self._argon2.burn(secret)
        return _FAILED

    def needs_rehash(self, hash: str) -> bool:
        """Whether a stored hash should be replaced (legacy, weaker, or unrecognised)."""
        scheme = self._identify(hash)
        return scheme is None or self._needs_rehash(scheme, hash)

    def why_unusable(self, hash: object) -> str | None:
        """Why a stored ``hash`` could never verify here, or None when a scheme takes it.

        For hashes brought from another system (``bastion users import``), checked before
        they are stored. The reason names the format and its limits, never the hash.
        """
        if not isinstance(hash, str) or not hash:
            return "no password hash"
        if len(hash) > _MAX_ENCODED_LEN:
            return f"password hash longer than {_MAX_ENCODED_LEN} characters"
        schemes = (self._argon2, *self._legacy)
        if self._identify(hash) is not None:
            return None
        for scheme in schemes:
            prefix = getattr(scheme, "prefix", None)
            if isinstance(prefix, str) and hash.startswith(prefix):
                limits = getattr(scheme, "limits", None)
                detail = f" (expected {limits})" if isinstance(limits, str) else ""
                return f"not a valid {scheme.name} password hash{detail}"
        if hash.startswith(UNUSABLE_PASSWORD_PREFIX):
            return "an unusable password marker: there is no password to keep"
        names = ", ".join(scheme.name for scheme in schemes)
        return f"unknown password hash format (known: {names})"

    def dummy_verify(self, password: str) -> bool:
        """Do the work of one verification for a user that does not exist; always False."""
        self.verify(password, self._argon2.dummy_hash)
        return False

    # -- async API: worker threads, bounded ----------------------------------------------

    async def hash_async(self, password: str) -> str:
        """``hash`` in a worker thread."""
        return await self._run(self.hash, password)

    async def verify_async(self, password: str, hash: str | None) -> VerifyResult:
        """``verify`` in a worker thread."""
        return await self._run(self.verify, password, hash)

    async def verify_unknown_user(self, password: str) -> bool:
        """``dummy_verify`` in a worker thread; always False."""
        return await self._run(self.dummy_verify, password)

    # -- internals -----------------------------------------------------------------------

    def _identify(self, hash: object) -> HashScheme | None:
        if not isinstance(hash, str) or len(hash) > _MAX_ENCODED_LEN:
            return None
        for scheme in (self._argon2, *self._legacy):
            if scheme.identify(hash):
                return scheme
        return None

    def _needs_rehash(self, scheme: HashScheme, hash: str) -> bool:
        if scheme is not self._argon2:
            return True
        try:
            return scheme.needs_rehash(hash)
        except argon2.exceptions.InvalidHashError:
            return True

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        # A fixed pool: a login flood queues here instead of starting a thread per request,
        # and a request cancelled while queued never starts its hash.
        return await asyncio.get_running_loop().run_in_executor(self._threads, func, *args)


def _yield_to_the_event_loop() -> None:
    """Lower this hashing thread's CPU priority (Linux schedules threads one by one).

    A woken event loop (its thread keeps the normal priority) then preempts a hash at once,
    here or in another worker process on the same machine. Elsewhere ``setpriority`` would
    lower the whole process, so it is left alone.
    """
    if sys.platform.startswith("linux"):
        thread = threading.get_native_id()
        with contextlib.suppress(OSError):
            current = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASHING_NICENESS))


def _encode(password: str) -> tuple[bytes, bytes]:
    """``(NFKC-normalised, as typed)`` UTF-8 bytes of ``password``, after the size check."""
    if not isinstance(password, str):
        raise TypeError(f"password must be str, got {type(password).__name__}")
    # Length in characters first: cheap, and every character is at least one byte.
    if len(password) > MAX_PASSWORD_BYTES:
        raise PasswordTooLongError(_TOO_LONG)
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("password is not valid Unicode text") from None
    if len(raw) > MAX_PASSWORD_BYTES:
        raise PasswordTooLongError(_TOO_LONG)
    return unicodedata.normalize("NFKC", password).encode("utf-8"), raw


@functools.cache
def default_passwords() -> Passwords:
    """The process-wide ``Passwords`` with default parameters.

    Shared so that its thread limit is one budget per process. Tests that need isolation
    build their own ``Passwords(...)`` or call ``default_passwords.cache_clear()``.
    """
    return Passwords()
