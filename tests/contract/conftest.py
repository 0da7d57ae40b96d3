"""Fixtures of the store contract suite: every test runs on each of the seven backends.

``store`` is a fresh namespace on memory, SQLite, PostgreSQL, Redis or a three-master Redis
Cluster (started for the run by ``redis_cluster_url``), the two Redis ones also with the
process-local copies in front (``redis-local``, ``redis-cluster-local``); ``elapse`` lets
time pass: a :class:`FakeClock` jump for memory and SQL, a real sleep for Redis (whose
expiry runs on the server's clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from bastion.clock import FakeClock
from bastion.stores import Store
from tests.backends import Backend, backend_param, open_store, resolve_backend

Elapse = Callable[[float], Awaitable[None]]


@pytest.fixture(
    params=[
        backend_param(name)
        for name in (
            "memory",
            "sqlite",
            "postgres",
            "redis",
            "redis-cluster",
            "redis-local",
            "redis-cluster-local",
        )
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return resolve_backend(request, tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def elapse(backend: Backend, clock: FakeClock) -> Elapse:
    async def elapse(seconds: float) -> None:
        if backend.real_time:
            await asyncio.sleep(seconds)
        else:
            clock.advance(seconds)

    return elapse


@pytest_asyncio.fixture
async def store(backend: Backend, clock: FakeClock) -> AsyncIterator[Store]:
    """A store under a namespace of its own, so tests sharing a server never collide."""
    async with open_store(backend, clock, "contract") as opened:
        yield opened
