"""bastion.ratelimit: per-account back-off and per-address limits on every store.

Tests taking ``store`` run on memory, SQLite, PostgreSQL and Redis. ``elapse`` moves the
FakeClock of memory and SQL stores; on Redis, whose TTLs run on the server's clock, it
sleeps (settings are chosen so that those sleeps stay short).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bastion.clock import FakeClock
from bastion.exceptions import RateLimited, StoreUnavailable
from bastion.ratelimit import (
    AddressLimit,
    LoginThrottle,
    address_bucket,
    backoff_seconds,
    describe_wait,
)
from bastion.settings import Settings
from bastion.stores import MemoryStore, RedisStore, Store, create_redis_client
from tests.backends import Backend, backend_param, open_store, resolve_backend

Elapse = Callable[[float], Awaitable[None]]
IP = "203.0.113.7"
NO_IP_LIMIT = (10_000, 3600)
SQL_TIMEOUT = 15.0


@pytest.fixture(params=[backend_param(n) for n in ("memory", "sqlite", "postgres", "redis")])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return resolve_backend(request, tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def elapse(backend: Backend, clock: FakeClock) -> Elapse:
    async def elapse(seconds: float) -> None:
        if backend.real_time:
            await asyncio.sleep(seconds + 0.05)
        else:
            clock.advance(seconds)

    return elapse


@pytest_asyncio.fixture
async def store(backend: Backend, clock: FakeClock) -> AsyncIterator[Store]:
    # A generous SQL timeout: the concurrency tests queue 50 attempts on a small pool, and
    # they are about atomicity, not about how fast a busy CI machine answers.
    async with open_store(
        backend, clock, "ratelimit", component="rate-limit store", sql_timeout=SQL_TIMEOUT
    ) as opened:
        yield opened


def throttle(store: Store, **options: Any) -> LoginThrottle:
    options.setdefault("max_failures", 2)
    options.setdefault("max_backoff", 8)
    options.setdefault("ip_limit", NO_IP_LIMIT)
    return LoginThrottle(store, **options)


async def fail(limiter: LoginThrottle, account: str = "alice", ip: str | None = IP) -> None:
    """One admitted attempt that fails."""
    await limiter.check(account, ip)
    await limiter.failed(account, ip)


async def retry_after(limiter: LoginThrottle, account: str = "alice", ip: str | None = IP) -> int:
    """The Retry-After of the next attempt, which must be refused."""
    with pytest.raises(RateLimited) as refused:
        await limiter.check(account, ip)
    return refused.value.retry_after


async def admitted(limiter: LoginThrottle, account: str = "alice", ip: str | None = IP) -> bool:
    try:
        await limiter.check(account, ip)
    except RateLimited:
        return False
    return True


class RecordingStore:
    """A store that remembers every key it was asked about."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.keys: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name == "delete":
                self.keys.update(args)
            elif args:
                self.keys.add(args[0])
            return await method(*args, **kwargs)

        return call


class InterleavingStore:
    """A store that lets other tasks run before each call, so that concurrent attempts
    interleave at every store operation even on the in-process memory store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return await method(*args, **kwargs)

        return call


class DownStore:
    """A store whose server does not answer."""

    def __getattr__(self, name: str) -> Any:
        async def down(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("rate-limit store", "test outage")

        return down


# -- the schedule ----------------------------------------------------------------------------


def test_backoff_is_one_second_at_max_failures_then_doubles_up_to_the_cap() -> None:
    waits = [backoff_seconds(n, max_failures=5, max_backoff=900) for n in range(1, 18)]
    assert waits == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]


def test_backoff_stays_at_the_cap_for_huge_failure_counts() -> None:
    assert backoff_seconds(10**9, max_failures=5, max_backoff=900) == 900
    assert backoff_seconds(10**9, max_failures=1, max_backoff=1) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"max_failures": 0},
        {"max_backoff": 0},
        {"ip_limit": (0, 60)},
        {"ip_limit": (5, 0)},
        {"max_backoff": 10, "forget_after": 10},
    ],
)
def test_invalid_configuration_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        LoginThrottle(MemoryStore(), **options)


def test_failures_are_kept_longer_than_the_longest_backoff_by_default() -> None:
    assert LoginThrottle(MemoryStore(), max_backoff=900).forget_after == 86_400
    assert LoginThrottle(MemoryStore(), max_backoff=100_000).forget_after == 200_000


def test_from_settings_uses_the_login_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        login_max_failures=3,
        login_max_backoff=60,
        login_ip_limit="7/hour",
    )
    limiter = LoginThrottle.from_settings(MemoryStore(), settings)
    assert (limiter.max_failures, limiter.max_backoff, limiter.ip_limit) == (3, 60, (7, 3600))


@pytest.mark.parametrize(
    ("ip", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_address_bucket_counts_ipv6_per_64_and_ipv4_as_itself(ip: str, bucket: str) -> None:
    assert address_bucket(ip) == bucket


# -- per-account back-off --------------------------------------------------------------------


async def test_attempts_below_max_failures_are_not_throttled(store: Store) -> None:
    limiter = throttle(store, max_failures=3)
    await fail(limiter)
    await fail(limiter)
    assert await admitted(limiter)


async def test_backoff_starts_with_one_second_after_max_failures(store: Store) -> None:
    limiter = throttle(store, max_failures=2)
    await fail(limiter)
    await fail(limiter)
    assert await retry_after(limiter) == 1


async def test_backoff_doubles_and_is_capped(store: Store, elapse: Elapse) -> None:
    limiter = throttle(store, max_failures=1, max_backoff=2)
    await fail(limiter)
    waits = [await retry_after(limiter)]
    for _ in range(2):
        await elapse(waits[-1])
        await fail(limiter)
        waits.append(await retry_after(limiter))
    assert waits == [1, 2, 2]


async def test_backoff_ends_by_itself(store: Store, elapse: Elapse) -> None:
    limiter = throttle(store, max_failures=1, max_backoff=1)
    await fail(limiter)
    await elapse(await retry_after(limiter))
    assert await admitted(limiter)


async def test_refused_attempts_do_not_lengthen_the_backoff(store: Store, elapse: Elapse) -> None:
    limiter = throttle(store, max_failures=1, max_backoff=8)
    await fail(limiter)
    for _ in range(10):
        assert await retry_after(limiter) == 1
    assert await limiter.failures("alice") == 1
    await elapse(1)
    await fail(limiter)
    assert await retry_after(limiter) == 2


async def test_retry_after_is_rounded_up_to_whole_seconds(store: Store, elapse: Elapse) -> None:
    limiter = throttle(store, max_failures=1, max_backoff=8)
    await fail(limiter)
    await elapse(1)
    await fail(limiter)  # a 2 s back-off
    await elapse(0.5)
    assert await retry_after(limiter) == 2


async def test_backoff_runs_from_the_failure_not_from_the_start_of_the_check(
    store: Store, elapse: Elapse
) -> None:
    limiter = throttle(store, max_failures=1, max_backoff=8)
    await fail(limiter)
    await elapse(1)
    await limiter.check("alice", IP)  # takes the 2 s block ...
    await elapse(1.5)  # ... then a slow password check ...
    await limiter.failed("alice", IP)  # ... fails: the 2 s start now
    assert await retry_after(limiter) == 2


async def test_success_resets_the_failure_count(store: Store) -> None:
    limiter = throttle(store, max_failures=2)
    await fail(limiter)
    await limiter.check("alice", IP)
    await limiter.succeeded("alice", IP)
    assert await limiter.failures("alice") == 0
    await fail(limiter)
    assert await admitted(limiter)


async def test_success_in_backoff_lifts_the_block_at_once(store: Store) -> None:
    limiter = throttle(store, max_failures=1, max_backoff=8)
    await limiter.check("alice", IP)  # takes the block for the case it fails
    await limiter.succeeded("alice", IP)
    assert await admitted(limiter)


async def test_admitted_attempt_counts_as_a_failure_until_it_succeeds(store: Store) -> None:
    limiter = throttle(store, max_failures=1)
    await limiter.check("alice", IP)  # e.g. the request then dies before failed()
    assert await limiter.failures("alice") == 1
    assert await retry_after(limiter) == 1


async def test_failures_are_forgotten_after_a_quiet_period(store: Store, elapse: Elapse) -> None:
    limiter = throttle(store, max_failures=5, max_backoff=1, forget_after=2)
    await fail(limiter)
    await elapse(1.5)
    await fail(limiter)  # slides the quiet period: it runs from the last attempt
    await elapse(1.5)
    assert await limiter.failures("alice") == 2
    await elapse(1)
    assert await limiter.failures("alice") == 0


async def test_accounts_are_throttled_independently(store: Store) -> None:
    limiter = throttle(store, max_failures=1)
    await fail(limiter, "alice")
    assert await retry_after(limiter, "alice") == 1
    assert await admitted(limiter, "bob")


async def test_reset_ends_the_backoff(store: Store) -> None:
    limiter = throttle(store, max_failures=1)
    await fail(limiter)
    await limiter.reset("alice")
    assert await limiter.failures("alice") == 0
    assert await admitted(limiter)


async def test_invalid_account_name_is_limited_by_address_only(store: Store) -> None:
    limiter = throttle(store, max_failures=1, ip_limit=(3, 60))
    for _ in range(3):
        await fail(limiter, "")
    assert await limiter.failures("") == 0
    assert await retry_after(limiter, "") == 60


@pytest.mark.parametrize(
    "names",
    [
        ("a", "a}", "{a}"),
        ("x:y", "x", "x:y:failures"),
        ("*", "?", "[a]"),
        ("\ud800", "\udfff", "\u00e9"),
        ("n" * 10_000, "n" * 9_999, "n"),
    ],
)
async def test_unusual_account_names_are_kept_apart(store: Store, names: tuple[str, ...]) -> None:
    limiter = throttle(store, max_failures=1)
    first, *others = names
    await fail(limiter, first)
    assert await retry_after(limiter, first) == 1
    for other in others:
        assert await limiter.failures(other) == 0
        assert await admitted(limiter, other)


async def test_store_keys_never_contain_the_account_name_or_address(store: Store) -> None:
    recording = RecordingStore(store)
    limiter = throttle(recording, max_failures=1, ip_limit=(1, 60))
    name = "alice{hash}:* \x00evil"
    await fail(limiter, name, "198.51.100.23")
    await limiter.succeeded(name, "198.51.100.23")
    assert recording.keys
    for key in recording.keys:
        assert "alice" not in key
        assert "198.51" not in key
        assert key.isascii()
        assert key.isprintable()
        assert " " not in key


# -- per-address limit -----------------------------------------------------------------------


async def test_address_limit_counts_attempts_over_all_accounts(store: Store) -> None:
    limiter = throttle(store, ip_limit=(3, 60))
    for account in ("alice", "bob", "carol"):
        await fail(limiter, account)
    assert await retry_after(limiter, "dave") == 60


async def test_address_limit_counts_successful_attempts_too(store: Store) -> None:
    limiter = throttle(store, ip_limit=(3, 60))
    for _ in range(3):
        await limiter.check("mallory", IP)
        await limiter.succeeded("mallory", IP)
    assert await retry_after(limiter, "alice") == 60


async def test_address_limit_ends_with_its_window(store: Store, elapse: Elapse) -> None:
    limiter = throttle(store, ip_limit=(1, 1))
    await fail(limiter, "alice")
    assert await retry_after(limiter, "bob") == 1
    await elapse(1)
    assert await admitted(limiter, "bob")


async def test_address_limit_leaves_other_addresses_alone(store: Store) -> None:
    limiter = throttle(store, ip_limit=(1, 60))
    await fail(limiter, "alice", "198.51.100.1")
    assert await retry_after(limiter, "bob", "198.51.100.1") == 60
    assert await admitted(limiter, "bob", "198.51.100.2")


async def test_ipv6_clients_are_counted_per_64_network(store: Store) -> None:
    limiter = throttle(store, ip_limit=(1, 60))
    await fail(limiter, "alice", "2001:db8:0:1::1")
    assert await retry_after(limiter, "bob", "2001:db8:0:1::2") == 60
    assert await admitted(limiter, "bob", "2001:db8:0:2::1")


def registration_limit(store: Store, limit: int = 2, window: int = 3600) -> AddressLimit:
    return AddressLimit(store, limit, window, what="registration", prefix="register:addr")


async def test_a_limit_of_another_purpose_counts_apart_from_login(store: Store) -> None:
    login = throttle(store, ip_limit=(1, 60))
    registration = registration_limit(store, limit=1)
    await registration.hit(IP)
    with pytest.raises(RateLimited) as refused:
        await registration.hit(IP)
    assert refused.value.retry_after == 3600
    assert await admitted(login, "alice")  # the login budget of the address is untouched
    await registration.hit("198.51.100.1")  # nor is another address's registration budget


async def test_attempts_of_unknown_address_share_one_bucket(store: Store) -> None:
    registration = registration_limit(store, limit=2)
    await registration.hit(None)
    await registration.hit(None)
    with pytest.raises(RateLimited):
        await registration.hit(None)
    await registration.hit(IP)


async def test_address_limit_keys_never_contain_the_address(store: Store) -> None:
    recording = RecordingStore(store)
    await registration_limit(recording).hit("198.51.100.23")
    assert recording.keys
    for key in recording.keys:
        assert "198.51" not in key
        assert key.startswith("register:addr:")


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (1, 0)])
def test_an_address_limit_refuses_an_empty_budget(limit: int, window: int) -> None:
    with pytest.raises(ValueError, match="address limit"):
        AddressLimit(MemoryStore(), limit, window, what="registration", prefix="r")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "1 second"),
        (1, "1 second"),
        (60, "60 seconds"),
        (119, "119 seconds"),
        (120, "2 minutes"),
        (121, "3 minutes"),
        (900, "15 minutes"),
        (3600, "60 minutes"),
        (7200, "2 hours"),
        (86_400, "24 hours"),
    ],
)
def test_waits_are_described_in_words_rounded_up(seconds: int, words: str) -> None:
    assert describe_wait(seconds) == words


async def test_address_refusal_does_not_count_for_the_account(store: Store) -> None:
    limiter = throttle(store, max_failures=1, ip_limit=(1, 60))
    await limiter.check("bob", IP)
    await limiter.succeeded("bob", IP)
    for _ in range(5):
        await retry_after(limiter, "alice")
    assert await limiter.failures("alice") == 0


async def test_attempts_without_an_address_are_limited_by_account_only(store: Store) -> None:
    limiter = throttle(store, max_failures=1, ip_limit=(1, 60))
    await limiter.check("bob", None)
    await limiter.succeeded("bob", None)
    await fail(limiter, "alice", None)
    assert await admitted(limiter, "carol", None)
    assert await retry_after(limiter, "alice", None) == 1


# -- concurrency -----------------------------------------------------------------------------


async def test_concurrent_failures_all_count(store: Store) -> None:
    limiter = throttle(InterleavingStore(store), max_failures=50)
    await asyncio.gather(*(fail(limiter) for _ in range(50)))
    assert await limiter.failures("alice") == 50
    assert await retry_after(limiter) == 1


async def test_concurrent_attempts_cannot_exceed_the_failure_budget(store: Store) -> None:
    limiter = throttle(InterleavingStore(store), max_failures=3)
    results = await asyncio.gather(*(admitted(limiter) for _ in range(20)))
    # Two free attempts, then the single attempt that holds the block.
    assert results.count(True) == 3


async def test_in_backoff_only_one_attempt_at_a_time_is_admitted(
    store: Store, elapse: Elapse
) -> None:
    limiter = throttle(InterleavingStore(store), max_failures=1, max_backoff=8)
    await fail(limiter)
    await elapse(1)
    results = await asyncio.gather(*(admitted(limiter) for _ in range(10)))
    assert results.count(True) == 1
    assert await limiter.failures("alice") == 2  # refused attempts were given back


# -- outages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["check", "failed", "succeeded"])
async def test_store_outage_fails_closed(step: str) -> None:
    limiter = LoginThrottle(DownStore())
    with pytest.raises(StoreUnavailable):
        await getattr(limiter, step)("alice", IP)


async def test_unreachable_redis_refuses_the_attempt() -> None:
    client = create_redis_client("redis://127.0.0.1:1/0", timeout=0.5)
    store = RedisStore(client, namespace="down", component="rate-limit store", owns_client=True)
    limiter = LoginThrottle(store)
    try:
        with pytest.raises(StoreUnavailable) as down:
            await limiter.check("alice", IP)
        assert down.value.component == "rate-limit store"
    finally:
        await store.aclose()
