"""Store backends for tests that run on every backend (the contract suite, the limiter)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bastion.clock import FakeClock
from bastion.db import create_engine
from bastion.stores import MemoryStore, RedisStore, SQLStore, Store, create_redis_client
from bastion.stores.redis_tracking import LocalCopies
from bastion.stores.sql import create_store_tables

# "-local": the same server with process-local copies of the store's keys in front of it
# (bastion.stores.redis_tracking), as services.open_services sets up by default.
REDIS_BACKENDS = ("redis", "redis-cluster", "redis-local", "redis-cluster-local")
LIVE_TIMEOUT = 5.0  # for the local copies' invalidation connections to subscribe


@dataclass(frozen=True)
class Backend:
    name: str
    url: str = ""
    redis_prefix: str = ""

    @property
    def real_time(self) -> bool:
        """Redis keeps its own clock: expiry there takes real waiting."""
        return self.name in REDIS_BACKENDS


def backend_param(name: str) -> object:
    marks = {"postgres": "postgres", **dict.fromkeys(REDIS_BACKENDS, "redis")}
    if name in marks:
        return pytest.param(name, marks=pytest.mark.backend(marks[name]))
    return pytest.param(name)


def resolve_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The backend named by ``request.param``. Server fixtures are resolved here, in a sync
    fixture: ``postgres_url`` runs its own event loop, which it cannot do inside a test's."""
    name: str = request.param
    if name == "sqlite":
        return Backend(name, f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    if name == "postgres":
        return Backend(name, request.getfixturevalue("postgres_url"))
    if name in ("redis", "redis-local"):
        return Backend(
            name, request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    if name in ("redis-cluster", "redis-cluster-local"):
        # The cluster belongs to this run alone and goes away with it: any prefix will do.
        return Backend(name, request.getfixturevalue("redis_cluster_url"), "contract")
    return Backend(name)


@asynccontextmanager
async def open_store(
    backend: Backend,
    clock: FakeClock,
    root: str,
    *,
    component: str = "session store",
    sql_timeout: float = 2.0,
) -> AsyncIterator[Store]:
    """A store under a fresh namespace, so tests sharing a server never collide."""
    namespace = f"t{secrets.token_hex(6)}"
    if backend.name == "memory":
        yield MemoryStore(namespace=root, clock=clock).child(namespace)
    elif backend.name in ("sqlite", "postgres"):
        engine = create_engine(backend.url, timeout=sql_timeout)
        await create_store_tables(engine)
        sql_root = SQLStore(
            engine,
            namespace=root,
            clock=clock,
            component=component,
            timeout=sql_timeout,
            owns_engine=True,
        )
        yield sql_root.child(namespace)
        await sql_root.aclose()
    else:
        client = create_redis_client(backend.url)
        local = None
        if backend.name.endswith("-local"):
            # Covers every key of the test's namespace, children included.
            local = LocalCopies(client, [f"{backend.redis_prefix}:{namespace}:"])
            if not await local.wait_live(LIVE_TIMEOUT):
                await client.aclose()
                raise RuntimeError("the local copies' invalidation connection did not subscribe")
        redis_root = RedisStore(
            client, namespace=backend.redis_prefix, owns_client=True, local=local
        )
        yield redis_root.child(namespace)
        if local is not None:
            await local.aclose()
        await redis_root.aclose()
