"""The local copies of Redis values (bastion.stores.redis_tracking) stay exact, on a real
server of their own (tests/redis_server.py), which these tests may flush, freeze and whose
connections they may kill without disturbing the shared one."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import pytest_asyncio
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot

from bastion.stores import RedisStore, create_redis_client
from bastion.stores.redis_tracking import LocalCopies
from tests.redis_server import RedisServer, redis_server, redis_server_missing

pytestmark = pytest.mark.backend("redis")

LIVE = 5.0  # seconds for the invalidation connection to subscribe (it takes milliseconds)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    missing = redis_server_missing()
    if missing:
        pytest.skip(missing)
    with redis_server(tmp_path_factory.mktemp("tracking")) as running:
        yield running


@dataclass
class Setup:
    store: RedisStore
    local: LocalCopies
    other: Redis  # another client, as another process would write
    namespace: str

    def full(self, key: str) -> str:
        return f"{self.namespace}:{key}"


async def open_setup(server: RedisServer, heartbeat: float) -> Setup:
    namespace = f"t{secrets.token_hex(6)}"
    client = create_redis_client(server.url)
    local = LocalCopies(client, [f"{namespace}:"], heartbeat=heartbeat)
    store = RedisStore(client, namespace=namespace, owns_client=True, local=local)
    other = create_redis_client(server.url)
    assert isinstance(other, Redis)
    assert await local.wait_live(LIVE)
    return Setup(store, local, other, namespace)


async def close_setup(setup: Setup) -> None:
    await setup.local.aclose()
    await setup.store.aclose()
    await setup.other.aclose()


@pytest_asyncio.fixture
async def setup(server: RedisServer) -> AsyncIterator[Setup]:
    opened = await open_setup(server, heartbeat=0.5)
    try:
        yield opened
    finally:
        await close_setup(opened)


@pytest_asyncio.fixture
async def fast(server: RedisServer) -> AsyncIterator[Setup]:
    """A heartbeat of 50 ms: a lost or late connection is noticed within 150 ms."""
    opened = await open_setup(server, heartbeat=0.05)
    try:
        yield opened
    finally:
        await close_setup(opened)


async def kept(setup: Setup, key: str, value: bytes) -> None:
    """Read ``key`` until its value is kept locally (the first read may precede nothing)."""
    assert await setup.store.get(key) == value
    assert setup.local.get(setup.full(key)) == value


async def eventually(check: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.005)


async def tracking_client_id(other: Redis) -> int:
    """The id of the invalidation connection: the one that tracks keys (flag t)."""
    clients = await other.client_list()
    ids = [int(c["id"]) for c in clients if "t" in c["flags"]]
    assert len(ids) == 1, clients
    return ids[0]


async def command_calls(other: Redis, *names: str) -> int:
    stats = await other.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)


# -- exactness -----------------------------------------------------------------------------


async def test_a_write_from_another_client_is_seen_as_soon_as_it_returns(setup: Setup) -> None:
    await setup.store.set("k", b"v0")
    await kept(setup, "k", b"v0")
    for i in range(1, 200):
        await setup.other.set(setup.full("k"), f"v{i}".encode())
        assert await setup.store.get("k") == f"v{i}".encode()
        assert setup.local.get(setup.full("k")) == f"v{i}".encode()  # kept again


async def test_a_delete_from_another_client_is_seen_as_soon_as_it_returns(setup: Setup) -> None:
    await setup.store.set("k", b"v")
    await kept(setup, "k", b"v")
    await setup.other.delete(setup.full("k"))
    assert await setup.store.get("k") is None


async def test_own_writes_are_read_back_at_once(setup: Setup) -> None:
    await setup.store.set("k", b"one")
    await kept(setup, "k", b"one")
    await setup.store.set("k", b"two")
    assert await setup.store.get("k") == b"two"
    assert await setup.store.pop("k") == b"two"
    assert await setup.store.get("k") is None


async def test_absent_keys_are_not_kept(setup: Setup) -> None:
    assert await setup.store.get("missing") is None
    assert len(setup.local) == 0


async def test_a_key_expiring_in_redis_is_not_served_after_its_ttl(setup: Setup) -> None:
    await setup.store.set("k", b"v", ttl=0.3)
    await kept(setup, "k", b"v")
    await asyncio.sleep(0.35)
    assert setup.local.get(setup.full("k")) is None
    assert await setup.store.get("k") is None


async def test_a_copy_lasts_no_longer_than_the_pttl_read_with_it(setup: Setup) -> None:
    # No key in Redis, so no invalidation can come: only the copy's own deadline ends it.
    key = setup.full("phantom")
    setup.local.fill(setup.local.begin(), [key], [b"v"], [100])
    assert setup.local.get(key) == b"v"
    await asyncio.sleep(0.12)
    assert setup.local.get(key) is None


async def test_a_read_racing_an_invalidation_does_not_keep_the_old_value(setup: Setup) -> None:
    key = setup.full("k")
    await setup.other.set(key, b"old")
    await setup.store.set("probe", b"p")
    await kept(setup, "probe", b"p")
    token = setup.local.begin()  # the read is sent...
    old = cast(bytes, await setup.other.get(key))
    await setup.other.set(key, b"new")  # ...another client writes...
    await setup.other.delete(setup.full("probe"))
    # Invalidations arrive in order: once the probe's is in, so is the key's.
    await eventually(lambda: setup.local.get(setup.full("probe")) is None)
    setup.local.fill(token, [key], [old], [-1])  # ...and the old answer comes back last
    assert setup.local.get(key) is None
    assert await setup.store.get("k") == b"new"


async def test_a_read_racing_an_own_write_does_not_keep_the_old_value(setup: Setup) -> None:
    key = setup.full("k")
    await setup.store.set("k", b"old")
    token = setup.local.begin()
    old = cast(bytes, await setup.other.get(key))
    await setup.store.set("k", b"new")
    setup.local.fill(token, [key], [old], [-1])
    assert setup.local.get(key) is None
    assert await setup.store.get("k") == b"new"


async def test_flushdb_drops_every_copy(setup: Setup) -> None:
    await setup.store.set("a", b"1")
    await setup.store.set("b", b"2")
    await kept(setup, "a", b"1")
    await kept(setup, "b", b"2")
    await setup.other.flushdb()
    await eventually(lambda: len(setup.local) == 0)
    assert await setup.store.get_many(["a", "b"]) == [None, None]


async def test_the_copies_hold_at_most_max_entries(server: RedisServer) -> None:
    client = create_redis_client(server.url)
    namespace = f"t{secrets.token_hex(6)}"
    local = LocalCopies(client, [f"{namespace}:"], max_entries=3)
    store = RedisStore(client, namespace=namespace, owns_client=True, local=local)
    try:
        assert await local.wait_live(LIVE)
        for i in range(5):
            await store.set(f"k{i}", b"v")
            assert await store.get(f"k{i}") == b"v"
        assert len(local) == 3
        assert local.get(f"{namespace}:k0") is None  # the oldest went first
        assert local.get(f"{namespace}:k4") == b"v"
    finally:
        await local.aclose()
        await store.aclose()


# -- failing closed ------------------------------------------------------------------------


async def test_a_killed_invalidation_connection_sends_reads_to_redis_until_resubscribed(
    fast: Setup,
) -> None:
    await fast.store.set("k", b"old")
    await kept(fast, "k", b"old")
    await fast.other.client_kill_filter(_id=str(await tracking_client_id(fast.other)))
    await fast.other.set(fast.full("k"), b"meanwhile")  # no invalidation reaches us
    assert await fast.store.get("k") == b"meanwhile"

    assert await fast.local.wait_live(LIVE)  # subscribed again, on a new connection
    await kept(fast, "k", b"meanwhile")
    await fast.other.set(fast.full("k"), b"after")
    assert await fast.store.get("k") == b"after"


async def test_a_late_heartbeat_bypasses_the_copies(server: RedisServer, fast: Setup) -> None:
    await fast.store.set("k", b"v")
    await kept(fast, "k", b"v")
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)  # Redis answers nothing, closes nothing
    try:
        await eventually(lambda: not fast.local.live, within=1.0)
        assert fast.local.get(fast.full("k")) is None  # bypassed at once...
        await eventually(lambda: len(fast.local) == 0, within=1.0)  # ...flushed soon after
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert await fast.local.wait_live(LIVE)
    assert await fast.store.get("k") == b"v"


async def test_nothing_is_served_before_the_subscription_is_confirmed(
    server: RedisServer,
) -> None:
    client = create_redis_client(server.url)
    namespace = f"t{secrets.token_hex(6)}"
    local = LocalCopies(client, [f"{namespace}:"])
    store = RedisStore(client, namespace=namespace, owns_client=True, local=local)
    try:
        await store.set("k", b"v")
        assert await store.get("k") == b"v"  # starts the layer; not subscribed yet
        assert not local.live
        assert len(local) == 0
    finally:
        await local.aclose()
        await store.aclose()


async def test_closed_copies_stop_their_connection_and_keep_nothing(setup: Setup) -> None:
    await setup.store.set("k", b"v")
    await kept(setup, "k", b"v")
    await setup.local.aclose()
    assert not setup.local.live
    assert len(setup.local) == 0
    clients = await setup.other.client_list()
    assert not [c for c in clients if "t" in c["flags"]]
    assert await setup.store.get("k") == b"v"
    assert len(setup.local) == 0


# -- cost ----------------------------------------------------------------------------------


async def test_local_hits_send_no_command_to_redis(setup: Setup) -> None:
    await setup.store.set("k", b"v")
    await setup.store.set("{user:1}:g", b"g")
    await kept(setup, "k", b"v")
    await kept(setup, "{user:1}:g", b"g")
    reads = ("get", "mget", "evalsha", "eval")
    before = await command_calls(setup.other, *reads)
    for _ in range(100):
        assert await setup.store.get("k") == b"v"
        assert await setup.store.get_many(["{user:1}:g", "k"]) == [b"g", b"v"]
    assert await command_calls(setup.other, *reads) == before


# -- Cluster -------------------------------------------------------------------------------


async def test_on_cluster_each_primary_sends_its_invalidations(redis_cluster_url: str) -> None:
    client = create_redis_client(redis_cluster_url)
    other = create_redis_client(redis_cluster_url)
    assert isinstance(client, RedisCluster)
    assert isinstance(other, RedisCluster)
    namespace = f"t{secrets.token_hex(6)}"
    local = LocalCopies(client, [f"{namespace}:"])
    store = RedisStore(client, namespace=namespace, owns_client=True, local=local)
    # Tags whose slots fall in each third of the slot range: one per primary.
    tags = ["user:1", "user:2", "user:3", "user:4", "role:admin", "a"]
    assert len({key_slot(t.encode()) * 3 // 16384 for t in tags}) == 3
    keys = [f"{{{tag}}}:k" for tag in tags]
    try:
        assert await local.wait_live(LIVE)
        # An invalidation connection on every primary (earlier tests' may still be closing).
        per_node: Any = await other.client_list(target_nodes=RedisCluster.PRIMARIES)
        assert len(per_node) == 3
        assert all(any("t" in c["flags"] for c in clients) for clients in per_node.values())
        for key in keys:
            await store.set(key, b"old")
        assert await store.get_many(keys) == [b"old"] * len(keys)
        assert all(local.get(f"{namespace}:{key}") == b"old" for key in keys)
        for key in keys:
            await other.set(f"{namespace}:{key}", b"new")
            assert await store.get(key) == b"new"
    finally:
        await local.aclose()
        await store.aclose()
        await other.aclose()
