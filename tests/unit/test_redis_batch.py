"""Reads on a standalone Redis coalesce into MGETs, on a real server, without changing any
answer: each caller gets its own values, and a failure reaches every caller of the batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bastion.exceptions import StoreUnavailable
from bastion.stores import RedisStore, create_redis_client


class MgetCounter:
    """Counts the MGETs a client sends (and their keys), then sends them for real."""

    def __init__(self, store: RedisStore) -> None:
        client: Any = store._client
        self.batches: list[int] = []
        real = client.mget

        async def counted(keys: list[str], *args: str) -> Any:
            self.batches.append(len(keys) + len(args))
            return await real(keys, *args)

        client.mget = counted


@pytest_asyncio.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    client = create_redis_client(redis_url)
    store = RedisStore(client, namespace=f"{redis_prefix}:batch", owns_client=True)
    try:
        yield store
    finally:
        await store.aclose()


async def test_reads_in_flight_together_travel_as_one_mget(store: RedisStore) -> None:
    for i in range(0, 20, 2):
        await store.set(f"k{i}", f"v{i}".encode())
    counter = MgetCounter(store)

    values = await asyncio.gather(*(store.get(f"k{i}") for i in range(20)))

    assert values == [f"v{i}".encode() if i % 2 == 0 else None for i in range(20)]
    assert counter.batches == [20]


async def test_get_many_joins_the_batch_and_keeps_its_order(store: RedisStore) -> None:
    await store.set("a", b"1")
    await store.set("c", b"3")
    counter = MgetCounter(store)

    single, many = await asyncio.gather(store.get("c"), store.get_many(["c", "b", "a", "c"]))

    assert single == b"3"
    assert many == [b"3", None, b"1", b"3"]
    assert counter.batches == [5]


async def test_a_read_after_an_answer_is_a_new_batch(store: RedisStore) -> None:
    await store.set("k", b"old")
    counter = MgetCounter(store)

    first = await store.get("k")
    await store.set("k", b"new")
    second = await store.get("k")

    assert (first, second) == (b"old", b"new")
    assert counter.batches == [1, 1]


async def test_a_caller_that_gives_up_leaves_the_others_their_answers(store: RedisStore) -> None:
    await store.set("k", b"v")
    leaving = asyncio.ensure_future(store.get("k"))
    staying = asyncio.ensure_future(store.get("k"))
    await asyncio.sleep(0)  # both have asked; the batch has not been sent yet
    leaving.cancel()

    assert await staying == b"v"
    with pytest.raises(asyncio.CancelledError):
        await leaving


@pytest.mark.parametrize("server", ["closed_port", "silent_port"])
async def test_a_failed_batch_reaches_every_caller_as_unavailable(
    server: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue(server)
    client = create_redis_client(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    store = RedisStore(client, namespace="down", timeout=0.3, owns_client=True)
    try:
        results = await asyncio.gather(
            *(store.get(f"k{i}") for i in range(5)),
            store.get_many(["a", "b"]),
            return_exceptions=True,
        )
    finally:
        await store.aclose()
    assert all(isinstance(result, StoreUnavailable) for result in results), results
