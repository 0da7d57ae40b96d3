"""The Store contract (bastion.stores.base), checked on every backend against real servers.

Tests taking ``store`` run four times: memory, SQLite, PostgreSQL and Redis. The sections at
the end cover what is specific to one backend: outages, URLs, purging and eviction.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot
from sqlalchemy import func, select

from bastion.clock import FakeClock
from bastion.db import create_engine, kv_member_table, kv_table
from bastion.exceptions import StoreUnavailable
from bastion.stores import (
    NO_EXPIRY,
    MemoryStore,
    RedisStore,
    SQLStore,
    Store,
    create_redis_client,
)
from bastion.stores.sql import create_store_tables

from .conftest import Elapse

SHORT = 0.2  # a TTL that runs out during the test
AFTER_SHORT = 0.3  # long enough for SHORT to have run out
LONG = 60.0  # a TTL that does not run out during the test


def about(expected: float) -> Callable[[float | None], bool]:
    """A TTL check that tolerates the time the test itself takes."""
    low = max(expected - 2, expected / 2)
    return lambda ttl: ttl is not None and low < ttl <= expected + 1e-3


# -- get / set -----------------------------------------------------------------------------


async def test_get_returns_none_for_missing_key(store: Store) -> None:
    assert await store.get("missing") is None


async def test_set_then_get_returns_the_value(store: Store) -> None:
    await store.set("k", b"value")
    assert await store.get("k") == b"value"


async def test_empty_value_is_stored_not_absent(store: Store) -> None:
    await store.set("k", b"")
    assert await store.get("k") == b""
    assert await store.add("k", b"other") is False
    assert await store.pop("k") == b""


async def test_set_overwrites_value(store: Store) -> None:
    await store.set("k", b"one")
    await store.set("k", b"two")
    assert await store.get("k") == b"two"


async def test_set_with_ttl_expires(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=SHORT)
    assert await store.get("k") == b"v"
    await elapse(AFTER_SHORT)
    assert await store.get("k") is None


async def test_set_without_ttl_removes_earlier_expiry(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"one", ttl=SHORT)
    await store.set("k", b"two")
    assert await store.ttl("k") == NO_EXPIRY
    await elapse(AFTER_SHORT)
    assert await store.get("k") == b"two"


async def test_set_with_ttl_replaces_earlier_expiry(store: Store) -> None:
    await store.set("k", b"one")
    await store.set("k", b"two", ttl=LONG)
    assert about(LONG)(await store.ttl("k"))


@pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan])
async def test_invalid_ttl_is_refused(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.set("k", b"v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.add("k", b"v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.incr("k", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.sadd("s", "m", ttl=ttl)
    await store.set("k", b"v")
    with pytest.raises(ValueError, match="ttl"):
        await store.replace("k", b"v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.touch("k", ttl)
    assert await store.ttl("k") == NO_EXPIRY


# -- get_many ------------------------------------------------------------------------------


async def test_get_many_returns_the_values_in_the_order_asked(store: Store) -> None:
    await store.set("a", b"1")
    await store.set("b", b"2")
    await store.set("k" * 1000, b"long")
    assert await store.get_many(["b", "k" * 1000, "a"]) == [b"2", b"long", b"1"]


async def test_get_many_gives_none_for_absent_and_expired_keys(
    store: Store, elapse: Elapse
) -> None:
    await store.set("kept", b"v", ttl=LONG)
    await store.set("gone", b"v", ttl=SHORT)
    await store.set("forever", b"w")
    await elapse(AFTER_SHORT)
    assert await store.get_many(["missing", "kept", "gone", "forever"]) == [
        None,
        b"v",
        None,
        b"w",
    ]


async def test_get_many_answers_a_repeated_key_at_every_position(store: Store) -> None:
    await store.set("a", b"1")
    assert await store.get_many(["a", "missing", "a", "missing"]) == [b"1", None, b"1", None]


async def test_get_many_of_no_keys_is_empty(store: Store) -> None:
    assert await store.get_many([]) == []


async def test_get_many_returns_empty_and_binary_values_as_stored(store: Store) -> None:
    binary = bytes(range(256))
    await store.set("empty", b"")
    await store.set("binary", binary)
    assert await store.get_many(["empty", "binary"]) == [b"", binary]


async def test_get_many_reads_keys_that_share_a_hash_tag(store: Store) -> None:
    await store.set("{user:42}:g", b"generation")
    await store.set("{user:42}:e", b"entry")
    assert await store.get_many(["{user:42}:g", "{user:42}:missing", "{user:42}:e"]) == [
        b"generation",
        None,
        b"entry",
    ]


async def test_get_many_reads_keys_of_different_hash_tags_in_one_call(store: Store) -> None:
    # Six tags in all three slot ranges of a three-master Cluster: several slots and nodes.
    tags = ["user:1", "user:2", "user:3", "user:4", "role:admin", "a"]
    assert len({key_slot(t.encode()) * 3 // 16384 for t in tags}) == 3
    keys = [f"{{{tag}}}:k" for tag in tags] + ["untagged"]
    for i, key in enumerate(keys):
        await store.set(key, str(i).encode())
    asked = [keys[5], "{user:9}:missing", *keys[:5], keys[6], keys[0]]
    assert await store.get_many(asked) == [b"5", None, b"0", b"1", b"2", b"3", b"4", b"6", b"0"]


async def test_get_many_reads_more_keys_than_one_sql_statement_holds(store: Store) -> None:
    keys = [f"{{user:{i % 7}}}:k{i}" for i in range(1200)]
    for i in range(0, 1200, 150):
        await store.set(keys[i], str(i).encode())
    values = await store.get_many([*keys, keys[0]])
    assert values == [str(i).encode() if i % 150 == 0 else None for i in range(1200)] + [b"0"]


async def test_get_many_sees_only_its_own_namespace(store: Store) -> None:
    child = store.child("sub")
    await store.set("k", b"parent")
    await store.set("shared", b"parent")
    await child.set("shared", b"child")
    assert await child.get_many(["k", "shared"]) == [None, b"child"]
    assert await store.get_many(["k", "shared"]) == [b"parent", b"parent"]
    assert await store.child("other").get_many(["k", "shared"]) == [None, None]


# -- add -----------------------------------------------------------------------------------


async def test_add_stores_only_when_absent(store: Store) -> None:
    assert await store.add("k", b"first") is True
    assert await store.add("k", b"second") is False
    assert await store.get("k") == b"first"


async def test_add_after_delete_stores_again(store: Store) -> None:
    await store.add("k", b"first")
    await store.delete("k")
    assert await store.add("k", b"second") is True
    assert await store.get("k") == b"second"


async def test_add_replaces_an_expired_value(store: Store, elapse: Elapse) -> None:
    assert await store.add("k", b"old", ttl=SHORT) is True
    await elapse(AFTER_SHORT)
    assert await store.add("k", b"new", ttl=LONG) is True
    assert await store.get("k") == b"new"
    assert about(LONG)(await store.ttl("k"))


async def test_add_with_ttl_expires(store: Store, elapse: Elapse) -> None:
    await store.add("k", b"v", ttl=SHORT)
    await elapse(AFTER_SHORT)
    assert await store.get("k") is None


async def test_add_without_ttl_never_expires(store: Store) -> None:
    await store.add("k", b"v")
    assert await store.ttl("k") == NO_EXPIRY


# -- replace -------------------------------------------------------------------------------


async def test_replace_stores_only_when_present(store: Store) -> None:
    assert await store.replace("k", b"new") is False
    assert await store.get("k") is None
    await store.set("k", b"old")
    assert await store.replace("k", b"new") is True
    assert await store.get("k") == b"new"


async def test_replace_never_resurrects_a_deleted_key(store: Store) -> None:
    await store.set("k", b"old")
    assert await store.pop("k") == b"old"
    assert await store.replace("k", b"written back") is False
    assert await store.get("k") is None


async def test_replace_skips_an_expired_key(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"old", ttl=SHORT)
    await elapse(AFTER_SHORT)
    assert await store.replace("k", b"new", ttl=LONG) is False
    assert await store.get("k") is None


async def test_replace_sets_the_given_ttl(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"old", ttl=LONG)
    assert await store.replace("k", b"new", ttl=SHORT) is True
    assert about(SHORT)(await store.ttl("k"))
    await elapse(AFTER_SHORT)
    assert await store.get("k") is None


async def test_replace_without_ttl_removes_the_expiry(store: Store) -> None:
    await store.set("k", b"old", ttl=LONG)
    assert await store.replace("k", b"new") is True
    assert await store.ttl("k") == NO_EXPIRY


# -- pop -----------------------------------------------------------------------------------


async def test_pop_returns_the_value_once(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.pop("k") == b"v"
    assert await store.pop("k") is None
    assert await store.get("k") is None


async def test_pop_missing_key_returns_none(store: Store) -> None:
    assert await store.pop("missing") is None


async def test_pop_expired_key_returns_none(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=SHORT)
    await elapse(AFTER_SHORT)
    assert await store.pop("k") is None


# -- delete --------------------------------------------------------------------------------


async def test_delete_counts_existing_plain_and_set_keys(store: Store) -> None:
    await store.set("a", b"1")
    await store.set("b", b"2")
    await store.sadd("s", "x", "y")
    assert await store.delete("a", "s", "missing") == 2
    assert await store.get("a") is None
    assert await store.smembers("s") == set()
    assert await store.get("b") == b"2"


async def test_delete_counts_a_repeated_key_once(store: Store) -> None:
    await store.set("a", b"1")
    assert await store.delete("a", "a") == 1


async def test_delete_without_keys_returns_zero(store: Store) -> None:
    assert await store.delete() == 0


async def test_delete_of_missing_key_returns_zero(store: Store) -> None:
    assert await store.delete("missing") == 0


async def test_delete_does_not_count_expired_keys(store: Store, elapse: Elapse) -> None:
    await store.set("a", b"1", ttl=SHORT)
    await store.sadd("s", "x", ttl=SHORT)
    await store.set("b", b"2")
    await elapse(AFTER_SHORT)
    assert await store.delete("a", "s", "b") == 1


# -- incr ----------------------------------------------------------------------------------


async def test_incr_starts_from_zero(store: Store) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n") == 2


async def test_incr_adds_the_amount(store: Store) -> None:
    assert await store.incr("n", 5) == 5
    assert await store.incr("n", -7) == -2
    assert await store.incr("n", 0) == -2


async def test_counter_reads_as_decimal_bytes(store: Store) -> None:
    for _ in range(3):
        await store.incr("n")
    assert await store.get("n") == b"3"


async def test_incr_continues_a_decimal_value(store: Store) -> None:
    await store.set("n", b"10", ttl=LONG)
    assert await store.incr("n", 5) == 15
    assert about(LONG)(await store.ttl("n"))


async def test_incr_ttl_applies_only_at_creation(store: Store, elapse: Elapse) -> None:
    # A fixed window: the second call must not push the expiry back.
    assert await store.incr("n", ttl=0.3) == 1
    await elapse(0.2)
    assert await store.incr("n", ttl=0.3) == 2
    remaining = await store.ttl("n")
    assert remaining is not None
    assert remaining <= 0.11
    await elapse(0.2)  # 0.4 s after the first call, 0.2 s after the second
    assert await store.get("n") is None
    assert await store.incr("n", ttl=0.3) == 1


async def test_incr_ttl_is_ignored_for_an_existing_counter(store: Store) -> None:
    await store.incr("n")
    await store.incr("n", ttl=LONG)
    assert await store.ttl("n") == NO_EXPIRY


async def test_incr_restarts_an_expired_counter_with_the_new_ttl(
    store: Store, elapse: Elapse
) -> None:
    await store.incr("n", 5, ttl=SHORT)
    await elapse(AFTER_SHORT)
    assert await store.incr("n", ttl=LONG) == 1
    assert about(LONG)(await store.ttl("n"))


# -- ttl / touch ---------------------------------------------------------------------------


async def test_ttl_is_none_for_missing_key(store: Store) -> None:
    assert await store.ttl("missing") is None


async def test_ttl_is_no_expiry_for_key_without_ttl(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.ttl("k") == NO_EXPIRY
    assert math.isinf(NO_EXPIRY)


async def test_ttl_counts_down_from_the_given_seconds(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=LONG)
    first = await store.ttl("k")
    assert about(LONG)(first)
    await elapse(0.2)
    second = await store.ttl("k")
    assert first is not None
    assert second is not None
    assert second <= first - 0.15


async def test_ttl_is_none_after_expiry(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=SHORT)
    await elapse(AFTER_SHORT)
    assert await store.ttl("k") is None


async def test_touch_missing_key_returns_false(store: Store) -> None:
    assert await store.touch("missing", LONG) is False
    assert await store.touch("missing", None) is False
    assert await store.get("missing") is None


async def test_touch_expired_key_returns_false(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=SHORT)
    await elapse(AFTER_SHORT)
    assert await store.touch("k", LONG) is False
    assert await store.get("k") is None


async def test_touch_sets_a_new_ttl(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=SHORT)
    assert await store.touch("k", LONG) is True
    await elapse(AFTER_SHORT)
    assert await store.get("k") == b"v"
    assert about(LONG)(await store.ttl("k"))


async def test_touch_can_shorten_the_ttl(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v")
    assert await store.touch("k", SHORT) is True
    await elapse(AFTER_SHORT)
    assert await store.get("k") is None


async def test_touch_none_removes_the_expiry(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=SHORT)
    assert await store.touch("k", None) is True
    assert await store.ttl("k") == NO_EXPIRY
    await elapse(AFTER_SHORT)
    assert await store.get("k") == b"v"


async def test_touch_none_on_key_without_expiry_returns_true(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.touch("k", None) is True


async def test_touch_applies_to_a_set(store: Store, elapse: Elapse) -> None:
    await store.sadd("s", "a", "b", ttl=SHORT)
    assert await store.touch("s", LONG) is True
    await elapse(AFTER_SHORT)
    assert await store.smembers("s") == {"a", "b"}
    assert about(LONG)(await store.ttl("s"))
    assert await store.touch("s", None) is True
    assert await store.ttl("s") == NO_EXPIRY


# -- sets ----------------------------------------------------------------------------------


async def test_sadd_counts_only_new_members(store: Store) -> None:
    assert await store.sadd("s", "a", "b") == 2
    assert await store.sadd("s", "b", "c", "c") == 1
    assert await store.smembers("s") == {"a", "b", "c"}


async def test_sadd_without_members_changes_nothing(store: Store) -> None:
    assert await store.sadd("s") == 0
    assert await store.smembers("s") == set()
    assert await store.ttl("s") is None


async def test_smembers_of_missing_set_is_empty(store: Store) -> None:
    assert await store.smembers("missing") == set()


async def test_set_without_ttl_never_expires(store: Store) -> None:
    await store.sadd("s", "a")
    assert await store.ttl("s") == NO_EXPIRY


async def test_srem_counts_removed_members(store: Store) -> None:
    await store.sadd("s", "a", "b", "c")
    assert await store.srem("s", "a", "missing") == 1
    assert await store.smembers("s") == {"b", "c"}
    assert await store.srem("s") == 0
    assert await store.srem("missing", "a") == 0


async def test_set_without_members_no_longer_exists(store: Store) -> None:
    await store.sadd("s", "a", "b", ttl=LONG)
    assert await store.srem("s", "a", "b") == 2
    assert await store.ttl("s") is None
    assert await store.delete("s") == 0


async def test_sadd_ttl_expires_the_whole_set(store: Store, elapse: Elapse) -> None:
    await store.sadd("s", "a", "b", ttl=SHORT)
    assert about(SHORT)(await store.ttl("s"))
    await elapse(AFTER_SHORT)
    assert await store.smembers("s") == set()
    assert await store.ttl("s") is None
    assert await store.srem("s", "a") == 0


async def test_sadd_ttl_resets_the_expiry_of_every_member(store: Store, elapse: Elapse) -> None:
    await store.sadd("s", "a", ttl=SHORT)
    await store.sadd("s", "b", ttl=LONG)
    await elapse(AFTER_SHORT)
    assert await store.smembers("s") == {"a", "b"}


async def test_sadd_without_ttl_keeps_the_set_expiry(store: Store, elapse: Elapse) -> None:
    await store.sadd("s", "a", ttl=SHORT)
    await store.sadd("s", "b")
    assert about(SHORT)(await store.ttl("s"))
    await elapse(AFTER_SHORT)
    assert await store.smembers("s") == set()


async def test_sadd_after_expiry_starts_a_new_set(store: Store, elapse: Elapse) -> None:
    await store.sadd("s", "a", "b", ttl=SHORT)
    await elapse(AFTER_SHORT)
    assert await store.sadd("s", "b") == 1
    assert await store.smembers("s") == {"b"}
    assert await store.ttl("s") == NO_EXPIRY


async def test_set_members_may_be_any_text(store: Store) -> None:
    members = {"", "with space", "{tag}", "a:b", "пароль", "🔑", "x" * 255}
    assert await store.sadd("s", *members) == len(members)
    assert await store.smembers("s") == members


# -- namespaces and keys -------------------------------------------------------------------


async def test_child_namespace_extends_the_parent(store: Store) -> None:
    assert store.child("sub").namespace == f"{store.namespace}:sub"


async def test_namespaces_are_isolated(store: Store) -> None:
    one, two = store.child("one"), store.child("two")
    await one.set("k", b"1")
    await two.set("k", b"2")
    await store.set("k", b"parent")
    await one.incr("n")
    await one.sadd("s", "a")
    assert await one.get("k") == b"1"
    assert await two.get("k") == b"2"
    assert await store.get("k") == b"parent"
    assert await two.get("n") is None
    assert await two.smembers("s") == set()
    assert await two.delete("k", "n", "s") == 1
    assert await one.get("k") == b"1"
    assert await one.pop("k") == b"1"
    assert await store.get("k") == b"parent"


async def test_children_share_the_parent_backend(store: Store) -> None:
    await store.child("one").set("k", b"1")
    assert await store.child("one").get("k") == b"1"
    assert await store.child("one").child("deeper").get("k") is None


@pytest.mark.parametrize(
    "key",
    [
        "{user:42}:sessions",
        "a:b:c",
        "ключ-🔑",
        "with space",
        "100%_*?[glob]",
        "'; DROP TABLE bastion_kv; --",
        "#sha256:0123",
        "k" * 1000,
    ],
)
async def test_any_text_works_as_a_key(store: Store, key: str) -> None:
    await store.set(key, b"v")
    await store.sadd(key + "/set", "m")
    assert await store.get(key) == b"v"
    assert await store.get(key[:-1]) is None
    assert await store.smembers(key + "/set") == {"m"}
    assert await store.incr(key + "/n") == 1
    assert await store.delete(key, key + "/set", key + "/n") == 3


async def test_long_keys_that_differ_only_at_the_end_are_distinct(store: Store) -> None:
    await store.set("k" * 999 + "a", b"a")
    await store.set("k" * 999 + "b", b"b")
    assert await store.get("k" * 999 + "a") == b"a"
    assert await store.get("k" * 999 + "b") == b"b"


async def test_binary_values_round_trip(store: Store) -> None:
    value = bytes(range(256)) + b"\x00\xff\xfe\x80 not utf-8 \xc3\x28\x00"
    await store.set("k", value)
    assert await store.get("k") == value
    assert await store.add("fresh", value) is True
    assert await store.pop("fresh") == value


async def test_large_values_round_trip(store: Store) -> None:
    value = os.urandom(64 * 1024)
    await store.set("k", value, ttl=LONG)
    assert await store.get("k") == value
    assert await store.pop("k") == value


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrent_add_stores_exactly_once(store: Store) -> None:
    results = await asyncio.gather(*(store.add("k", str(i).encode()) for i in range(50)))
    assert results.count(True) == 1
    assert await store.get("k") == str(results.index(True)).encode()


async def test_concurrent_pop_returns_the_value_once(store: Store) -> None:
    await store.set("k", b"secret")
    results = await asyncio.gather(*(store.pop("k") for _ in range(50)))
    assert [r for r in results if r is not None] == [b"secret"]


async def test_concurrent_incr_counts_every_call(store: Store) -> None:
    results = await asyncio.gather(*(store.incr("n", ttl=LONG) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await store.get("n") == b"100"


async def test_concurrent_sadd_counts_each_member_once(store: Store) -> None:
    distinct = await asyncio.gather(*(store.sadd("s", f"m{i}") for i in range(20)))
    same = await asyncio.gather(*(store.sadd("s", "shared") for _ in range(20)))
    assert sum(distinct) == 20
    assert sum(same) == 1
    assert len(await store.smembers("s")) == 21


# -- lifecycle -----------------------------------------------------------------------------


async def test_ping_answers(store: Store) -> None:
    await store.ping()


async def test_store_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.child("x"), Store)


async def test_closing_a_child_twice_is_safe_and_leaves_the_parent_open(store: Store) -> None:
    child = store.child("sub")
    await child.aclose()
    await child.aclose()
    await store.set("k", b"v")
    assert await store.get("k") == b"v"


# == Outages: a backend that cannot be reached fails fast, and says nothing sensitive ==========

SECRET = "hunter2-password"
KEY = "session:very-secret-key"

Operation = Callable[[Store], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "get": lambda s: s.get(KEY),
    "get_many": lambda s: s.get_many([KEY, KEY + "2"]),
    "set": lambda s: s.set(KEY, b"v", ttl=5),
    "add": lambda s: s.add(KEY, b"v"),
    "replace": lambda s: s.replace(KEY, b"v"),
    "pop": lambda s: s.pop(KEY),
    "delete": lambda s: s.delete(KEY, KEY + "2"),
    "incr": lambda s: s.incr(KEY, ttl=5),
    "ttl": lambda s: s.ttl(KEY),
    "touch": lambda s: s.touch(KEY, None),
    "sadd": lambda s: s.sadd(KEY, "m", ttl=5),
    "srem": lambda s: s.srem(KEY, "m"),
    "smembers": lambda s: s.smembers(KEY),
    "ping": lambda s: s.ping(),
}


def assert_discreet(exc: StoreUnavailable, port: int) -> None:
    assert str(exc) == "session store unavailable"
    for text in (str(exc), exc.detail, repr(exc)):
        for secret in (SECRET, KEY, str(port), "127.0.0.1", "SELECT", "bastion_kv"):
            assert secret not in text
    assert exc.__suppress_context__  # the driver's message stays out of tracebacks


@contextmanager
def finishes_within(seconds: float) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < seconds


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_redis_on_closed_port_is_unavailable(closed_port: int, operation: str) -> None:
    client = create_redis_client(f"redis://:{SECRET}@127.0.0.1:{closed_port}/0", timeout=0.5)
    store = RedisStore(client, namespace="outage", timeout=0.5, owns_client=True)
    try:
        with finishes_within(1.5), pytest.raises(StoreUnavailable) as info:
            await OPERATIONS[operation](store)
    finally:
        await store.aclose()
    assert_discreet(info.value, closed_port)


async def test_redis_that_never_answers_times_out(silent_port: int) -> None:
    client = create_redis_client(f"redis://:{SECRET}@127.0.0.1:{silent_port}/0", timeout=0.5)
    store = RedisStore(client, namespace="outage", timeout=0.5, owns_client=True)
    try:
        with finishes_within(1.5), pytest.raises(StoreUnavailable) as info:
            await store.get(KEY)
    finally:
        await store.aclose()
    assert_discreet(info.value, silent_port)
    assert "0.5 s" in info.value.detail


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_postgres_on_closed_port_is_unavailable(closed_port: int, operation: str) -> None:
    engine = create_engine(
        f"postgresql+asyncpg://postgres:{SECRET}@127.0.0.1:{closed_port}/bastion", timeout=0.5
    )
    store = SQLStore(engine, namespace="outage", timeout=0.5, owns_engine=True)
    try:
        with finishes_within(1.5), pytest.raises(StoreUnavailable) as info:
            await OPERATIONS[operation](store)
    finally:
        await store.aclose()
    assert_discreet(info.value, closed_port)


async def test_postgres_that_never_answers_times_out(silent_port: int) -> None:
    engine = create_engine(
        f"postgresql+asyncpg://postgres:{SECRET}@127.0.0.1:{silent_port}/bastion", timeout=0.5
    )
    store = SQLStore(engine, namespace="outage", timeout=0.5, owns_engine=True)
    try:
        with finishes_within(1.5), pytest.raises(StoreUnavailable) as info:
            await store.get(KEY)
    finally:
        await store.aclose()
    assert_discreet(info.value, silent_port)


async def test_sqlite_that_cannot_open_its_file_is_unavailable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/{SECRET}.db")
    store = SQLStore(engine, owns_engine=True)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.get(KEY)
        # aiosqlite stops the worker thread of the failed connection asynchronously; let
        # it finish while this test's event loop still runs.
        await asyncio.sleep(0.05)
    finally:
        await store.aclose()
    assert_discreet(info.value, 0)
    assert str(tmp_path) not in info.value.detail


async def test_sql_store_without_its_tables_is_unavailable(tmp_path: Path) -> None:
    store = SQLStore(create_engine(f"sqlite+aiosqlite:///{tmp_path}/empty.db"), owns_engine=True)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.set(KEY, b"v")
    finally:
        await store.aclose()
    assert_discreet(info.value, 0)


# == Redis specifics ======================================================================


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis | RedisCluster]:
    client = create_redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.mark.backend("redis")
async def test_redis_keys_are_namespace_colon_key(
    redis_client: Redis | RedisCluster, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, namespace=f"{redis_prefix}:layout").child("sub")
    await store.set("{user:42}:sessions", b"v")
    assert await redis_client.get(f"{redis_prefix}:layout:sub:{{user:42}}:sessions") == b"v"


def test_redis_hash_tags_survive_the_namespace() -> None:
    # Cluster routes by the first {...}: the namespace must not change the slot.
    assert key_slot(b"bastion:session:{user:42}:sessions") == key_slot(b"{user:42}")


@pytest.mark.parametrize("namespace", ["{bastion}", "a}b", ""])
async def test_redis_namespace_refuses_braces_and_emptiness(namespace: str) -> None:
    client = create_redis_client("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ValueError, match="namespace"):
            RedisStore(client, namespace=namespace)
        with pytest.raises(ValueError, match="namespace"):
            RedisStore(client).child(namespace)
    finally:
        await client.aclose()


@pytest.mark.backend("redis")
async def test_redis_store_survives_a_dropped_connection(
    redis_client: Redis | RedisCluster, redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore(redis_client, namespace=f"{redis_prefix}:dropped")
    await store.set("k", b"v")
    assert isinstance(redis_client, Redis)
    pooled_id = await redis_client.client_id()
    killer = create_redis_client(redis_url)
    try:
        assert isinstance(killer, Redis)
        assert await killer.client_kill_filter(_id=str(pooled_id)) == 1
    finally:
        await killer.aclose()
    assert await store.get("k") == b"v"  # the one retry reconnects


async def test_redis_store_refuses_a_decoding_client() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisStore(client)
    finally:
        await client.aclose()


@pytest.mark.backend("redis")
async def test_redis_store_closes_only_a_client_it_owns(redis_url: str) -> None:
    client = create_redis_client(redis_url)
    await RedisStore(client).aclose()
    await client.ping()  # still open
    owner = RedisStore(client, owns_client=True)
    await owner.child("sub").aclose()
    await client.ping()  # a child never closes the parent's client
    await owner.aclose()
    await owner.aclose()


async def test_cluster_url_lists_every_startup_node() -> None:
    client = create_redis_client(
        f"redis+cluster://user:{SECRET}@10.0.0.1:7000,10.0.0.2,[::1]:7002", timeout=1.5
    )
    try:
        assert isinstance(client, RedisCluster)
        nodes = {(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()}
        assert nodes == {("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)}
        kwargs = client.get_connection_kwargs()
        assert kwargs["password"] == SECRET
        assert kwargs["username"] == "user"
        # Connecting is bounded here; each command by RedisStore's own timeout.
        assert kwargs["socket_connect_timeout"] == 1.5
        assert kwargs["socket_timeout"] is None
    finally:
        await client.aclose()


async def test_sentinel_url_names_service_and_database() -> None:
    client = create_redis_client(
        f"redis+sentinel://:{SECRET}@10.0.0.1:26380,10.0.0.2/mymaster/3", timeout=1.5
    )
    try:
        assert isinstance(client, Redis)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "mymaster"
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["password"] == SECRET
        assert pool.connection_kwargs["socket_connect_timeout"] == 1.5
        assert pool.connection_kwargs["socket_timeout"] is None
        for sentinel in pool.sentinel_manager.sentinels:  # the Sentinels keep their own
            assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 1.5
        sentinels = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in pool.sentinel_manager.sentinels
        ]
        assert sentinels == [("10.0.0.1", 26380), ("10.0.0.2", 26379)]
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "url",
    [
        f"http://:{SECRET}@host:6379",
        f"redis+sentinel://:{SECRET}@host:26379",
        f"redis+cluster://:{SECRET}@host:port",
        f"redis+cluster://:{SECRET}@host:7000?ssl_cert_reqs=none",
        f"{SECRET}@host",
    ],
)
def test_bad_redis_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match=r"(?i)redis") as info:
        create_redis_client(url)
    assert SECRET not in str(info.value)


# == SQL specifics ========================================================================


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.backend("postgres"))])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+aiosqlite:///{tmp_path / 'purge.db'}"


async def count_rows(store: SQLStore, engine_url: str) -> int:
    engine = create_engine(engine_url)
    try:
        async with engine.connect() as conn:
            total = 0
            for table in (kv_table, kv_member_table):
                query = select(func.count()).where(table.c.namespace == store.namespace)
                total += await conn.scalar(query) or 0
            return total
    finally:
        await engine.dispose()


async def test_purge_expired_deletes_expired_rows(sql_url: str) -> None:
    clock = FakeClock()
    engine = create_engine(sql_url)
    await create_store_tables(engine)
    store = SQLStore(engine, namespace=f"purge{os.getpid()}{time.monotonic_ns()}", clock=clock)
    try:
        await store.set("gone", b"v", ttl=1)
        await store.sadd("gone-set", "a", "b", ttl=1)
        await store.set("kept", b"v", ttl=100)
        await store.sadd("kept-set", "a")
        clock.advance(2)
        assert await store.purge_expired() >= 3
        assert await count_rows(store, sql_url) == 2
        assert await store.get("kept") == b"v"
    finally:
        await store.aclose()
        await engine.dispose()


async def test_writes_purge_expired_rows_now_and_then(sql_url: str) -> None:
    clock = FakeClock()
    engine = create_engine(sql_url)
    await create_store_tables(engine)
    store = SQLStore(engine, namespace=f"auto{time.monotonic_ns()}", clock=clock, purge_interval=0)
    try:
        for i in range(5):
            await store.set(f"k{i}", b"v", ttl=1)
        clock.advance(2)
        await store.set("trigger", b"v")
        assert await count_rows(store, sql_url) == 1
    finally:
        await engine.dispose()


@pytest.mark.backend("postgres")
async def test_postgres_lock_wait_times_out_and_the_store_recovers(postgres_url: str) -> None:
    engine = create_engine(postgres_url, timeout=5)
    await create_store_tables(engine)
    store = SQLStore(engine, namespace=f"lock{time.monotonic_ns()}", timeout=0.5)
    blocker = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await store.set(KEY, b"v")
        async with blocker.transaction():
            await blocker.execute(
                "SELECT 1 FROM bastion_kv WHERE namespace = $1 FOR UPDATE", store.namespace
            )
            with finishes_within(1.5), pytest.raises(StoreUnavailable) as info:
                await store.set(KEY, b"w")
        assert_discreet(info.value, 5432)
        await store.set(KEY, b"x")
        assert await store.get(KEY) == b"x"
    finally:
        await blocker.close()
        await engine.dispose()


@pytest.mark.backend("postgres")
async def test_postgres_store_survives_dropped_connections(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    await create_store_tables(engine)
    store = SQLStore(engine, namespace=f"dropped{time.monotonic_ns()}")
    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await store.set("k", b"v")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert await store.get("k") == b"v"  # the pool's pre-ping replaces the connection
    finally:
        await admin.close()
        await engine.dispose()


@pytest.mark.parametrize("namespace", ["", "n" * 65, "nul\x00"])
async def test_sql_namespace_must_fit_its_column(tmp_path: Path, namespace: str) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/ns.db")
    try:
        with pytest.raises(ValueError, match="namespace"):
            SQLStore(engine, namespace=namespace)
    finally:
        await engine.dispose()


async def test_sql_set_members_must_fit_their_column(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/members.db")
    try:
        with pytest.raises(ValueError, match="members"):
            await SQLStore(engine).sadd("s", "m" * 256)
    finally:
        await engine.dispose()


# == Memory specifics =====================================================================


async def test_memory_store_evicts_the_oldest_entry_beyond_max_entries() -> None:
    store = MemoryStore(max_entries=3)
    for key in ("a", "b", "c"):
        await store.set(key, b"v")
    await store.set("a", b"again")  # rewriting makes "a" the newest
    await store.set("d", b"v")
    assert await store.get("b") is None
    assert [await store.get(k) for k in ("a", "c", "d")] == [b"again", b"v", b"v"]


async def test_memory_store_sweeps_expired_entries_during_writes() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(5000):
        await store.set(f"k{i}", b"v", ttl=1)
        clock.advance(2)
    # Without the periodic sweep all 5000 expired entries would still be held.
    assert await store.purge_expired() < 1100


async def test_memory_store_uses_wall_time_by_default() -> None:
    store = MemoryStore()
    await store.set("k", b"v", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await store.get("k") is None
