"""The fast path stays fast: an authenticated request reads its session once and never the
database; a cache hit adds exactly one read. (Counts, not timings: bench/ measures speed.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from bastion.stores.base import Store

from .conftest import PASSWORD, Site, login, store_params

STORE_METHODS = (
    "get",
    "get_many",
    "set",
    "add",
    "replace",
    "pop",
    "delete",
    "incr",
    "ttl",
    "touch",
    "sadd",
    "srem",
    "smembers",
)

pytestmark = pytest.mark.parametrize("store_kind", store_params("memory", "redis"))


def count_calls(store: Store, calls: list[str], label: str) -> None:
    for name in STORE_METHODS:
        method: Callable[..., Awaitable[Any]] = getattr(store, name)

        def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            calls.append(f"{label}.{_name}")
            return _method(*args, **kwargs)

        setattr(store, name, counted)


@contextmanager
def database_statements(site: Site) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = site.bastion.services.users.engine.sync_engine

    def record(*args: Any) -> None:
        statements.append(str(args[2]).split()[0])  # the statement's first word

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def calls(site: Site) -> list[str]:
    recorded: list[str] = []
    services = site.bastion.services
    count_calls(services.sessions.store, recorded, "sessions")
    count_calls(services.cache.store, recorded, "cache")
    return recorded


async def test_a_cookie_request_reads_its_session_once_and_never_the_database(
    site: Site, calls: list[str]
) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        calls.clear()
        with database_statements(site) as statements:
            response = await client.get("/api/me")
    assert response.status_code == 200
    assert calls == ["sessions.get"]
    assert statements == []


async def test_a_bearer_request_reads_its_session_once_and_never_the_database(
    site: Site, calls: list[str]
) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        token = (await client.post("/api/token", data=grant)).json()["access_token"]
        calls.clear()
        with database_statements(site) as statements:
            response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert calls == ["sessions.get"]
    assert statements == []


async def test_a_cache_hit_adds_one_read_to_the_session_read(site: Site, calls: list[str]) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        first = await client.get("/api/profile")
        calls.clear()
        with database_statements(site) as statements:
            second = await client.get("/api/profile")
    assert second.status_code == 200
    assert second.json() == first.json()  # served from the cache
    assert calls == ["sessions.get", "cache.get_many"]
    assert statements == []
