"""An in-process store: for development, tests and single-process caches.

Every operation runs synchronously between two awaits, so it is atomic under asyncio. The
store is not shared between processes (each uvicorn worker has its own) nor meant to be
used from several threads.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from bastion.clock import Clock, system_clock
from bastion.stores.base import NO_EXPIRY, check_ttl

# Sweep expired entries after this many writes, or after as many writes as there are
# entries when there are more: memory stays bounded at an amortised O(1) cost per write.
_SWEEP_EVERY = 1024


@dataclass(slots=True)
class _Entry:
    value: bytes | set[str]
    expires_at: float | None


@dataclass(slots=True)
class _Shared:
    """The state every child view of one store shares."""

    max_entries: int | None
    entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    writes_since_sweep: int = 0


class MemoryStore:
    """A :class:`~bastion.stores.base.Store` kept in a dict of this process.

    ``max_entries`` caps the number of keys by evicting the least recently written one;
    use it for caches only, since evicting a session or a rate-limit counter forgets it.
    """

    def __init__(
        self,
        namespace: str = "bastion",
        clock: Clock = system_clock,
        *,
        max_entries: int | None = None,
    ) -> None:
        if not namespace:
            raise ValueError("namespace must not be empty")
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._namespace = namespace
        self._clock = clock
        self._shared = _Shared(max_entries)

    def __repr__(self) -> str:
        return f"MemoryStore(namespace={self._namespace!r})"

    @property
    def namespace(self) -> str:
        return self._namespace

    def child(self, namespace: str) -> MemoryStore:
        if not namespace:
            raise ValueError("namespace must not be empty")
        view = copy.copy(self)  # shares _shared, hence the same data
        view._namespace = f"{self._namespace}:{namespace}"
        return view

    # -- internals -------------------------------------------------------------------

    def _expires_at(self, ttl: float | None) -> float | None:
        check_ttl(ttl)
        return None if ttl is None else self._clock() + ttl

    def _live(self, key: str) -> _Entry | None:
        """The entry at ``key`` unless absent or expired (expired ones are dropped)."""
        full = (self._namespace, key)
        entry = self._shared.entries.get(full)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self._clock():
            del self._shared.entries[full]
            return None
        return entry

    def _bytes(self, entry: _Entry) -> bytes:
        if isinstance(entry.value, set):
            raise TypeError("the key holds a set, not a value")
        return entry.value

    def _members(self, entry: _Entry) -> builtins.set[str]:
        if not isinstance(entry.value, set):
            raise TypeError("the key holds a value, not a set")
        return entry.value

    def _put(self, key: str, entry: _Entry) -> None:
        shared = self._shared
        full = (self._namespace, key)
        # Re-insert so that dict order is write order, oldest first, for eviction.
        shared.entries.pop(full, None)
        shared.writes_since_sweep += 1
        if shared.writes_since_sweep >= max(_SWEEP_EVERY, len(shared.entries)):
            self._sweep()
        if shared.max_entries is not None:
            while len(shared.entries) >= shared.max_entries:
                del shared.entries[next(iter(shared.entries))]
        shared.entries[full] = entry

    async def purge_expired(self) -> int:
        """Drop every expired entry of every namespace; returns how many were dropped."""
        return self._sweep()

    def _sweep(self) -> int:
        shared = self._shared
        shared.writes_since_sweep = 0
        now = self._clock()
        expired = [
            k for k, e in shared.entries.items() if e.expires_at is not None and e.expires_at <= now
        ]
        for k in expired:
            del shared.entries[k]
        return len(expired)

    # -- the Store contract ----------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else self._bytes(entry)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # No await inside: all keys are read at one instant (atomic here, unlike Redis).
        entries = [self._live(key) for key in keys]
        return [None if entry is None else self._bytes(entry) for entry in entries]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._put(key, _Entry(bytes(value), self._expires_at(ttl)))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        expires_at = self._expires_at(ttl)
        if self._live(key) is not None:
            return False
        self._put(key, _Entry(bytes(value), expires_at))
        return True

    async def replace(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        expires_at = self._expires_at(ttl)
        if self._live(key) is None:
            return False
        self._put(key, _Entry(bytes(value), expires_at))
        return True

    async def pop(self, key: str) -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        value = self._bytes(entry)
        del self._shared.entries[(self._namespace, key)]
        return value

    async def delete(self, *keys: str) -> int:
        deleted = 0
        for key in keys:
            if self._live(key) is not None:
                del self._shared.entries[(self._namespace, key)]
                deleted += 1
        return deleted

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        expires_at = self._expires_at(ttl)
        entry = self._live(key)
        if entry is None:
            self._put(key, _Entry(str(amount).encode(), expires_at))
            return amount
        value = int(self._bytes(entry)) + amount  # ValueError when not a counter
        entry.value = str(value).encode()  # in place: the window keeps its expiry
        return value

    async def ttl(self, key: str) -> float | None:
        entry = self._live(key)
        if entry is None:
            return None
        if entry.expires_at is None:
            return NO_EXPIRY
        return entry.expires_at - self._clock()

    async def touch(self, key: str, ttl: float | None) -> bool:
        expires_at = self._expires_at(ttl)
        entry = self._live(key)
        if entry is None:
            return False
        entry.expires_at = expires_at
        return True

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> int:
        expires_at = self._expires_at(ttl)
        if not members:
            return 0
        entry = self._live(key)
        if entry is None:
            entry = _Entry(set(), expires_at)
            self._put(key, entry)
        current = self._members(entry)
        before = len(current)
        current.update(members)
        if ttl is not None:
            entry.expires_at = expires_at
        return len(current) - before

    async def srem(self, key: str, *members: str) -> int:
        entry = self._live(key)
        if entry is None:
            return 0
        current = self._members(entry)
        before = len(current)
        current.difference_update(members)
        if not current:  # like Redis: an empty set does not exist
            del self._shared.entries[(self._namespace, key)]
        return before - len(current)

    async def smembers(self, key: str) -> builtins.set[str]:
        entry = self._live(key)
        return set() if entry is None else set(self._members(entry))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
