"""A Store backend of the how-to docs/howto/store-backend.md: it counts each operation and
hands it to another store (for metrics). tests/unit/test_docs_store_backend.py runs the
whole store contract suite (tests/contract) against it."""

# --8<-- [start:store]
import builtins
from collections import Counter
from collections.abc import Sequence

from bastion.stores import Store


class CountingStore:
    """Every operation of ``inner``, counted in ``calls`` (shared with its children)."""

    def __init__(self, inner: Store, calls: Counter[str] | None = None) -> None:
        self.inner = inner
        self.calls = Counter[str]() if calls is None else calls

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def child(self, namespace: str) -> Store:
        return CountingStore(self.inner.child(namespace), self.calls)

    async def get(self, key: str) -> bytes | None:
        self.calls["get"] += 1
        return await self.inner.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.calls["get_many"] += 1
        return await self.inner.get_many(keys)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.calls["set"] += 1
        await self.inner.set(key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        self.calls["add"] += 1
        return await self.inner.add(key, value, ttl)

    async def replace(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        self.calls["replace"] += 1
        return await self.inner.replace(key, value, ttl)

    async def pop(self, key: str) -> bytes | None:
        self.calls["pop"] += 1
        return await self.inner.pop(key)

    async def delete(self, *keys: str) -> int:
        self.calls["delete"] += 1
        return await self.inner.delete(*keys)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        self.calls["incr"] += 1
        return await self.inner.incr(key, amount, ttl)

    async def ttl(self, key: str) -> float | None:
        self.calls["ttl"] += 1
        return await self.inner.ttl(key)

    async def touch(self, key: str, ttl: float | None) -> bool:
        self.calls["touch"] += 1
        return await self.inner.touch(key, ttl)

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> int:
        self.calls["sadd"] += 1
        return await self.inner.sadd(key, *members, ttl=ttl)

    async def srem(self, key: str, *members: str) -> int:
        self.calls["srem"] += 1
        return await self.inner.srem(key, *members)

    async def smembers(self, key: str) -> builtins.set[str]:
        self.calls["smembers"] += 1
        return await self.inner.smembers(key)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


# --8<-- [end:store]
