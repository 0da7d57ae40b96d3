"""The cost of one Redis GET through redis-py's asyncio client and through coredis, and of a
hit in coredis's client-side (tracking) cache against a plain dict lookup.

    .venv/bin/pip install coredis        # not a dependency of Bastion: for this script only
    python bench/redis_clients.py [--redis-url redis://127.0.0.1:6379/0] [--gets 20000]
                                  [--rounds 5] [--concurrency 32] [--size 512]

Issue #18 asks to choose between redis-py's asyncio client and coredis by measurement. This
script runs, on uvloop as `bastion serve` does, in `--rounds` rounds (clients in rotating
order), `--gets` GETs of one `--size`-byte value per client and mode:

- `1 in flight`: one GET after the other (latency: one round trip, and its CPU);
- `N in flight`: `--concurrency` tasks each doing GETs one after the other, as requests of a
  busy server do (the CPU per GET is what limits a CPU-bound worker);

for redis-py (asyncio, with hiredis when installed; RESP2 and RESP3) and coredis (RESP3),
each with its own connection pool and no socket timeout (Bastion's stores bound each call
with their own timeout). Then a hit in coredis's tracking cache (`cache=LRUCache()`: the
client keeps read values and Redis invalidates them with CLIENT TRACKING), against a plain
dict lookup and an awaited coroutine returning one, which is the least a process-local
copy can cost.

Printed: microseconds of wall clock and of this process's CPU per GET, the median over
rounds (and the lowest round). The CPU figure is the steadier one on a shared machine. Redis
runs on the same machine, so the wall clock includes its time too. Never run as a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import uvloop

Get = Callable[[str], Awaitable[Any]]
CACHE_HIT = "coredis, tracking cache hit"
INSTALL = ".venv/bin/pip install coredis  (for this script only: not a Bastion dependency)"


@dataclass(frozen=True)
class Figures:
    """Microseconds per GET of one measurement: wall clock and this process's CPU."""

    wall_us: float
    cpu_us: float


async def timed(work: Awaitable[None], count: int) -> Figures:
    wall, cpu = time.perf_counter(), time.process_time()
    await work
    return Figures(
        (time.perf_counter() - wall) * 1e6 / count, (time.process_time() - cpu) * 1e6 / count
    )


async def one_in_flight(get: Get, key: str, count: int) -> None:
    for _ in range(count):
        await get(key)


async def in_flight(get: Get, key: str, count: int, concurrency: int) -> None:
    share = count // concurrency
    await asyncio.gather(*(one_in_flight(get, key, share) for _ in range(concurrency)))


def load_coredis() -> Any:
    try:
        return importlib.import_module("coredis")
    except ImportError:
        raise SystemExit(f"coredis is not installed: {INSTALL}") from None


def lru_cache_class(coredis: Any) -> Any:
    """coredis's in-process cache: coredis.patterns.cache.LRUCache (coredis.cache before 6)."""
    for module in ("coredis.patterns.cache", "coredis.cache"):
        with contextlib.suppress(ImportError, AttributeError):
            return importlib.import_module(module).LRUCache
    raise SystemExit(f"no LRUCache in coredis {coredis.__version__}")


async def open_clients(
    stack: contextlib.AsyncExitStack, url: str, coredis: Any
) -> dict[str, tuple[Get, Any]]:
    """Each client's GET, and an object to tell its version and parser."""
    clients: dict[str, tuple[Get, Any]] = {}
    hiredis = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure-Python parser"
    for protocol in (2, 3):
        client = redis.asyncio.Redis.from_url(url, protocol=protocol)
        stack.push_async_callback(client.aclose)
        name = f"redis-py {redis.__version__} asyncio, {hiredis}, RESP{protocol}"
        clients[name] = (client.get, client)
    plain = coredis.Redis.from_url(url)
    await stack.enter_async_context(plain)
    clients[f"coredis {coredis.__version__} (RESP3)"] = (plain.get, plain)
    cached = coredis.Redis.from_url(url, cache=lru_cache_class(coredis)(max_keys=10000))
    await stack.enter_async_context(cached)
    clients[CACHE_HIT] = (cached.get, cached)
    return clients


class LocalCopy:
    """What a process-local copy costs at least: a dict lookup behind an await."""

    def __init__(self) -> None:
        self.table: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.table.get(key)


async def measure(args: argparse.Namespace) -> None:
    coredis = load_coredis()
    key = f"bench-redis-clients:{os.getpid()}"
    value = os.urandom(args.size)
    async with contextlib.AsyncExitStack() as stack:
        clients = await open_clients(stack, args.redis_url, coredis)
        setter = next(iter(clients.values()))[1]
        await setter.set(key, value)
        try:
            gets: dict[str, Get] = {name: get for name, (get, _) in clients.items()}
            for get in gets.values():  # connect, fill the tracking cache
                assert await get(key) == value
            local = LocalCopy()
            local.table[key] = value
            gets["dict lookup in an async function"] = local.get
            results = await rounds(gets, key, args)
            cached = clients[CACHE_HIT][1]
            stats = dict(cached.connection_pool.cache.stats.summary)
        finally:
            await setter.delete(key)
    report(results, args, sync_dict_us(key, value, args.gets))
    # Proof that the cache row measured hits, not round trips.
    print(f"coredis tracking cache: {stats}")


Modes = dict[str, dict[str, list[Figures]]]  # mode -> client -> one Figures per round


async def rounds(gets: dict[str, Get], key: str, args: argparse.Namespace) -> Modes:
    names = list(gets)
    modes: Modes = {"1 in flight": {}, f"{args.concurrency} in flight": {}}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            get = gets[name]
            single = await timed(one_in_flight(get, key, args.gets), args.gets)
            count = args.gets // args.concurrency * args.concurrency
            many = await timed(in_flight(get, key, count, args.concurrency), count)
            modes["1 in flight"].setdefault(name, []).append(single)
            modes[f"{args.concurrency} in flight"].setdefault(name, []).append(many)
    return modes


def sync_dict_us(key: str, value: bytes, count: int) -> float:
    """A plain dict lookup, no await: microseconds of CPU each."""
    table = {key: value}
    lookup = table.get
    start = time.process_time()
    for _ in range(count):
        lookup(key)
    return (time.process_time() - start) * 1e6 / count


def report(modes: Modes, args: argparse.Namespace, dict_us: float) -> None:
    median = statistics.median
    print(
        f"\nOne GET of a {args.size}-byte value, {args.gets} GETs per client and mode, median "
        f"(lowest) over {args.rounds} rounds, uvloop, Redis at {args.redis_url} "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')})\n"
    )
    for mode, clients in modes.items():
        print(f"{mode:54} {'wall us/GET':>16} {'CPU us/GET':>16}")
        for name, figures in clients.items():
            wall = [f.wall_us for f in figures]
            cpu = [f.cpu_us for f in figures]
            print(
                f"  {name:52} {median(wall):7.1f} ({min(wall):6.1f}) "
                f"{median(cpu):7.1f} ({min(cpu):6.1f})"
            )
        print()
    print(f"  plain dict lookup, no await: {dict_us:.3f} us of CPU")
    print(
        "\nwall = elapsed per GET (with N in flight: elapsed / GETs, the inverse of "
        "throughput); CPU = this process's CPU per GET (what a CPU-bound server pays)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--gets", type=int, default=20000, help="GETs per client and mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32, help="GETs in flight")
    parser.add_argument("--size", type=int, default=512, help="value size in bytes")
    args = parser.parse_args()
    if min(args.gets, args.rounds, args.concurrency, args.size) < 1:
        parser.error("every number must be at least 1")
    if args.gets < args.concurrency:
        parser.error("--gets must be at least --concurrency")
    return args


def main() -> int:
    args = parse_args()
    load_coredis()  # fail before connecting anything
    uvloop.run(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
