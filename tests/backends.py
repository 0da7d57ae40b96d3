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
from bastion.stores.sql import create_store_tables

REDIS_BACKENDS = ("redis", "redis-cluster")


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
    marks = {"postgres": "postgres", "redis": "redis", "redis-cluster": "redis"}
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
    if name == "redis":
        return Backend(
            name, request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    if name == "redis-cluster":
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
        redis_root = RedisStore(client, namespace=backend.redis_prefix, owns_client=True)
        yield redis_root.child(namespace)
        await redis_root.aclose()
