"""Profile one route in-process: the ASGI app called directly, no server, no client.

    python bench/profile_requests.py /api/me cookie [tottime|cumulative]
    python bench/profile_requests.py /api/me bearer
    python bench/profile_requests.py /healthz none

Uses Redis at 127.0.0.1:6379 (prefix "profile") and a temporary SQLite database. Prints
microseconds per request (wall clock, and this process's CPU) over 2,000 requests, then
(with a sort key) a cProfile listing.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import re
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx

from bastion.settings import Settings
from bastion.webapp.app import create_app

PASSWORD = "profiling password 1"  # noqa: S105 - a throwaway account
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def main(path: str, mode: str, sort: str | None) -> None:
    data = Path(tempfile.mkdtemp(prefix="bastion-profile-"))
    settings = Settings(
        env="test", data_dir=data, redis_url="redis://127.0.0.1:6379/0", redis_prefix="profile"
    )
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    services = app.state.bastion.services
    await services.users.create_user("speedy", await services.passwords.hash_async(PASSWORD))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        token = CSRF.search((await c.get("/login")).text).group(1)  # type: ignore[union-attr]
        form = {"username": "speedy", "password": PASSWORD, "csrf_token": token}
        await c.post("/login", data=form, headers={"Origin": "http://t"})
        cookie = c.cookies["bastion_session"]
        grant = {"grant_type": "password", "username": "speedy", "password": PASSWORD}
        access = (await c.post("/api/token", data=grant)).json()["access_token"]

    headers = [(b"host", b"t")]
    if mode == "cookie":
        headers.append((b"cookie", f"bastion_session={cookie}".encode()))
    elif mode == "bearer":
        headers.append((b"authorization", f"Bearer {access}".encode()))
    scope: dict[str, Any] = {
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
    statuses: set[int] = set()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    async def run(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    await run(200)
    start, cpu_start = time.perf_counter(), time.process_time()
    await run(2000)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        f"{path} ({mode}): {elapsed / 2000 * 1e6:.0f} us/request, "
        f"{cpu / 2000 * 1e6:.0f} us CPU/request, statuses {sorted(statuses)}"
    )
    if sort:
        profiler = cProfile.Profile()
        profiler.enable()
        await run(2000)
        profiler.disable()
        pstats.Stats(profiler).sort_stats(sort).print_stats(40)
    await lifespan.__aexit__(None, None, None)


if __name__ == "__main__":
    arguments = sys.argv[1:] + [None] * 3
    asyncio.run(main(arguments[0] or "/api/me", arguments[1] or "cookie", arguments[2]))
