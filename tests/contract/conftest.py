"""Fixtures of the store contract suite: every test runs on each of the five backends.

``store`` is a fresh namespace on memory, SQLite, PostgreSQL, Redis or a three-master Redis
Cluster (started for the run by ``redis_cluster_url``); ``elapse`` lets time pass: a
:class:`FakeClock` jump for memory and SQL, a real sleep for Redis (whose expiry runs on the
server's clock).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bastion.clock import FakeClock
from bastion.db import create_engine
from bastion.stores import MemoryStore, RedisStore, SQLStore, Store, create_redis_client
from bastion.stores.sql import create_store_tables

Elapse = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str = ""
    redis_prefix: str = ""


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.backend("postgres")),
        pytest.param("redis", marks=pytest.mark.backend("redis")),
        pytest.param("redis-cluster", marks=pytest.mark.backend("redis")),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    # Server fixtures are resolved here, in a sync fixture: `postgres_url` runs its own
    # event loop, which it cannot do inside the test's running loop.
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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def elapse(backend: Backend, clock: FakeClock) -> Elapse:
    async def elapse(seconds: float) -> None:
        if backend.name in ("redis", "redis-cluster"):
            await asyncio.sleep(seconds)
        else:
            clock.advance(seconds)

    return elapse


@pytest_asyncio.fixture
async def store(backend: Backend, clock: FakeClock) -> AsyncIterator[Store]:
    """A store under a namespace of its own, so tests sharing a server never collide."""
    test_namespace = f"t{secrets.token_hex(6)}"
    if backend.name == "memory":
        yield MemoryStore(namespace="contract", clock=clock).child(test_namespace)
    elif backend.name in ("sqlite", "postgres"):
        engine = create_engine(backend.url)
        await create_store_tables(engine)
        root = SQLStore(engine, namespace="contract", clock=clock, owns_engine=True)
        yield root.child(test_namespace)
        await root.aclose()
    else:
        client = create_redis_client(backend.url)
        root_redis = RedisStore(client, namespace=backend.redis_prefix, owns_client=True)
        yield root_redis.child(test_namespace)
        await root_redis.aclose()
