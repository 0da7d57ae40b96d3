"""Profile one route in-process: the ASGI app called directly, no server, no client.

    python bench/profile_requests.py /api/me cookie [--sort tottime|cumulative]
    python bench/profile_requests.py /api/me bearer --memory
    python bench/profile_requests.py /api/profile cookie --concurrency 8
    python bench/profile_requests.py /healthz none
    python bench/profile_requests.py all --memory     # every route and credential in turn

Stores: Redis at 127.0.0.1:6379 (prefix "profile-<pid>", deleted at the end), or with
``--memory`` the in-process stores (which isolates the Python cost of a route from Redis,
and from the local copies of its keys); a temporary SQLite database either way.
``--concurrency N`` runs N request loops at once (so the Redis reads of concurrent
requests can be batched, as under load).

Prints microseconds per request (wall clock, and this process's CPU): the minimum over
``--rounds`` rounds of ``--requests`` requests, which is the least noisy figure on a shared
machine; then, with ``--sort``, a cProfile listing of one more round. cProfile counts each
resumption of a coroutine as a call, so ``ncalls`` of an ``async def`` is usually twice
the number of requests.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio

from bastion.settings import Settings
from bastion.webapp.app import create_app

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "profiling password 1"  # noqa: S105 - a throwaway account
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# What "all" runs: the probe (through every middleware), then each authenticated route.
ALL = [
    ("/healthz", "none"),
    ("/api/me", "cookie"),
    ("/api/me", "bearer"),
    ("/api/profile", "cookie"),
    ("/api/profile", "bearer"),
]


async def credentials(app: Any) -> tuple[str, str]:
    """Sign a fresh user in: its session cookie and an access token."""
    services = app.state.bastion.services
    await services.users.create_user("speedy", await services.passwords.hash_async(PASSWORD))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        token = CSRF.search((await c.get("/login")).text).group(1)  # type: ignore[union-attr]
        form = {"username": "speedy", "password": PASSWORD, "csrf_token": token}
        await c.post("/login", data=form, headers={"Origin": "http://t"})
        cookie = c.cookies["bastion_session"]
        grant = {"grant_type": "password", "username": "speedy", "password": PASSWORD}
        access = (await c.post("/api/token", data=grant)).json()["access_token"]
    return cookie, access


def request_scope(path: str, mode: str, cookie: str, access: str) -> dict[str, Any]:
    headers = [(b"host", b"t"), (b"accept", b"*/*"), (b"user-agent", b"profile")]
    if mode == "cookie":
        headers.append((b"cookie", f"bastion_session={cookie}".encode()))
    elif mode == "bearer":
        headers.append((b"authorization", f"Bearer {access}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("t", 80),
    }


async def measure(app: Any, scope: dict[str, Any], options: argparse.Namespace) -> str:
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def loop(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    async def run(count: int) -> None:
        share = max(1, count // options.concurrency)
        await asyncio.gather(*(loop(share) for _ in range(options.concurrency)))

    await run(options.requests)  # warm up: caches filled, code paths taken once
    count = max(1, options.requests // options.concurrency) * options.concurrency
    best_wall = best_cpu = float("inf")
    for _ in range(options.rounds):
        start, cpu_start = time.perf_counter(), time.process_time()
        await run(count)
        best_wall = min(best_wall, (time.perf_counter() - start) / count)
        best_cpu = min(best_cpu, (time.process_time() - cpu_start) / count)
    line = (
        f"{scope['path']} ({scope['_mode']}): {best_wall * 1e6:.0f} us/request, "
        f"{best_cpu * 1e6:.0f} us CPU/request, statuses {sorted(statuses)}"
    )
    if options.sort:
        profiler = cProfile.Profile()
        profiler.enable()
        await run(count)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(options.sort).print_stats(options.lines)
    return line


async def main(options: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="bastion-profile-"))
    # A prefix of this run's own: every run's user is user 1, and another run's cache
    # entries or sessions must not be what this one measures. Deleted at the end.
    prefix = f"profile-{os.getpid()}"
    stores: dict[str, Any] = {"redis_url": REDIS_URL, "redis_prefix": prefix}
    if options.memory:
        stores = {"redis_url": "", "session_store": "memory"}
    settings = Settings(env="test", data_dir=data, **stores)
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        cookie, access = await credentials(app)
        runs = ALL if options.path == "all" else [(options.path, options.mode)]
        for path, mode in runs:
            scope = request_scope(path, mode, cookie, access)
            scope["_mode"] = mode  # for the report only; the app ignores unknown keys
            print(await measure(app, scope, options), flush=True)
    finally:
        await lifespan.__aexit__(None, None, None)
        if not options.memory:
            client = redis.asyncio.Redis.from_url(REDIS_URL)
            async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                await client.delete(key)
            await client.aclose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="/api/me", help='a path, or "all"')
    parser.add_argument("mode", nargs="?", default="cookie", choices=["cookie", "bearer", "none"])
    parser.add_argument("--memory", action="store_true", help="memory stores instead of Redis")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sort", choices=["tottime", "cumulative"], default=None)
    parser.add_argument("--lines", type=int, default=40, help="lines of the cProfile listing")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
