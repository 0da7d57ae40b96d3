"""A real Redis cache going away: the routes keep answering, uncached, and caching resumes.

Each test runs a ``redis-server`` of its own (no persistence) on a free port and stops it
mid-test: SIGKILL for a crash (connections refused), SIGSTOP for a server that hangs
(every call runs into the timeout). The shared Redis server is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import redis

from bastion.cache import Cache
from bastion.clock import FakeClock
from bastion.settings import Settings
from bastion.stores import RedisStore, create_redis_client
from bastion.webapp.app import create_app
from tests.conftest import backend_missing
from tests.e2e.conftest import PASSWORD, Site
from tests.faults.servers import RedisServer, redis_server

STORE_TIMEOUT = 0.5


def key_count(server: RedisServer) -> int:
    client = redis.Redis(port=server.port)
    try:
        return int(client.dbsize())
    finally:
        client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """``redis-server --save '' --appendonly no`` on a free port, ours alone."""
    try:
        with redis_server(tmp_path / "redis", persistent=False) as server:
            yield server
    except FileNotFoundError:
        backend_missing("redis-server is not installed")


@pytest_asyncio.fixture
async def site(own_redis: RedisServer, tmp_path: Path) -> AsyncIterator[Site]:
    """The reference app with its cache (only) on the private Redis."""
    settings = Settings(
        env="test",
        data_dir=tmp_path / "data",
        redis_url=own_redis.url,
        redis_prefix="cache-fault",
        session_store="sql",
        cache_store="redis",
        ratelimit_store="memory",
        store_timeout=STORE_TIMEOUT,
    )
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        yield Site(app, app.state.bastion)
    finally:
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def cache(own_redis: RedisServer, clock: FakeClock) -> AsyncIterator[Cache]:
    """A Cache straight on the private Redis, with a clock the test moves."""
    store = RedisStore(
        create_redis_client(own_redis.url, timeout=STORE_TIMEOUT),
        namespace="cache-fault",
        component="cache",
        timeout=STORE_TIMEOUT,
        owns_client=True,
    )
    try:
        yield Cache(store, clock=clock, retry_interval=5)
    finally:
        await store.aclose()


class Calls:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> int:
        self.count += 1
        return self.count


def cache_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bastion.cache"]


async def test_killed_redis_leaves_the_profile_route_working_uncached(
    site: Site, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bastion.cache")
    await site.create_user("alice")
    async with site.client() as client:
        grant = await client.post(
            "/api/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        )
        headers = {"Authorization": f"Bearer {grant.json()['access_token']}"}

        async def profile() -> httpx.Response:
            response = await client.get("/api/profile", headers=headers)
            assert response.status_code == 200, response.text
            return response

        cached = [(await profile()).json() for _ in range(2)]
        assert cached[0] == cached[1]  # cached...
        assert key_count(own_redis) > 0  # ...in the private Redis

        own_redis.kill()
        answers = [await profile() for _ in range(4)]
        stamps = [a.json()["cached_at"] for a in answers]
        assert len(set(stamps)) == 4  # computed for each request: uncached
        assert all(a.json()["username"] == "alice" for a in answers)
        assert all(a.headers["cache-control"].startswith("private") for a in answers)
        assert (await client.get("/api/me", headers=headers)).status_code == 200
    assert sum("cache unavailable" in m for m in cache_log(caplog)) == 1


async def test_hung_redis_loses_no_invalidation(
    cache: Cache, own_redis: RedisServer, clock: FakeClock
) -> None:
    calls = Calls()
    assert await cache.get_or_set("profile", calls, ttl=60, scope="user", user_id=1) == 1
    own_redis.pause()
    await cache.invalidate_user(1)  # runs into the timeout; deferred, never raised
    assert await cache.get_or_set("profile", calls, ttl=60, scope="user", user_id=1) == 2
    own_redis.resume()  # back, with the old entry still in it
    clock.advance(5)
    assert await cache.get_or_set("profile", calls, ttl=60, scope="user", user_id=1) == 3
    assert await cache.get_or_set("profile", calls, ttl=60, scope="user", user_id=1) == 3


async def test_restarted_redis_resumes_caching_and_says_so_once(
    cache: Cache, own_redis: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bastion.cache")
    calls = Calls()
    own_redis.kill()
    for _ in range(3):
        await cache.get_or_set("news", calls, ttl=60, scope="public")
        clock.advance(5)
    assert calls.count == 3
    assert not cache.available
    own_redis.start()
    results: list[Any] = [
        await cache.get_or_set("news", calls, ttl=60, scope="public") for _ in range(3)
    ]
    assert results == [4, 4, 4]
    assert cache.available
    messages = cache_log(caplog)
    assert sum("cache unavailable" in m for m in messages) == 1
    assert sum("available again" in m for m in messages) == 1
