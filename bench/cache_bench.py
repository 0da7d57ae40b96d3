"""Cache hit vs miss vs a bare route, on one uvicorn server started by this script.

    .venv/bin/python bench/cache_bench.py [--seconds 2] [--rounds 7] [--connections 16]
                                          [--work-ms 0] [--cpu-work-ms 0]
                                          [--redis redis://127.0.0.1:6379/0]
                                          [--client auto|wrk|httpx]

Three routes of the same app return the same body for the same bearer-authenticated user:

* ``/bench/bare``: no cache;
* ``/bench/hit``: ``@cached(ttl=300, scope="user")``, warmed first, so every request hits;
* ``/bench/miss?n=<unique>``: ``@cached(..., vary=["n"])`` with a new ``n`` per request, so
  every request is a miss that computes and stores.

``--work-ms`` adds simulated backend latency (``asyncio.sleep``, as a database query) and
``--cpu-work-ms`` simulated CPU work (serialisation, templating) to each computation: that
is what a hit saves. This machine is noisy, so the routes are measured in rotating order,
several rounds, and reported as ratios to the bare route *within the same round* (median
and range over rounds), next to the raw numbers: requests per second (wall clock, moved by
whatever else runs) and the server process's own CPU time per request (from /proc, far
steadier).
The load generator is ``wrk`` when installed (far lighter than a Python client), else an
httpx client; with httpx the client shares the CPU and compresses the ratios toward 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from bastion.fastapi import CurrentUser, cached
from bastion.webapp.app import create_app

USER = "bench"
PASSWORD = "bench passphrase that is long enough"  # noqa: S105 - a throwaway local user
ROUTES = ("bare", "hit", "miss")
MISS_LUA = """
local made = 0
function setup(thread)
  made = made + 1
  thread:set("tid", made)
end
function init(args)
  tag = args[1]
  counter = 0
end
function request()
  counter = counter + 1
  return wrk.format(nil, "/bench/miss?n=" .. tag .. "-" .. tid .. "-" .. counter)
end
"""


# -- the server side ---------------------------------------------------------------------


def build_app(work_ms: float, cpu_work_ms: float) -> Any:
    """The reference app plus the three bench routes."""
    app: FastAPI = create_app()
    delay, cpu = work_ms / 1000, cpu_work_ms / 1000

    async def body(user_id: int, username: str) -> dict[str, Any]:
        if delay:
            await asyncio.sleep(delay)
        if cpu:
            until = time.thread_time() + cpu
            while time.thread_time() < until:
                pass
        return {"user_id": user_id, "username": username, "items": list(range(20))}

    @app.get("/bench/bare")
    async def bare(user: CurrentUser) -> dict[str, Any]:
        return await body(user.user_id, user.username)

    @app.get("/bench/hit")
    @cached(ttl=300, scope="user")
    async def hit(user: CurrentUser) -> dict[str, Any]:
        return await body(user.user_id, user.username)

    @app.get("/bench/miss")
    @cached(ttl=300, scope="user", vary=["n"])
    async def miss(user: CurrentUser, n: str) -> dict[str, Any]:
        return await body(user.user_id, user.username)

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:  # Bastion starts its services here
            services = app.state.bastion.services
            if await services.users.get_by_username(USER) is None:
                hashed = await services.passwords.hash_async(PASSWORD)
                await services.users.create_user(USER, hashed)
            yield state

    app.router.lifespan_context = lifespan
    return app


def serve(port: int, work_ms: float, cpu_work_ms: float) -> None:
    import uvicorn

    uvicorn.run(
        build_app(work_ms, cpu_work_ms),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


# -- the client side ---------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(args: argparse.Namespace, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "BASTION_ENV": "test",
        "BASTION_DATA_DIR": str(data_dir),
        "BASTION_SESSION_STORE": "memory",
        "BASTION_RATELIMIT_STORE": "memory",
        "BASTION_CACHE_STORE": "redis" if args.redis else "memory",
        "BASTION_REDIS_URL": args.redis or "",
        "BASTION_REDIS_PREFIX": f"bench{os.getpid()}",
    }
    command = [
        *(sys.executable, __file__, "--serve", str(port)),
        *("--work-ms", str(args.work_ms), "--cpu-work-ms", str(args.cpu_work_ms)),
    ]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the bench server did not start")
        time.sleep(0.1)


def sign_in(base: str) -> str:
    grant = httpx.post(
        f"{base}/api/token",
        data={"grant_type": "password", "username": USER, "password": PASSWORD},
        timeout=30,
    )
    grant.raise_for_status()
    token: str = grant.json()["access_token"]
    return token


@dataclass
class Sample:
    rate: float  # requests per second (wall clock: includes the noise of other processes)
    cpu_ms: float  # server CPU per request (user + system): far less sensitive to noise


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    base: str, route: str, token: str, args: argparse.Namespace, tag: str, lua: Path
) -> tuple[float, int]:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "-H",
        f"Authorization: Bearer {token}",
    ]
    if route == "miss":
        command += ["-s", str(lua), f"{base}/", "--", tag]
    else:
        command.append(f"{base}/bench/{route}")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output:
        raise SystemExit(f"wrk saw errors on /bench/{route}:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    if rate is None or count is None:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    return float(rate.group(1)), int(count.group(1))


async def run_httpx(
    base: str, route: str, token: str, args: argparse.Namespace, tag: str
) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=args.connections)
    done = 0
    stop_at = time.perf_counter() + args.seconds
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def worker(index: int) -> None:
            nonlocal done
            sent = 0
            while time.perf_counter() < stop_at:
                sent += 1
                path = (
                    f"/bench/miss?n={tag}-{index}-{sent}" if route == "miss" else f"/bench/{route}"
                )
                response = await client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"/bench/{route} answered {response.status_code}")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(args.connections)))
        elapsed = time.perf_counter() - started
    return done / elapsed, done


def measure(
    base: str, pid: int, route: str, token: str, args: argparse.Namespace, tag: str, lua: Path
) -> Sample:
    cpu_before = cpu_seconds(pid)
    if args.client == "wrk":
        rate, count = run_wrk(base, route, token, args, tag, lua)
    else:
        rate, count = asyncio.run(run_httpx(base, route, token, args, tag))
    return Sample(rate, 1000 * (cpu_seconds(pid) - cpu_before) / max(1, count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per route and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--work-ms", type=float, default=0.0, help="simulated backend latency")
    parser.add_argument("--cpu-work-ms", type=float, default=0.0, help="simulated CPU work")
    parser.add_argument("--redis", default="", help="put the cache on this Redis URL")
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.work_ms, args.cpu_work_ms)
        return
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "httpx"
    if args.client == "wrk":
        args.seconds = max(1, round(args.seconds))

    samples: dict[str, list[Sample]] = {r: [] for r in ROUTES}
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as folder:
        lua = Path(folder) / "miss.lua"
        lua.write_text(MISS_LUA)
        process, base = start_server(args, Path(folder) / "data")
        try:
            token = sign_in(base)
            httpx.get(f"{base}/bench/hit", headers={"Authorization": f"Bearer {token}"})
            warm_up = argparse.Namespace(**{**vars(args), "seconds": 1})
            for route in ROUTES:  # not reported
                measure(base, process.pid, route, token, warm_up, f"w{route}", lua)
            for number in range(args.rounds):
                order = ROUTES[number % 3 :] + ROUTES[: number % 3]
                for route in order:
                    sample = measure(base, process.pid, route, token, args, f"r{number}", lua)
                    samples[route].append(sample)
        finally:
            process.terminate()
            process.wait(timeout=10)
    report(args, samples)


def report(args: argparse.Namespace, samples: dict[str, list[Sample]]) -> None:
    store = f"redis ({args.redis})" if args.redis else "memory"
    print(
        f"client={args.client} connections={args.connections} seconds={args.seconds} "
        f"rounds={args.rounds} work_ms={args.work_ms:g} cpu_work_ms={args.cpu_work_ms:g} "
        f"cache store={store}"
    )
    print(
        f"{'route':<6} {'req/s':>7} {'vs bare':>8} {'(range)':>11} "
        f"{'CPU ms/req':>11} {'vs bare':>8} {'(range)':>11}"
    )
    bare = samples["bare"]
    for route in ROUTES:
        mine = samples[route]
        rate_ratios = [m.rate / b.rate for m, b in zip(mine, bare, strict=True)]
        cpu_ratios = [m.cpu_ms / b.cpu_ms for m, b in zip(mine, bare, strict=True)]
        print(
            f"{route:<6} {statistics.median(m.rate for m in mine):>7.0f} "
            f"{statistics.median(rate_ratios):>8.2f} "
            f"{f'{min(rate_ratios):.2f}-{max(rate_ratios):.2f}':>11} "
            f"{statistics.median(m.cpu_ms for m in mine):>11.2f} "
            f"{statistics.median(cpu_ratios):>8.2f} "
            f"{f'{min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}':>11}"
        )
    print(
        "vs bare: median over rounds of the ratio to /bench/bare measured in the same round; "
        "(range): lowest-highest of those ratios. req/s is wall clock, so it moves with "
        "whatever else runs on the machine; CPU ms/req is the server's own CPU per request."
    )


if __name__ == "__main__":
    main()
