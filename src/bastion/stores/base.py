"""The one async Store contract that sessions, refresh tokens, the cache and limits use.

Values are bytes, keys are text, times are seconds. Every backend (memory, sql, redis)
passes the same contract suite in ``tests/contract/``. A backend that cannot reach its
server raises :class:`bastion.exceptions.StoreUnavailable` within its timeout, never a raw
driver error.

Keys that a single operation touches together carry a Redis hash tag, e.g.
``"{user:42}:sessions"``; backends other than Redis treat braces as ordinary characters.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

NO_EXPIRY = math.inf
"""What :meth:`Store.ttl` returns for a key that exists and never expires."""


@runtime_checkable
class Store(Protocol):
    """An async, namespaced key-value store with TTLs, atomic counters and sets."""

    @property
    def namespace(self) -> str:
        """The prefix that keeps this store's keys apart from every other namespace."""
        ...

    def child(self, namespace: str) -> Store:
        """A view of the same backend under ``<namespace>:<child namespace>``; shares
        connections, so closing the parent closes it."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """What :meth:`get` would return for each key, in the order of ``keys`` (a key given
        twice is answered twice); ``[]`` for no keys.

        One round trip where the backend allows it: one ``MGET`` on Redis (on Cluster, when
        the keys span several slots, one per slot, sent to their nodes concurrently), one
        ``SELECT`` in SQL (per 500 keys). Keys need not share a hash tag. Not atomic across
        keys: a concurrent write may be seen for some keys and not yet for others.
        """
        ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` seconds until it expires (None: never). Replaces any
        earlier value and TTL."""
        ...

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store only if absent (or expired); True when this call stored it. Atomic."""
        ...

    async def replace(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store only if the key exists (and has not expired); True when it did. Atomic, so a
        write-back can never resurrect a key that was deleted in the meantime."""
        ...

    async def pop(self, key: str) -> bytes | None:
        """Atomically read and delete; of concurrent callers at most one gets the value."""
        ...

    async def delete(self, *keys: str) -> int:
        """Delete keys (plain or sets); returns how many existed."""
        ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` (the key starts at 0) and return the new value.

        ``ttl`` applies only when this call creates the key: a fixed window, not a sliding
        one. :meth:`get` on a counter returns its decimal ASCII bytes.
        """
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left; :data:`NO_EXPIRY` for a key without expiry; None when absent."""
        ...

    async def touch(self, key: str, ttl: float | None) -> bool:
        """Set a new TTL (None: never expire) on an existing key or set; False if absent."""
        ...

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> int:
        """Add members to the set at ``key``; returns how many were new. A given ``ttl``
        (re)sets the whole set's expiry."""
        ...

    async def srem(self, key: str, *members: str) -> int:
        """Remove members; returns how many were there."""
        ...

    async def smembers(self, key: str) -> builtins.set[str]:
        """All members (empty when the set is absent or expired)."""
        ...

    async def ping(self) -> None:
        """Return when the backend answers; raise StoreUnavailable otherwise."""
        ...

    async def aclose(self) -> None:
        """Release connections. Safe to call twice."""
        ...


def check_ttl(ttl: float | None) -> None:
    """Refuse TTLs no backend can honour the same way."""
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
