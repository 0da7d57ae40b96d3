"""Brute-force protection for password sign-in: per-account back-off and per-address limits.

:class:`LoginThrottle` implements :class:`bastion.auth.LoginLimiter`. The login page and the
token endpoint both sign in through one :class:`~bastion.auth.Authenticator`, so they spend
one budget. All state lives in a :class:`~bastion.stores.base.Store` (memory, SQL or Redis),
so every process that shares the store shares the counters; every counter is a single atomic
``incr`` and every "only one of us" decision a single atomic ``add``.

Per account (the normalised user name; unknown names are treated exactly like known ones):

* Every attempt that reaches the password check is counted as a failure *before* the check
  (a reservation); a success deletes the count. An attempt that ends in an error therefore
  still counts, and concurrent requests cannot all slip through before the first failure is
  recorded.
* From the ``max_failures``-th consecutive attempt on, each attempt must first take the
  account's block (an atomic ``add`` with a TTL): at most one attempt per account is in
  flight, and when it fails the account waits ``1 s`` after the ``max_failures``-th
  failure, ``2 s`` after the next, doubling up to ``max_backoff``. See :func:`backoff_seconds`.
* While blocked, every attempt (the correct password included) raises
  :class:`~bastion.exceptions.RateLimited` with the seconds left, and is not counted, so
  hammering a blocked account cannot lengthen its back-off. The block is a TTL, never a flag:
  back-off always ends by itself, and the count itself is forgotten after ``forget_after``
  seconds without an attempt.

Per client address, a fixed window of ``ip_limit = (count, seconds)`` attempts over all
accounts together, started by the first attempt (:class:`AddressLimit`). Successes count too,
so an attacker cannot refill the budget by signing in to an account of their own between
guesses. IPv6 addresses are counted per /64, the smallest block one subscriber is usually
given. Registration has an :class:`AddressLimit` of its own (``BASTION_REGISTRATION_IP_LIMIT``).

Times are the store's: the TTLs decide when a block or window ends (with the store's clock,
i.e. the Redis server's or the clock given to a memory or SQL store), so processes with
slightly different clocks still agree. Store keys never contain user input: account names
and addresses are SHA-256 hashed. A store outage raises
:class:`~bastion.exceptions.StoreUnavailable` from every method (the app answers 503): a
login is never let through unthrottled.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
from typing import TYPE_CHECKING

from bastion.exceptions import RateLimited
from bastion.i18n.formatting import in_unit
from bastion.stores.base import Store

if TYPE_CHECKING:
    from bastion.settings import Settings

log = logging.getLogger("bastion.security")

DEFAULT_FORGET_AFTER = 86_400
"""Seconds without an attempt after which an account's failures are forgotten (at least
twice ``max_backoff``)."""

IPV6_PREFIX = 64
"""IPv6 clients are counted per network of this prefix length."""


def backoff_seconds(failures: int, *, max_failures: int, max_backoff: int) -> int:
    """Seconds an account must wait after its ``failures``-th consecutive failure.

    0 below ``max_failures``; then 1, 2, 4, ... capped at ``max_backoff``:
    ``min(2 ** (failures - max_failures), max_backoff)``.
    """
    if failures < max_failures:
        return 0
    steps = failures - max_failures
    if steps >= max_backoff.bit_length():  # 2 ** steps > max_backoff; no huge numbers
        return max_backoff
    return min(1 << steps, max_backoff)


def address_bucket(ip: str) -> str:
    """The unit the address limit counts: the IPv4 address (also when IPv4-mapped), the
    IPv6 /64 network, or the text itself when it is not an address."""
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        host_bits = 128 - IPV6_PREFIX
        network = ipaddress.IPv6Network((int(address) >> host_bits << host_bits, IPV6_PREFIX))
        return str(network)
    return str(address)


def _digest(kind: str, value: str) -> str:
    # surrogatepass: a lone surrogate from a form must not turn a login into a 500.
    data = f"bastion.login.{kind}\0{value}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _whole_seconds(remaining: float | None, fallback: int) -> int:
    """``Retry-After`` for ``remaining`` seconds: rounded up, at least 1."""
    if remaining is None:
        return 1  # ended between two store calls: try again at once
    if not math.isfinite(remaining):
        return fallback
    return max(1, math.ceil(remaining))


def describe_wait(seconds: int) -> str:
    """``seconds`` of waiting in words for a person: "1 second", "90 seconds", "15 minutes",
    "3 hours"; rounded up to the unit (``Retry-After`` carries the exact value)."""
    seconds = max(1, seconds)
    if seconds < 120:
        count, unit = seconds, "second"
    elif seconds < 7200:
        count, unit = math.ceil(seconds / 60), "minute"
    else:
        count, unit = math.ceil(seconds / 3600), "hour"
    return in_unit(unit, count)


class AddressLimit:
    """At most ``limit`` attempts per client address in a fixed window of ``window`` seconds
    that starts with the first attempt (IPv6 per /64, see :func:`address_bucket`).

    ``what`` names the attempts in logs ("login", "registration"); ``prefix`` starts the
    store keys, so that limits of different purposes count apart.
    """

    def __init__(self, store: Store, limit: int, window: int, *, what: str, prefix: str) -> None:
        if limit < 1 or window < 1:
            raise ValueError("an address limit needs attempts >= 1 and window seconds >= 1")
        self.store = store
        self.limit = limit
        self.window = window
        self.what = what
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"AddressLimit({self.what}: {self.limit} per {self.window} s)"

    async def hit(self, ip: str | None) -> None:
        """Count one attempt from ``ip``, or raise :class:`RateLimited` past the limit.

        ``None`` (no client address known) is one shared bucket: an attempt whose address
        is unknown is limited, never let through."""
        bucket = address_bucket(ip) if ip else "unknown"
        key = f"{self.prefix}:{_digest('address', bucket)}"
        attempts = await self.store.incr(key, 1, ttl=self.window)
        if attempts > self.limit:
            if attempts == self.limit + 1:
                log.warning(
                    "%s attempts from %s over the limit of %d", self.what, bucket, self.limit
                )
            raise RateLimited(_whole_seconds(await self.store.ttl(key), self.window))


class _AccountKeys:
    """Store keys of one account; one Redis hash tag, so one multi-key delete works on a
    cluster."""

    __slots__ = ("blocked", "failures", "ref")

    def __init__(self, account: str) -> None:
        digest = _digest("account", account)
        self.failures = f"{{acct:{digest}}}:failures"
        self.blocked = f"{{acct:{digest}}}:blocked"
        self.ref = digest[:12]  # for logs: names no account


class LoginThrottle:
    """Per-account exponential back-off and a per-address limit on a :class:`Store`.

    ``max_failures``: consecutive failures before back-off starts. ``max_backoff``: longest
    wait, seconds. ``ip_limit``: ``(attempts, window seconds)`` per client address over all
    accounts, or None for none. ``forget_after``: seconds without an attempt after which an
    account's failures are forgotten (default :data:`DEFAULT_FORGET_AFTER`, and never less
    than twice ``max_backoff``).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_failures: int = 5,
        max_backoff: int = 900,
        ip_limit: tuple[int, int] | None = (30, 60),
        forget_after: int | None = None,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if max_backoff < 1:
            raise ValueError("max_backoff must be at least 1 second")
        if ip_limit is not None and (ip_limit[0] < 1 or ip_limit[1] < 1):
            raise ValueError("ip_limit must be (attempts >= 1, window seconds >= 1)")
        if forget_after is None:
            forget_after = max(DEFAULT_FORGET_AFTER, 2 * max_backoff)
        if forget_after <= max_backoff:
            raise ValueError("forget_after must be longer than max_backoff")
        self.store = store
        self.max_failures = max_failures
        self.max_backoff = max_backoff
        self.ip_limit = ip_limit
        self.forget_after = forget_after
        self._addresses = (
            None
            if ip_limit is None
            else AddressLimit(store, *ip_limit, what="login", prefix="addr")
        )

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> LoginThrottle:
        """A throttle configured by ``BASTION_LOGIN_MAX_FAILURES``, ``_LOGIN_MAX_BACKOFF``
        and ``_LOGIN_IP_LIMIT``."""
        return cls(
            store,
            max_failures=settings.login_max_failures,
            max_backoff=settings.login_max_backoff,
            ip_limit=settings.login_ip_rate,
        )

    def __repr__(self) -> str:
        return (
            f"LoginThrottle(max_failures={self.max_failures}, max_backoff={self.max_backoff}, "
            f"ip_limit={self.ip_limit!r}, forget_after={self.forget_after})"
        )

    def backoff(self, failures: int) -> int:
        """Seconds to wait after ``failures`` consecutive failures (0: none)."""
        return backoff_seconds(
            failures, max_failures=self.max_failures, max_backoff=self.max_backoff
        )

    # -- the LoginLimiter protocol ----------------------------------------------------

    async def check(self, account: str, ip: str | None) -> None:
        """Admit one sign-in attempt or raise :class:`RateLimited`.

        An admitted attempt is counted, for its address and (pessimistically, as a failure)
        for its account, until :meth:`succeeded` says otherwise. ``account`` "" (a name that
        cannot exist) is limited by address only; ``ip`` None by account only.
        """
        if ip and self._addresses is not None:
            await self._addresses.hit(ip)
        if account:
            await self._check_account(_AccountKeys(account))

    async def failed(self, account: str, ip: str | None) -> None:
        """The attempt admitted by :meth:`check` failed. Its failure is already counted; if
        it held the account's block, the wait restarts now, so that it runs from the failure
        rather than from the start of the (slow) password check."""
        if not account:
            return
        keys = _AccountKeys(account)
        held = await self.store.get(keys.blocked)
        if held is not None:
            wait = int(held) if held.isdigit() else self.max_backoff
            await self.store.replace(keys.blocked, held, ttl=max(1, wait))

    async def abandoned(self, account: str, ip: str | None) -> None:
        """The attempt admitted by :meth:`check` could not be judged (the user database was
        down): give its pessimistic failure back, so an outage never locks anyone out. A
        block it took still runs out by itself (at most one back-off step)."""
        if account:
            keys = _AccountKeys(account)
            if await self._count(keys) > 0:
                await self.store.incr(keys.failures, -1, ttl=self.forget_after)

    async def succeeded(self, account: str, ip: str | None) -> None:
        """The attempt succeeded: forget the account's failures and lift its block."""
        if account:
            await self.reset(account)

    # -- administration ---------------------------------------------------------------

    async def failures(self, account: str) -> int:
        """Consecutive failed (or unfinished) attempts recorded for ``account``."""
        return await self._count(_AccountKeys(account)) if account else 0

    async def reset(self, account: str) -> None:
        """Forget ``account``'s failures and end its back-off (e.g. after an admin reset)."""
        keys = _AccountKeys(account)
        await self.store.delete(keys.failures, keys.blocked)

    # -- internals ----------------------------------------------------------------------

    async def _count(self, keys: _AccountKeys) -> int:
        raw = await self.store.get(keys.failures)
        return max(0, int(raw)) if raw else 0

    async def _check_account(self, keys: _AccountKeys) -> None:
        store = self.store
        remaining = await store.ttl(keys.blocked)
        if remaining is not None:
            raise RateLimited(_whole_seconds(remaining, self.max_backoff))
        attempt = await store.incr(keys.failures, 1, ttl=self.forget_after)
        if attempt > 1:  # slide: failures are forgotten forget_after after the last attempt
            await store.touch(keys.failures, self.forget_after)
        wait = self.backoff(attempt)
        if not wait:
            return
        # In back-off territory one attempt at a time: the block is taken atomically and
        # holds the wait that applies if this attempt fails (failed() restarts it then).
        if await store.add(keys.blocked, str(wait).encode(), ttl=wait):
            if attempt == self.max_failures:
                log.info("login back-off starts for account ref %s", keys.ref)
            return
        # A concurrent attempt holds the block: this one is refused and not counted.
        await store.incr(keys.failures, -1, ttl=self.forget_after)
        raise RateLimited(_whole_seconds(await store.ttl(keys.blocked), self.max_backoff))
