"""Scale of session state in Redis: bytes per session, and lookup time against session count.

    python bench/session_state.py [--redis-url redis://127.0.0.1:6379/0] [--max 1000000]

Writes sessions exactly as Bastion stores them (the record under ``s:<key>`` with its TTL,
plus the per-user index and the global set), in pipelines, under a private key prefix that is
deleted afterwards. Reports:

* bytes per session: Redis ``MEMORY USAGE`` of the record, the user's index entry and the
  global-set entry, averaged over a sample of 100,000 sessions;
* lookup time: the median and p99 of ``SessionManager.load`` (one GET plus JSON parsing)
  at 1,000, 10,000, 100,000 and ``--max`` stored sessions, which should stay flat.

Never run as a test; it needs a Redis with a few hundred MB to spare for --max 1000000.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time

import redis.asyncio as redis_asyncio

from bastion.clock import system_clock
from bastion.sessions import Session, SessionManager, SessionPolicy, session_key
from bastion.stores.redis import RedisStore, create_redis_client

USERS = 10_000  # sessions are spread over this many users, several per user
BATCH = 2_000


def record(raw_id: str, user_id: int, now: float) -> Session:
    return Session(
        key=session_key(raw_id),
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        absolute_expires_at=now + 43_200,
        idle_timeout=1800,
        csrf_secret=secrets.token_urlsafe(32),
        username=f"user{user_id}",
        email=f"user{user_id}@example.com",
        roles=("user",),
        ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    )


async def fill(
    client: redis_asyncio.Redis | redis_asyncio.RedisCluster, prefix: str, start: int, stop: int
) -> list[str]:
    """Store sessions start..stop-1; returns a sample of their raw ids."""
    now = system_clock()
    sample: list[str] = []
    for batch_start in range(start, stop, BATCH):
        pipe = client.pipeline(transaction=False)
        for number in range(batch_start, min(stop, batch_start + BATCH)):
            raw_id = secrets.token_urlsafe(32)
            session = record(raw_id, number % USERS, now)
            pipe.set(f"{prefix}:s:{session.key}", session.to_json(), px=1_800_000)
            pipe.sadd(f"{prefix}:{{u:{session.user_id}}}:index", session.key)
            pipe.sadd(f"{prefix}:all", session.key)
            if len(sample) < 2_000 and number % 7 == 0:
                sample.append(raw_id)
        await pipe.execute()
    return sample


async def lookup_times(manager: SessionManager, raw_ids: list[str]) -> tuple[float, float]:
    times = []
    for raw_id in raw_ids * 3:
        started = time.perf_counter()
        session = await manager.load(raw_id)
        times.append((time.perf_counter() - started) * 1e6)
        assert session is not None
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--max", type=int, default=1_000_000)
    args = parser.parse_args()
    prefix = f"bench-state-{secrets.token_hex(4)}"
    client = create_redis_client(args.redis_url, timeout=10)
    manager = SessionManager(RedisStore(client, namespace=prefix), SessionPolicy())
    try:
        stored = 0
        sample: list[str] = []
        per_session: float | None = None
        print(f"{'sessions':>10} {'lookup p50 us':>14} {'lookup p99 us':>14}")
        sizes = sorted({n for n in (1_000, 10_000, 100_000) if n < args.max} | {args.max})
        for size in sizes:
            sample += await fill(client, prefix, stored, size)
            stored = size
            if per_session is None and size >= 100_000:
                per_session = await bytes_per_session(client, prefix, sample[:500])
            p50, p99 = await lookup_times(manager, sample[-500:])
            print(f"{size:>10} {p50:>14.0f} {p99:>14.0f}")
        if per_session is None:
            per_session = await bytes_per_session(client, prefix, sample[:500])
        print(f"\nbytes per session (MEMORY USAGE, {stored:,} stored): {per_session:.0f}")
        print(f"so one million sessions need about {per_session * 1e6 / 2**20:.0f} MiB of Redis")
    finally:
        async for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
            await client.delete(key)
        await client.aclose()


async def bytes_per_session(
    client: redis_asyncio.Redis | redis_asyncio.RedisCluster, prefix: str, raw_ids: list[str]
) -> float:
    """Record plus its share of the index sets (set growth measured over the same sample)."""
    record_bytes = [
        await client.memory_usage(f"{prefix}:s:{session_key(raw_id)}") or 0 for raw_id in raw_ids
    ]
    all_set = await client.memory_usage(f"{prefix}:all") or 0
    members = await client.scard(f"{prefix}:all")
    # Each session is also one member of its user's index, the same size as in the global set.
    per_member = all_set / max(members, 1)
    return statistics.mean(record_bytes) + 2 * per_member


if __name__ == "__main__":
    asyncio.run(main())
