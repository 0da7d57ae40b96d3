"""The scoped cache core: codec, keys, scopes, invalidation, single flight, outages.

Every test that touches a store runs on the memory store and on the real Redis server
(``redis_url`` / ``redis_prefix``); outages use a store double that raises
StoreUnavailable on demand (a real Redis outage is in ``tests/faults``).
"""

from __future__ import annotations

import asyncio
import enum
import importlib.util
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from bastion.cache import Cache, CacheKey, Computed, dumps, loads
from bastion.clock import FakeClock
from bastion.exceptions import StoreUnavailable
from bastion.stores import MemoryStore, RedisStore, Store, create_redis_client
from tests.backends import Backend, backend_param, open_store, resolve_backend

# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.backend("redis"))])
def backend(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    name: str = request.param
    if name == "redis":
        return name, request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    return name, "", ""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def store(backend: tuple[str, str, str], clock: FakeClock) -> AsyncIterator[Store]:
    name, url, prefix = backend
    namespace = f"cache{secrets.token_hex(6)}"
    if name == "memory":
        yield MemoryStore(namespace="test", clock=clock).child(namespace)
        return
    redis_store = RedisStore(
        create_redis_client(url),
        namespace=f"{prefix}:{namespace}",
        component="cache",
        owns_client=True,
    )
    try:
        yield redis_store
    finally:
        await redis_store.aclose()


@pytest.fixture
def cache(store: Store, clock: FakeClock) -> Cache:
    return Cache(store, clock=clock)


class Calls:
    """A compute function that counts its calls and returns a fresh value each time."""

    def __init__(self, label: str = "value") -> None:
        self.label = label
        self.count = 0

    async def __call__(self) -> dict[str, Any]:
        self.count += 1
        return {"label": self.label, "n": self.count}


# -- the codec ---------------------------------------------------------------------------

ROUND_TRIP = [
    None,
    True,
    0,
    -(2**80),
    1.5,
    -0.0,
    float("inf"),
    float("-inf"),
    "text ✓ \udc80",
    b"\x00\xffbytes",
    [1, [2, [3]]],
    (1, "two", (3.0,)),
    {"a": 1, "b": [1, 2]},
    {1: "int key", (2, 3): "tuple key", None: "none key"},
    {"$t": "a user's own key named like the type tag"},
    {3, 1, 2},
    frozenset({"x", "y"}),
    datetime(2024, 5, 17, 12, 30, 15, 123456, tzinfo=UTC),
    datetime(2024, 5, 17, 12, 30, 15),
    datetime(2024, 3, 1, tzinfo=timezone(timedelta(hours=5, minutes=30), "IST")),
    datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
    date(1999, 12, 31),
    time(23, 59, 59, 999999),
    time(8, 0, tzinfo=timezone(timedelta(hours=-3))),
    timedelta(days=-1, seconds=5, microseconds=7),
    UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("1E+2"),
    Decimal("-0.000"),
    Decimal("NaN"),
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=lambda v: type(v).__name__)
def test_codec_returns_the_same_value_and_type(value: object) -> None:
    back = loads(dumps(value))
    assert type(back) is type(value)
    assert repr(back) == repr(value)  # stricter than ==: sign of zero, Decimal exponent...
    if isinstance(value, datetime | time):
        assert back.tzinfo == value.tzinfo  # type: ignore[attr-defined]
        assert type(back.tzinfo) is type(value.tzinfo)  # type: ignore[attr-defined]
        assert back.fold == value.fold  # type: ignore[attr-defined]


def test_codec_keeps_an_aware_utc_datetime_comparable_and_aware() -> None:
    now = datetime.now(UTC)
    back = loads(dumps({"cached_at": now}))["cached_at"]
    assert back == now
    assert back.tzinfo is UTC
    assert back - now == timedelta(0)


def test_codec_keeps_a_non_finite_float() -> None:
    back = loads(dumps(float("nan")))
    assert type(back) is float
    assert back != back  # NaN


def test_codec_keeps_dict_order() -> None:
    value = {"z": 1, "a": 2, "m": 3}
    assert list(loads(dumps(value))) == ["z", "a", "m"]


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=16)
    | st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones())
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.dictionaries(st.integers(), children, max_size=3)
        | st.frozensets(st.integers() | st.text(max_size=4), max_size=4)
    ),
    max_leaves=12,
)


def _shape(value: object) -> object:
    """Value and type of every node, for comparing a round trip exactly."""
    if isinstance(value, dict):
        return ("dict", [(_shape(k), _shape(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(v) for v in value])
    if isinstance(value, frozenset | set):
        return (type(value).__name__, sorted(repr(_shape(v)) for v in value))
    if isinstance(value, datetime | time):
        return (type(value).__name__, repr(value), value.fold, repr(value.tzinfo))
    return (type(value).__name__, repr(value))


@given(json_like)
def test_codec_round_trips_any_supported_structure(value: object) -> None:
    assert _shape(loads(dumps(value))) == _shape(value)


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


class LocalTZ(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "+01"


@pytest.mark.parametrize(
    "value",
    [
        object(),
        Colour.RED,
        Name("subclass of str"),
        bytearray(b"x"),
        datetime(2024, 1, 1, tzinfo=LocalTZ()),
        {"nested": [1, {2, object()}]},
        SimpleNamespace(user_id=1),
    ],
    ids=lambda v: type(v).__name__,
)
def test_codec_refuses_what_it_cannot_bring_back_exactly(value: object) -> None:
    with pytest.raises(TypeError, match="cannot cache"):
        dumps(value)


@pytest.mark.parametrize(
    "data",
    [b"not json", b'{"$t":"pickle","v":"gASV"}', b'{"$t":"bytes","v":"@@"}', b'{"$t":"float"}'],
)
def test_codec_refuses_foreign_data(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a cached value"):
        loads(data)


# -- keys --------------------------------------------------------------------------------


def test_key_needs_the_identity_its_scope_names() -> None:
    with pytest.raises(ValueError, match="needs the user id"):
        CacheKey.build("profile", scope="user")
    with pytest.raises(ValueError, match="needs the caller's roles"):
        CacheKey.build("summary", scope="role")
    with pytest.raises(ValueError, match="needs the caller's roles"):
        CacheKey.build("summary", scope="role", roles="admin")  # a str is not a role set
    with pytest.raises(ValueError, match="shared"):
        CacheKey.build("news", scope="public", user_id=1)
    with pytest.raises(ValueError, match="scope must be"):
        CacheKey.build("x", scope="global")  # type: ignore[arg-type]


def test_key_refuses_a_vary_value_it_could_only_key_by_repr() -> None:
    with pytest.raises(TypeError, match="cannot cache"):
        CacheKey.build("x", scope="public", vary={"who": SimpleNamespace(id=1)})


def test_user_generation_and_entries_share_one_redis_hash_tag() -> None:
    key = CacheKey.build("profile", scope="user", user_id=42)
    assert key.generation_keys() == ["{cu:42}:g"]
    assert key.entry_key == "{cu:42}:e:" + key.digest


def test_identities_with_braces_or_colons_cannot_break_the_key_layout() -> None:
    key = CacheKey.build("profile", scope="user", user_id="a}:{cu:42")
    (generation,) = key.generation_keys()
    assert generation.count("{") == generation.count("}") == 1
    assert "cu:42" not in generation
    roles = CacheKey.build("summary", scope="role", roles=["x}y"]).generation_keys()
    assert all(k.count("}") == 1 for k in roles)


def test_role_set_order_and_duplicates_do_not_matter() -> None:
    one = CacheKey.build("summary", scope="role", roles=["b", "a", "a"])
    other = CacheKey.build("summary", scope="role", roles=("a", "b"))
    assert one.digest == other.digest


def test_key_repr_shows_no_identity_or_vary_values() -> None:
    key = CacheKey.build("search", scope="user", user_id=7, vary={"q": "secret words"})
    assert "secret" not in repr(key)
    assert "7" not in repr(key)


# -- scopes ------------------------------------------------------------------------------


async def test_alice_never_receives_bobs_entry(cache: Cache) -> None:
    alice, bob = Calls("alice"), Calls("bob")
    assert (await cache.get_or_set("profile", alice, ttl=60, scope="user", user_id=1))[
        "label"
    ] == "alice"
    assert (await cache.get_or_set("profile", bob, ttl=60, scope="user", user_id=2))[
        "label"
    ] == "bob"
    again = await cache.get_or_set("profile", bob, ttl=60, scope="user", user_id=1)
    assert again == {"label": "alice", "n": 1}  # alice's entry, never bob's compute
    assert bob.count == 1


async def test_a_reused_python_object_never_carries_an_entry_to_another_user(
    cache: Cache,
) -> None:
    # The seed keyed entries by id(obj): once Python reused an address, the next user got
    # the previous user's entry. Here one and the same object stands for alice, then bob.
    caller = SimpleNamespace(user_id=1, name="alice")
    params = {"page": 1}

    async def profile() -> dict[str, Any]:
        return {"name": caller.name}

    first = await cache.get_or_set(
        "profile", profile, ttl=60, scope="user", user_id=caller.user_id, vary=params
    )
    caller.user_id, caller.name = 2, "bob"
    second = await cache.get_or_set(
        "profile", profile, ttl=60, scope="user", user_id=caller.user_id, vary=params
    )
    assert first == {"name": "alice"}
    assert second == {"name": "bob"}


async def test_a_hit_is_a_fresh_copy_that_callers_may_change(cache: Cache) -> None:
    calls = Calls()
    value = await cache.get_or_set("p", calls, ttl=60, scope="user", user_id=1)
    value["label"] = "changed by the first caller"
    hit = await cache.get_or_set("p", calls, ttl=60, scope="user", user_id=1)
    hit["n"] = 99
    again = await cache.get_or_set("p", calls, ttl=60, scope="user", user_id=1)
    assert again == {"label": "value", "n": 1}
    assert calls.count == 1


async def test_hits_of_one_entry_share_no_nested_container(cache: Cache) -> None:
    # Hits of an unchanged entry reuse its parse; every caller still gets its own lists,
    # dicts and sets at every depth.
    async def compute() -> dict[str, Any]:
        return {"roles": ["user"], "prefs": {"tags": {"a"}, "pairs": {(1, 2): [3]}}}

    await cache.get_or_set("nested", compute, ttl=60, scope="user", user_id=1)
    hit = await cache.get_or_set("nested", compute, ttl=60, scope="user", user_id=1)
    hit["roles"].append("admin")
    hit["prefs"]["tags"].add("b")
    hit["prefs"]["pairs"][(1, 2)].append(4)
    again = await cache.get_or_set("nested", compute, ttl=60, scope="user", user_id=1)
    assert again == {"roles": ["user"], "prefs": {"tags": {"a"}, "pairs": {(1, 2): [3]}}}


async def test_a_cached_value_comes_back_with_its_types(cache: Cache) -> None:
    stamp = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
    value = {"at": stamp, "id": UUID(int=5), "price": Decimal("9.90"), "tags": ("a", "b")}

    async def compute() -> dict[str, Any]:
        return value

    await cache.get_or_set("typed", compute, ttl=60, scope="public")
    hit = await cache.get_or_set("typed", Calls(), ttl=60, scope="public")
    assert hit == value
    assert [type(v) for v in hit.values()] == [datetime, UUID, Decimal, tuple]


async def test_role_scope_shares_between_same_role_sets_only(cache: Cache) -> None:
    staff = Calls("staff")
    first = await cache.get_or_set("summary", staff, ttl=60, scope="role", roles={"staff"})
    same = await cache.get_or_set("summary", Calls(), ttl=60, scope="role", roles=["staff"])
    admin = await cache.get_or_set(
        "summary", Calls("admin"), ttl=60, scope="role", roles={"staff", "admin"}
    )
    none = await cache.get_or_set("summary", Calls("none"), ttl=60, scope="role", roles=())
    assert same == first
    assert admin["label"] == "admin"
    assert none["label"] == "none"


async def test_public_scope_is_shared_by_everyone(cache: Cache) -> None:
    first = await cache.get_or_set("news", Calls(), ttl=60, scope="public")
    assert await cache.get_or_set("news", Calls("other"), ttl=60, scope="public") == first


async def test_scopes_and_names_never_share_entries(cache: Cache) -> None:
    user = await cache.get_or_set("x", Calls("user"), ttl=60, scope="user", user_id=1)
    role = await cache.get_or_set("x", Calls("role"), ttl=60, scope="role", roles=["1"])
    public = await cache.get_or_set("x", Calls("public"), ttl=60, scope="public")
    other_name = await cache.get_or_set("y", Calls("y"), ttl=60, scope="public")
    assert [user["label"], role["label"], public["label"], other_name["label"]] == [
        "user",
        "role",
        "public",
        "y",
    ]


async def test_vary_values_get_entries_of_their_own(cache: Cache) -> None:
    pages = {}
    for vary in ({"page": 1}, {"page": 2}, {"page": True}, {"page": "1"}, {"page": 1}):
        calls = Calls(repr(vary["page"]))
        value = await cache.get_or_set("list", calls, ttl=60, scope="public", vary=vary)
        pages[repr(vary["page"])] = value["label"]
    assert pages == {"1": "1", "2": "2", "True": "True", "'1'": "'1'"}


async def test_entries_expire_after_their_ttl(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock), clock=clock)
    calls = Calls()
    await cache.get_or_set("p", calls, ttl=30, scope="public")
    clock.advance(29)
    await cache.get_or_set("p", calls, ttl=30, scope="public")
    clock.advance(2)
    await cache.get_or_set("p", calls, ttl=30, scope="public")
    assert calls.count == 2


async def test_errors_are_not_cached(cache: Cache) -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise LookupError("backend hiccup")
        return "ok"

    with pytest.raises(LookupError):
        await cache.get_or_set("f", flaky, ttl=60, scope="public")
    assert await cache.get_or_set("f", flaky, ttl=60, scope="public") == "ok"


async def test_an_unencodable_value_fails_loudly_and_is_not_stored(cache: Cache) -> None:
    async def compute() -> object:
        return {"model": SimpleNamespace(x=1)}

    with pytest.raises(TypeError, match="cannot cache"):
        await cache.get_or_set("bad", compute, ttl=60, scope="public")
    assert await cache.get_or_set("bad", Calls(), ttl=60, scope="public") == {
        "label": "value",
        "n": 1,
    }


async def test_ttl_beyond_max_ttl_is_refused(store: Store) -> None:
    cache = Cache(store, max_ttl=60)
    with pytest.raises(ValueError, match="max_ttl"):
        await cache.get_or_set("p", Calls(), ttl=61, scope="public")


async def test_an_unreadable_entry_is_recomputed_and_replaced(cache: Cache, store: Store) -> None:
    key = CacheKey.build("p", scope="user", user_id=3)
    await store.set(key.entry_key, b"\x80garbage", ttl=60)
    calls = Calls()
    assert (await cache.get_or_set("p", calls, ttl=60, scope="user", user_id=3))["n"] == 1
    assert (await cache.get_or_set("p", calls, ttl=60, scope="user", user_id=3))["n"] == 1
    assert calls.count == 1


async def test_an_uncacheable_result_is_neither_stored_nor_shared(cache: Cache) -> None:
    key = CacheKey.build("p", scope="user", user_id=1)
    runs = 0
    gate = asyncio.Event()

    async def compute() -> Computed[int]:
        nonlocal runs
        runs += 1
        await gate.wait()
        return Computed(runs, store=False)

    tasks = [asyncio.create_task(cache.fetch(key, compute, ttl=60)) for _ in range(3)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert runs == 3
    assert all(r.source == "miss" and not r.stored for r in results)
    assert (await cache.fetch(key, compute, ttl=60)).value == 4


# -- invalidation ------------------------------------------------------------------------


async def test_invalidate_user_drops_that_users_entries_only(cache: Cache) -> None:
    alice, bob = Calls("alice"), Calls("bob")
    for name in ("profile", "settings"):
        await cache.get_or_set(name, alice, ttl=60, scope="user", user_id=1)
        await cache.get_or_set(name, bob, ttl=60, scope="user", user_id=2)
    await cache.invalidate_user(1)
    for name in ("profile", "settings"):
        await cache.get_or_set(name, alice, ttl=60, scope="user", user_id=1)
        await cache.get_or_set(name, bob, ttl=60, scope="user", user_id=2)
    assert alice.count == 4
    assert bob.count == 2


@pytest.mark.backend("redis")
async def test_invalidation_reaches_every_process_sharing_the_store(
    redis_url: str, redis_prefix: str, clock: FakeClock
) -> None:
    # Two caches over two Redis connections, as a web worker and the CLI have: nothing
    # is shared between them but the Redis server.
    namespace = f"{redis_prefix}:cache{secrets.token_hex(6)}"
    web_store, cli_store = (
        RedisStore(
            create_redis_client(redis_url), namespace=namespace, component="cache", owns_client=True
        )
        for _ in range(2)
    )
    try:
        web, cli = Cache(web_store, clock=clock), Cache(cli_store, clock=clock)
        web_calls, cli_calls = Calls("web"), Calls("cli")
        stored = await web.get_or_set("profile", web_calls, ttl=60, scope="user", user_id=1)
        assert await cli.get_or_set("profile", cli_calls, ttl=60, scope="user", user_id=1) == stored
        await cli.invalidate_user(1)
        await web.get_or_set("profile", web_calls, ttl=60, scope="user", user_id=1)
        assert (web_calls.count, cli_calls.count) == (2, 0)
    finally:
        await web_store.aclose()
        await cli_store.aclose()


async def test_invalidate_role_drops_every_role_set_containing_it(cache: Cache) -> None:
    sets = [{"admin"}, {"admin", "staff"}, {"staff"}, set()]
    counters = [Calls(str(sorted(s))) for s in sets]
    for _ in range(2):
        for roles, calls in zip(sets, counters, strict=True):
            await cache.get_or_set("summary", calls, ttl=60, scope="role", roles=roles)
        await cache.invalidate_role("admin")
    assert [c.count for c in counters] == [2, 2, 1, 1]


async def test_invalidate_public_drops_public_entries(cache: Cache) -> None:
    calls = Calls()
    await cache.get_or_set("news", calls, ttl=60, scope="public")
    await cache.invalidate_public()
    await cache.get_or_set("news", calls, ttl=60, scope="public")
    assert calls.count == 2


async def test_a_value_computed_across_an_invalidation_is_never_served_after_it(
    cache: Cache,
) -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow_old_value() -> str:
        started.set()
        await finish.wait()
        return "before invalidation"

    pending = asyncio.create_task(
        cache.get_or_set("p", slow_old_value, ttl=60, scope="user", user_id=1)
    )
    await started.wait()
    await cache.invalidate_user(1)
    finish.set()
    assert await pending == "before invalidation"  # its own caller still gets it

    async def fresh() -> str:
        return "after invalidation"

    assert await cache.get_or_set("p", fresh, ttl=60, scope="user", user_id=1) == (
        "after invalidation"
    )


async def test_an_expired_generation_never_revives_older_entries(clock: FakeClock) -> None:
    # Generations are random tokens, not counters: a counter whose key expired would
    # restart and, on the next bump, land on a value whose old entries are still alive.
    cache = Cache(MemoryStore(clock=clock), clock=clock, max_ttl=100)
    calls = Calls()
    await cache.invalidate_user(1)  # generation A; its key lives 2 * max_ttl = 200 s
    clock.advance(150)
    await cache.get_or_set("p", calls, ttl=100, scope="user", user_id=1)  # under A
    clock.advance(51)  # A's key has expired, the entry under A has not
    await cache.invalidate_user(1)
    value = await cache.get_or_set("p", calls, ttl=100, scope="user", user_id=1)
    assert value["n"] == 2


# -- one round trip per hit -------------------------------------------------------------

SCOPES: dict[str, dict[str, Any]] = {
    "user": {"scope": "user", "user_id": 7},
    "role": {"scope": "role", "roles": ["admin", "staff"]},
    "public": {"scope": "public"},
}


async def bump(cache: Cache, scope: str) -> None:
    """Invalidate what the entries of SCOPES[scope] depend on."""
    if scope == "user":
        await cache.invalidate_user(7)
    elif scope == "role":
        await cache.invalidate_role("staff")
    else:
        await cache.invalidate_public()


def fresh(label: str) -> Callable[[], Awaitable[Computed[str]]]:
    """A compute function of :meth:`Cache.fetch` that returns ``label``."""

    async def compute() -> Computed[str]:
        return Computed(label)

    return compute


@pytest.mark.parametrize("scope", list(SCOPES))
async def test_a_hit_costs_exactly_one_store_call(
    store: Store, clock: FakeClock, scope: str
) -> None:
    recording = Instrumented(store)
    cache = Cache(recording, clock=clock)
    for name in SCOPES:  # generations that exist, as in a running app
        await bump(cache, name)
    await cache.invalidate_role("admin")
    key = CacheKey.build("p", **SCOPES[scope])
    recording.names.clear()
    assert (await cache.fetch(key, fresh("v"), ttl=60)).source == "miss"
    assert recording.names == ["get_many", "get_many", "set"]  # look, look again, store
    recording.names.clear()
    hit = await cache.fetch(key, fresh("other"), ttl=60)
    assert (hit.value, hit.source) == ("v", "hit")
    assert recording.names == ["get_many"]


@pytest.mark.parametrize("scope", list(SCOPES))
async def test_an_invalidation_while_a_miss_computes_leaves_its_entry_unusable(
    cache: Cache, store: Store, clock: FakeClock, scope: str
) -> None:
    key = CacheKey.build("p", **SCOPES[scope])
    other_process = Cache(store, clock=clock)

    async def compute_across_a_bump() -> Computed[str]:
        value = "read before the change"
        await bump(other_process, scope)  # the data changes and is invalidated meanwhile
        return Computed(value)

    first = await cache.fetch(key, compute_across_a_bump, ttl=60)
    assert (first.value, first.source) == ("read before the change", "miss")
    assert await store.get(key.entry_key) is not None  # written, under the old generation
    second = await cache.fetch(key, fresh("after the change"), ttl=60)
    assert (second.value, second.source) == ("after the change", "miss")
    third = await cache.fetch(key, fresh("unused"), ttl=60)
    assert (third.value, third.source) == ("after the change", "hit")


async def test_an_entry_recorded_under_another_generation_is_a_miss(
    cache: Cache, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    key = CacheKey.build("p", scope="user", user_id=7)
    await cache.invalidate_user(7)
    stale = {"t": 0.0, "g": ["an older token"], "v": "stale"}
    await store.set(key.entry_key, json.dumps(stale).encode(), ttl=60)
    fetched = await cache.fetch(key, fresh("current"), ttl=60)
    assert (fetched.value, fetched.source) == ("current", "miss")
    # An outdated entry is not an unreadable one: no warning.
    assert not [r for r in caplog.records if r.name == "bastion.cache"]
    assert (await cache.fetch(key, fresh("unused"), ttl=60)).source == "hit"


async def test_an_absent_generation_reads_as_zero(cache: Cache, store: Store) -> None:
    key = CacheKey.build("p", scope="user", user_id=8)  # no generation was ever written
    entry = {"t": 0.0, "g": ["0"], "v": "stored earlier"}
    await store.set(key.entry_key, json.dumps(entry).encode(), ttl=60)
    fetched = await cache.fetch(key, fresh("unused"), ttl=60)
    assert (fetched.value, fetched.source) == ("stored earlier", "hit")
    await cache.invalidate_user(8)
    assert (await cache.fetch(key, fresh("new"), ttl=60)).source == "miss"


@pytest.mark.parametrize("scope", list(SCOPES))
async def test_a_miss_stores_its_absent_generations_so_hits_read_only_stored_keys(
    cache: Cache, store: Store, scope: str
) -> None:
    # Redis's process-local copies keep values, not absences: an absent generation would
    # be read from Redis on every hit.
    key = CacheKey.build("p", **SCOPES[scope])
    assert (await cache.fetch(key, fresh("v"), ttl=60)).source == "miss"
    assert await store.get_many(key.generation_keys()) == [b"0"] * len(key.generation_keys())
    assert (await cache.fetch(key, fresh("unused"), ttl=60)).source == "hit"
    await bump(cache, scope)
    assert (await cache.fetch(key, fresh("new"), ttl=60)).value == "new"


async def test_storing_an_absent_generation_never_overwrites_a_bump(
    store: Store, clock: FakeClock
) -> None:
    other_process = Cache(store, clock=clock)

    class BumpedFirst(Instrumented):
        """Another process bumps the generation just before this one writes its "0"."""

        async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
            await other_process.invalidate_user(7)
            added: bool = await self.inner.add(key, value, ttl)
            return added

    cache = Cache(BumpedFirst(store), clock=clock)
    key = CacheKey.build("p", scope="user", user_id=7)
    assert (await cache.fetch(key, fresh("v"), ttl=60)).source == "miss"
    token = await store.get("{cu:7}:g")
    assert token is not None
    assert token != b"0"
    raw = await store.get(key.entry_key)
    assert raw is not None
    assert json.loads(raw)["g"] == [token.decode()]
    assert (await cache.fetch(key, fresh("unused"), ttl=60)).source == "hit"


async def test_an_entry_records_the_generations_it_was_computed_under(
    cache: Cache, store: Store
) -> None:
    await cache.invalidate_role("admin")
    key = CacheKey.build("summary", scope="role", roles=["staff", "admin"])
    await cache.fetch(key, fresh("v"), ttl=60)
    raw = await store.get(key.entry_key)
    assert raw is not None
    envelope = json.loads(raw)
    admin_token = await store.get("{cr:admin}:g")
    assert admin_token is not None
    assert envelope["g"] == [admin_token.decode(), "0"]  # the roles sorted: admin, staff
    assert envelope["v"] == "v"


@pytest.fixture(params=[backend_param(n) for n in ("memory", "redis", "redis-cluster")])
def spread_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return resolve_backend(request, tmp_path)


async def test_role_scope_works_with_generations_in_different_cluster_slots(
    spread_backend: Backend, clock: FakeClock
) -> None:
    roles = ["admin", "editor", "staff"]  # their generations lie on all three masters
    key = CacheKey.build("summary", scope="role", roles=roles)
    assert len({key_slot(k.encode()) * 3 // 16384 for k in key.generation_keys()}) == 3
    async with open_store(spread_backend, clock, "cache", component="cache") as store:
        recording = Instrumented(store)
        cache = Cache(recording, clock=clock)
        for role in roles:
            await cache.invalidate_role(role)
        calls = Calls()

        async def compute() -> Computed[dict[str, Any]]:
            return Computed(await calls())

        assert (await cache.fetch(key, compute, ttl=60)).source == "miss"
        recording.names.clear()
        hit = await cache.fetch(key, compute, ttl=60)
        assert (hit.value["n"], hit.source) == (1, "hit")
        assert recording.names == ["get_many"]
        await cache.invalidate_role("editor")
        after = await cache.fetch(key, compute, ttl=60)
        assert (after.value["n"], after.source) == (2, "miss")
        assert (await cache.fetch(key, compute, ttl=60)).source == "hit"
        other = CacheKey.build("summary", scope="role", roles=["admin", "staff"])
        assert (await cache.fetch(other, compute, ttl=60)).value["n"] == 3


# -- single flight -----------------------------------------------------------------------


async def test_twenty_concurrent_misses_compute_once(cache: Cache) -> None:
    runs = 0

    async def slow() -> dict[str, Any]:
        nonlocal runs
        runs += 1
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        return {"items": [1, 2, 3]}

    results = await asyncio.gather(
        *(cache.get_or_set("report", slow, ttl=60, scope="user", user_id=9) for _ in range(20))
    )
    assert runs == 1
    assert all(r == {"items": [1, 2, 3]} for r in results)
    results[1]["items"].append(4)  # every caller holds its own copy
    assert all(r == {"items": [1, 2, 3]} for i, r in enumerate(results) if i != 1)


async def test_concurrent_misses_of_different_users_do_not_share(cache: Cache) -> None:
    async def whoami(user_id: int) -> int:
        async def compute() -> int:
            await asyncio.sleep(0.01)
            return user_id

        return await cache.get_or_set("me", compute, ttl=60, scope="user", user_id=user_id)

    assert await asyncio.gather(*(whoami(i % 4) for i in range(20))) == [i % 4 for i in range(20)]


async def test_waiting_callers_share_the_leaders_error(store: Store, clock: FakeClock) -> None:
    instrumented = Instrumented(store)
    cache = Cache(instrumented, clock=clock)
    runs = 0
    started, fail = asyncio.Event(), asyncio.Event()

    async def failing() -> str:
        nonlocal runs
        runs += 1
        started.set()
        await fail.wait()
        raise LookupError("down")

    leader = asyncio.create_task(cache.get_or_set("f", failing, ttl=60, scope="public"))
    await started.wait()  # the leader did 2 reads (generation and entry in each)
    followers = [
        asyncio.create_task(cache.get_or_set("f", failing, ttl=60, scope="public"))
        for _ in range(4)
    ]
    await instrumented.served(2 + 4)
    fail.set()
    results = await asyncio.gather(leader, *followers, return_exceptions=True)
    assert runs == 1
    assert all(isinstance(r, LookupError) for r in results)


async def test_a_cancelled_leader_hands_over_to_a_waiting_caller(
    store: Store, clock: FakeClock
) -> None:
    instrumented = Instrumented(store)
    cache = Cache(instrumented, clock=clock)
    runs = 0
    leader_started = asyncio.Event()

    async def compute() -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            leader_started.set()
            await asyncio.Event().wait()  # the first caller's client goes away meanwhile
        return runs

    leader = asyncio.create_task(cache.get_or_set("p", compute, ttl=60, scope="public"))
    await leader_started.wait()
    followers = [
        asyncio.create_task(cache.get_or_set("p", compute, ttl=60, scope="public"))
        for _ in range(5)
    ]
    await instrumented.served(2 + 5)  # every follower waits on the leader now
    leader.cancel()
    assert await asyncio.gather(*followers) == [2] * 5
    assert runs == 2
    with pytest.raises(asyncio.CancelledError):
        await leader


# -- outages -----------------------------------------------------------------------------


class Instrumented:
    """A store that raises StoreUnavailable while ``down`` and counts what it served."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = False
        self.calls = 0
        self.names: list[str] = []  # every method called, in order
        self.gets_done = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.names.append(name)
            if self.down:
                raise StoreUnavailable("cache", "connection refused")
            result = await method(*args, **kwargs)
            if name in ("get", "get_many"):
                self.gets_done += 1
                for target, event in self._waiters:
                    if self.gets_done >= target:
                        event.set()
            return result

        return guarded

    async def served(self, gets: int) -> None:
        """Return once ``gets`` reads have completed: a caller that did its read (the
        generations and the entry in one ``get_many``) and missed has joined the flight by
        then."""
        event = asyncio.Event()
        if self.gets_done >= gets:
            event.set()
        self._waiters.append((gets, event))
        await event.wait()


@pytest.fixture
def breakable(clock: FakeClock) -> Instrumented:
    return Instrumented(MemoryStore(clock=clock))


@pytest.fixture
def fragile_cache(breakable: Instrumented, clock: FakeClock) -> Cache:
    return Cache(breakable, clock=clock, retry_interval=5)


def outage_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bastion.cache"]


async def test_an_outage_serves_uncached_and_logs_once(
    fragile_cache: Cache,
    breakable: Instrumented,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bastion.cache")
    calls = Calls()
    breakable.down = True
    for _ in range(3):
        for _ in range(3):
            await fragile_cache.get_or_set("p", calls, ttl=60, scope="user", user_id=1)
        clock.advance(5)  # the next call tries the store again, and fails again
    assert calls.count == 9
    assert not fragile_cache.available
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cache unavailable" in warnings[0].getMessage()


async def test_an_outage_leaves_the_store_alone_until_the_retry_interval(
    fragile_cache: Cache, breakable: Instrumented, clock: FakeClock
) -> None:
    breakable.down = True
    await fragile_cache.get_or_set("p", Calls(), ttl=60, scope="public")
    tried = breakable.calls
    for _ in range(10):
        await fragile_cache.get_or_set("p", Calls(), ttl=60, scope="public")
    assert breakable.calls == tried  # no request waits on a dead store
    clock.advance(5)
    await fragile_cache.get_or_set("p", Calls(), ttl=60, scope="public")
    assert breakable.calls == tried + 1


async def test_caching_resumes_after_an_outage_and_says_so_once(
    fragile_cache: Cache,
    breakable: Instrumented,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bastion.cache")
    breakable.down = True
    await fragile_cache.get_or_set("p", Calls(), ttl=60, scope="public")
    breakable.down = False
    clock.advance(5)
    calls = Calls()
    for _ in range(3):
        await fragile_cache.get_or_set("p", calls, ttl=60, scope="public")
    assert calls.count == 1
    assert fragile_cache.available
    messages = outage_messages(caplog)
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("available again" in m for m in messages) == 1


async def test_an_invalidation_during_an_outage_is_replayed_before_the_next_read(
    fragile_cache: Cache, breakable: Instrumented, clock: FakeClock
) -> None:
    calls = Calls()
    await fragile_cache.get_or_set("p", calls, ttl=60, scope="user", user_id=1)
    breakable.down = True
    await fragile_cache.invalidate_user(1)  # the role changed, say: must not raise
    breakable.down = False  # the store comes back with the old entry still in it
    clock.advance(5)
    value = await fragile_cache.get_or_set("p", calls, ttl=60, scope="user", user_id=1)
    assert value["n"] == 2


async def test_a_failed_store_write_still_answers(
    fragile_cache: Cache, breakable: Instrumented
) -> None:
    key = CacheKey.build("p", scope="public")
    gate = asyncio.Event()

    async def compute() -> Computed[str]:
        breakable.down = True  # the store dies while the value is being computed
        await gate.wait()
        return Computed("value")

    task = asyncio.create_task(fragile_cache.fetch(key, compute, ttl=60))
    await asyncio.sleep(0)
    gate.set()
    fetched = await task
    assert fetched.value == "value"
    assert fetched.source == "uncached"


async def test_single_flight_still_protects_the_backend_during_an_outage(
    fragile_cache: Cache, breakable: Instrumented
) -> None:
    breakable.down = True
    runs = 0

    async def slow() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return "v"

    results = await asyncio.gather(
        *(fragile_cache.get_or_set("p", slow, ttl=60, scope="public") for _ in range(20))
    )
    assert results == ["v"] * 20
    assert runs == 1


# -- the documentation -------------------------------------------------------------------


DOCS = Path(__file__).resolve().parents[2] / "docs" / "caching.md"


@pytest.fixture
def doc_examples() -> list[str]:
    """The example files docs/caching.md includes (pymdownx.snippets); their routes run in
    tests/unit/test_docs_snippets.py."""
    return re.findall(r'^--8<-- "(docs/examples/caching/\w+\.py):', DOCS.read_text(), re.M)


async def test_the_examples_in_docs_caching_run(cache: Cache, doc_examples: list[str]) -> None:
    assert sorted(set(doc_examples)) == [
        "docs/examples/caching/notice.py",
        "docs/examples/caching/orders.py",
        "docs/examples/caching/reports.py",
    ]
    path = DOCS.parents[1] / "docs" / "examples" / "caching" / "reports.py"
    spec = importlib.util.spec_from_file_location("docs_caching_reports", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    report = example.monthly_report
    first = await report(cache, 1, "2024-05")
    assert await report(cache, 1, "2024-05") == first
    assert await report(cache, 2, "2024-05") != first
    assert example.BUILT == [(1, "2024-05"), (2, "2024-05")]
