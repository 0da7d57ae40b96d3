"""Load benchmark of the reference app: each route against a bare FastAPI route and against
the app's own /healthz, served by the same process in the same run.

    python bench/run.py [--rounds 3] [--duration 4] [--connections 32] [--login-rounds 3]
                        [--local-cache on|off] [--server-cpus 0] [--load-cpus 1] [--no-pin]
                        [--redis-url URL] [--peer litestar]

Starts `bastion serve --app bench_app:create` with one worker (uvicorn with uvloop and
httptools; `bench/bench_app.py`): a plain `FastAPI()` app answers `/bare` outside Bastion's
middleware, and the reference app answers everything else. Sessions, cache and limits are
in Redis (a private `redis-server` started for the run, unless `--redis-url`), users in
SQLite in a temporary folder. The server is pinned to `--server-cpus` (core 0) and wrk and
the private Redis to `--load-cpus` (core 1), with `taskset`, so the server has a core of its
own and is CPU-bound at 32 connections.

After a 3 s warm-up, `--rounds` rounds of `--duration` seconds per route, with wrk at
`--connections`: the bare FastAPI route, /healthz (through all of Bastion's middleware),
/api/me with the session cookie, /api/me with a bearer token, the /api/profile cache hit and
/dashboard. Round r starts at route r mod 6, so no route always follows the same one. Every
ratio is taken within a round (route req/s / bare req/s of that round), then the median over
rounds is shown with its min-max. Each measurement also reads the server process's own CPU
time (utime + stime from /proc/<pid>/stat) around wrk, divided by the requests completed:
server CPU per request; "core" is the share of one core the server used, and is near 100%
when the server, not wrk or Redis, is the bottleneck.

Then, after 3 s of logins left out as warm-up, `--login-rounds` rounds of: the /healthz p99
alone, then login throughput with 8 connections (with the server CPU per login) and the
/healthz p99 during that login load; the medians over rounds are the results.

`--local-cache on|off` sets BASTION_REDIS_LOCAL_CACHE for the server (the process-local
copies of session records and cache entries kept exact by Redis): run it both ways to
compare. The verdicts at the end are the goals of issue #18. Never run as a test.

`--peer litestar` also starts `bench/litestar_peer.py` (Litestar 2's own server-side session,
JWT and response cache on the same Redis; install it by hand: `.venv/bin/pip install
'litestar[standard]<3'`) under uvicorn with the same settings, pinned with the server, and
adds its routes to the same rotated rounds, each against the bare FastAPI route of the
Bastion process (and its own bare Litestar route in the /healthz column).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).with_name("bastion")
BENCH = Path(__file__).resolve().parent
APP = "bench_app:create"  # bench/bench_app.py, found through PYTHONPATH
PASSWORD = "benchmark password 1"  # noqa: S105 - a throwaway bench account
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BARE = "bare FastAPI (/bare)"
HEALTHZ = "/healthz"
COOKIE = "/api/me, session cookie"
BEARER = "/api/me, bearer token"
PROFILE = "/api/profile, cache hit"
DASHBOARD = "/dashboard"
# The Litestar peer's routes (bench/litestar_peer.py), and the Bastion route each compares with.
PEER_BARE = "Litestar bare (/bare)"
PEER_SESSION = "Litestar session /me"
PEER_JWT = "Litestar JWT, unchecked"
PEER_CACHE = "Litestar cached profile"
PEER_OF = {COOKIE: PEER_SESSION, BEARER: PEER_JWT, PROFILE: PEER_CACHE}
PEER_NAMES = {PEER_BARE, *PEER_OF.values()}
PEER_MODULE = "litestar_peer:create"  # bench/litestar_peer.py, found through PYTHONPATH
PEER_INSTALL = ".venv/bin/pip install 'litestar[standard]<3'"
# Issue #18's goals: req/s as a share of the bare FastAPI route of the same run.
TARGETS = {COOKIE: 0.85, BEARER: 0.85, PROFILE: 0.80}
HEALTHZ_BAND = (0.95, 1.05)  # "/healthz ~1.00 of bare FastAPI: keep"
TAIL_TARGET = 3.0  # p99 / p50 at 32 connections, every route
BUSY_ENOUGH = 0.9  # below this share of its core the server was not the bottleneck


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    # Another server's route (the peer's): its base URL and the pids whose CPU it costs.
    base: str | None = None
    pids: tuple[int, ...] = ()


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    seconds: float = 0.0  # wrk's own duration
    cpu_s: float = 0.0  # server CPU over it
    redis_cpu_s: float = math.nan  # the private Redis's CPU over it (nan: not ours to read)

    @property
    def cpu_us(self) -> float:
        """Server CPU microseconds per completed request."""
        return self.cpu_s * 1e6 / self.requests if self.requests else math.nan

    @property
    def redis_us(self) -> float:
        """Redis CPU microseconds per completed request."""
        return self.redis_cpu_s * 1e6 / self.requests if self.requests else math.nan


@dataclass
class Summary:
    """One route over all rounds: medians of per-round figures, and min-max of the ratio."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    tail: float  # p99 / p50
    ratio: float  # req/s / bare FastAPI req/s
    ratio_min: float
    ratio_max: float
    cpu_ratio: float  # bare FastAPI CPU per request / this route's
    healthz_ratio: float  # req/s / /healthz req/s
    healthz_cpu_ratio: float
    cpu_us: float
    redis_us: float
    core: float  # share of one core the server used
    errors: int


@dataclass(frozen=True)
class Pinning:
    """Which cores the server and the load (wrk, the private Redis) may run on."""

    server: str | None
    load: str | None

    def server_prefix(self) -> list[str]:
        return ["taskset", "-c", self.server] if self.server else []

    def load_prefix(self) -> list[str]:
        return ["taskset", "-c", self.load] if self.load else []

    def describe(self) -> str:
        if not self.server and not self.load:
            return "nothing pinned"
        return f"server on cpu {self.server or 'any'}, wrk and Redis on cpu {self.load or 'any'}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc/<pid>/stat."""
    # The command name in field 2 may hold spaces or ')': split after the last ')', where
    # the first field is field 3 (state), so fields 14 and 15 are at indexes 11 and 12.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds of several processes together (a server's master and its workers)."""
    return sum(cpu_seconds(pid) for pid in pids)


def children(pid: int) -> list[int]:
    """Child processes of pid, by scanning /proc (/proc/<pid>/task/<tid>/children needs a
    kernel built with CONFIG_PROC_CHILDREN, which not every kernel is)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    """pid and every process below it."""
    found = [pid]
    for child in children(pid):
        found += descendants(child)
    return found


def parse_wrk(name: str, output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    assert done, output
    seconds = float(done.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done.group(3)]

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        assert match, output
        return float(match.group(1)) * UNITS[match.group(2)]

    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return Result(name, rps, latency("50"), latency("99"), errors, int(done.group(1)), seconds)


@dataclass(frozen=True)
class Load:
    """How wrk runs: its pinning and thread count; and the private Redis to measure."""

    pinning: Pinning
    threads: int = 1
    redis_pid: int | None = None

    def wrk(
        self,
        url: str,
        *,
        duration: int,
        connections: int,
        headers: dict[str, str] | None = None,
        script: Path | None = None,
    ) -> subprocess.Popen[str]:
        command = [
            *self.pinning.load_prefix(),
            "wrk",
            f"-t{self.threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
        ]
        for key, value in (headers or {}).items():
            command += ["-H", f"{key}: {value}"]
        if script is not None:
            command += ["-s", str(script)]
        command.append(url)
        return subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def measure(
        self,
        name: str,
        url: str,
        *,
        pids: Sequence[int],
        duration: int,
        connections: int,
        headers: dict[str, str] | None = None,
    ) -> Result:
        """One wrk run, with the server's CPU time (all of `pids`) over it."""
        redis = [self.redis_pid] if self.redis_pid is not None else []
        before, redis_before = tree_cpu_seconds(pids), tree_cpu_seconds(redis)
        process = self.wrk(url, duration=duration, connections=connections, headers=headers)
        output, _ = process.communicate()
        cpu, redis_cpu = tree_cpu_seconds(pids) - before, tree_cpu_seconds(redis) - redis_before
        result = parse_wrk(name, output)
        result.cpu_s = cpu
        if redis:
            result.redis_cpu_s = redis_cpu
        return result


def start_redis(workdir: Path, pinning: Pinning) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server for the run (no persistence), pinned with the load."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is missing: apt-get install redis-server, or --redis-url")
    port = free_port()
    log = open(workdir / "redis.log", "wb")  # noqa: SIM115 - lives as long as the server
    redis = subprocess.Popen(
        [
            *pinning.load_prefix(),
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return redis, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline or redis.poll() is not None:
            raise SystemExit("redis-server did not start; see redis.log")
        time.sleep(0.1)


def server_env(workdir: Path, redis_url: str, port: int, local_cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    env.update(
        {
            "BASTION_DATA_DIR": str(workdir / "data"),
            "BASTION_REDIS_URL": redis_url,
            "BASTION_REDIS_PREFIX": f"bench-{port}",
            "BASTION_REDIS_LOCAL_CACHE": "true" if local_cache == "on" else "false",
            "BASTION_LOGIN_IP_LIMIT": "1000000/minute",
            "BASTION_LOGIN_MAX_FAILURES": "1000000",
        }
    )
    return env


def start_server(
    workdir: Path,
    redis_url: str,
    port: int,
    *,
    pinning: Pinning,
    local_cache: str = "on",
    workers: int = 1,
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """`bastion serve --app bench_app:create`, and the bench user in its database."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = server_env(workdir, redis_url, port, local_cache)
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    command = [str(BIN), "serve", "--app", APP, "--port", str(port), "--workers", str(workers)]
    server = subprocess.Popen(
        [*pinning.server_prefix(), *command], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit(f"bastion serve did not start; see {workdir / 'server.log'}")
        time.sleep(0.2)
    subprocess.run(
        [str(BIN), "users", "create", "speedy", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        text=True,
        check=True,
        capture_output=True,
    )
    return server, env


def peer_missing() -> str | None:
    """Why the Litestar peer cannot run here, or None."""
    if importlib.util.find_spec("litestar") is None:
        return f"Litestar is not installed (not a Bastion dependency): {PEER_INSTALL}"
    return None


def start_peer(
    workdir: Path, redis_url: str, port: int, *, pinning: Pinning
) -> subprocess.Popen[bytes]:
    """bench/litestar_peer.py under uvicorn, as `bastion serve` runs Bastion: one worker,
    uvloop and httptools (what `bastion serve` gets from uvicorn's "auto"), the access log on,
    no proxy headers, no Server header, log level info. Pinned with the server; its Redis keys
    are under litestar-<port>."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITESTAR_PEER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    env.update(
        {
            "LITESTAR_PEER_REDIS_URL": redis_url,
            "LITESTAR_PEER_PREFIX": f"litestar-{port}",
            "LITESTAR_PEER_SECRET": secrets.token_hex(32),
            "LITESTAR_PEER_PASSWORD": PASSWORD,
        }
    )
    log = open(workdir / "litestar.log", "wb")  # noqa: SIM115 - lives as long as the server
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        PEER_MODULE,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-proxy-headers",
        "--forwarded-allow-ips",
        "",
        "--no-server-header",
        "--log-level",
        "info",
    ]
    peer = subprocess.Popen(
        [*pinning.server_prefix(), *command], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/bare", timeout=1).status_code == 200:
                return peer
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or peer.poll() is not None:
            raise SystemExit(f"the Litestar peer did not start; see {workdir / 'litestar.log'}")
        time.sleep(0.2)


def peer_sign_in(base: str) -> tuple[str, str]:
    """Sign in to the peer: its session cookie and a token; warm its response cache."""
    with httpx.Client(base_url=base) as client:
        answer = client.post("/login", json={"username": "speedy", "password": PASSWORD})
        answer.raise_for_status()
        cookie = f"session={client.cookies['session']}"
        client.get("/session/profile", headers={"Cookie": cookie}).raise_for_status()
    return cookie, str(answer.json()["access_token"])


def peer_routes(base: str, pids: Sequence[int], cookie: str, token: str) -> list[Route]:
    def route(name: str, path: str, headers: dict[str, str] | None = None) -> Route:
        return Route(name, path, headers or {}, base=base, pids=tuple(pids))

    return [
        route(PEER_BARE, "/bare"),
        route(PEER_SESSION, "/session/me", {"Cookie": cookie}),
        route(PEER_JWT, "/jwt/me", {"Authorization": f"Bearer {token}"}),
        route(PEER_CACHE, "/session/profile", {"Cookie": cookie}),
    ]


def forget(redis_url: str, prefix: str, pattern: str = "{prefix}:*") -> None:
    """Delete the run's keys from a Redis that outlives it (--redis-url)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=pattern.format(prefix=prefix), count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def warm_up(
    load: Load, server_pid: int, base: str, connections: int, path: str = "/healthz"
) -> list[int]:
    """Warm the server for 3 s and return the pid whose CPU time grew: the one serving.

    With one worker, `bastion serve` calls uvicorn.run in its own process, so this is the
    Popen'd pid itself (`taskset` execs it); a child that serves instead is found here.
    """
    pids = descendants(server_pid)
    before = {pid: cpu_seconds(pid) for pid in pids}
    load.wrk(f"{base}{path}", duration=3, connections=connections).communicate()
    grown = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    serving = max(grown, key=grown.__getitem__)
    if grown[serving] <= 0:
        raise SystemExit(f"no server CPU time measured in /proc for {pids}")
    return [serving]


def sign_in(base: str) -> tuple[str, str]:
    """Sign the bench user in: a session cookie and a bearer token; warm the profile cache."""
    with httpx.Client(base_url=base) as client:
        token = CSRF.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
        client.post(
            "/login",
            data={"username": "speedy", "password": PASSWORD, "csrf_token": token},
            headers={"Origin": base},
        )
        cookie = f"bastion_session={client.cookies['bastion_session']}"
        grant = {"grant_type": "password", "username": "speedy", "password": PASSWORD}
        access = client.post("/api/token", data=grant).json()["access_token"]
        client.get("/api/profile", headers={"Authorization": f"Bearer {access}"})
        client.get("/api/profile", headers={"Cookie": cookie})
    return cookie, access


def routes_for(cookie: str, access: str) -> list[Route]:
    return [
        Route(BARE, "/bare"),
        Route(HEALTHZ, "/healthz"),
        Route(COOKIE, "/api/me", {"Cookie": cookie}),
        Route(BEARER, "/api/me", {"Authorization": f"Bearer {access}"}),
        Route(PROFILE, "/api/profile", {"Cookie": cookie}),
        Route(DASHBOARD, "/dashboard", {"Cookie": cookie}),
    ]


def check_routes(base: str, routes: Sequence[Route]) -> None:
    """Each route answers 200 with its credentials before anything is measured (a 401 or a
    redirect measured at full speed would read as a fast route)."""
    for route in routes:
        response = httpx.get((route.base or base) + route.path, headers=route.headers)
        if response.status_code != 200:
            raise SystemExit(f"{route.name}: {response.status_code} before the run")


def login_script(workdir: Path, base: str) -> Path:
    """A wrk Lua script that posts the login form with a valid pre-session and token."""
    with httpx.Client(base_url=base) as client:
        page = client.get("/login")
        token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    body = f"username=speedy&password={PASSWORD.replace(' ', '+')}&csrf_token={token}"
    script = workdir / "login.lua"
    script.write_text(
        textwrap.dedent(
            f"""
            wrk.method = "POST"
            wrk.body = "{body}"
            wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
            wrk.headers["Origin"] = "{base}"
            wrk.headers["Cookie"] = "{cookie}"
            """
        )
    )
    return script


def run_rounds(
    load: Load,
    routes: Sequence[Route],
    base: str,
    pids: Sequence[int],
    rounds: int,
    duration: int,
    connections: int,
) -> list[dict[str, Result]]:
    """Measure every route once per round; round r starts at route r mod len(routes)."""
    results = []
    for r in range(rounds):
        start = r % len(routes)
        order = [*routes[start:], *routes[:start]]
        results.append(
            {
                route.name: load.measure(
                    route.name,
                    (route.base or base) + route.path,
                    pids=route.pids or pids,
                    duration=duration,
                    connections=connections,
                    headers=route.headers,
                )
                for route in order
            }
        )
    return results


def summarize(name: str, rounds: list[dict[str, Result]], second: str = HEALTHZ) -> Summary:
    """`second`: the reference of the /healthz columns (the peer's own bare route for its
    routes)."""
    own = [results[name] for results in rounds]
    median = statistics.median

    def ratios(reference: str) -> tuple[list[float], list[float]]:
        by_rps = [results[name].rps / results[reference].rps for results in rounds]
        by_cpu = [results[reference].cpu_us / results[name].cpu_us for results in rounds]
        return by_rps, by_cpu

    to_bare, cpu_to_bare = ratios(BARE)
    to_healthz, cpu_to_healthz = ratios(second)
    return Summary(
        name=name,
        rps=median(r.rps for r in own),
        p50_ms=median(r.p50_ms for r in own),
        p99_ms=median(r.p99_ms for r in own),
        tail=median(r.p99_ms / r.p50_ms for r in own),
        ratio=median(to_bare),
        ratio_min=min(to_bare),
        ratio_max=max(to_bare),
        cpu_ratio=median(cpu_to_bare),
        healthz_ratio=median(to_healthz),
        healthz_cpu_ratio=median(cpu_to_healthz),
        cpu_us=median(r.cpu_us for r in own),
        redis_us=median(r.redis_us for r in own),
        core=median(r.cpu_s / r.seconds if r.seconds else math.nan for r in own),
        errors=sum(r.errors for r in own),
    )


LoginRound = tuple[Result, Result, Result]  # bare alone, bare under logins, logins


def login_phase(
    load: Load, base: str, pids: Sequence[int], script: Path, duration: int, rounds: int
) -> list[LoginRound]:
    """After 3 s of logins left out (the first ones pay one-time costs: hashing threads
    and their memory, caches), ``rounds`` times: the /healthz p99 alone, then logins with
    the /healthz p99 measured during them."""
    load.wrk(f"{base}/login", duration=3, connections=8, script=script).communicate()
    return [login_round(load, base, pids, script, duration) for _ in range(rounds)]


def login_round(
    load: Load, base: str, pids: Sequence[int], script: Path, duration: int
) -> LoginRound:
    """The server CPU over the login window also serves the /healthz requests measured
    during it: those are taken out at the CPU per request of the /healthz run alone (same 2
    connections)."""
    healthz = f"{base}/healthz"
    quiet = load.measure("healthz p99 alone", healthz, pids=pids, duration=duration, connections=2)
    before = tree_cpu_seconds(pids)
    logins = load.wrk(f"{base}/login", duration=duration, connections=8, script=script)
    time.sleep(0.5)
    loaded = load.measure(
        "healthz p99 under logins",
        healthz,
        pids=pids,
        duration=max(1, duration - 1),
        connections=2,
    )
    login = parse_wrk("login (8 connections)", logins.communicate()[0])
    bare_share = loaded.requests * quiet.cpu_s / quiet.requests if quiet.requests else 0.0
    login.cpu_s = tree_cpu_seconds(pids) - before - bare_share
    return quiet, loaded, login


def median_login_round(rounds: list[LoginRound]) -> LoginRound:
    """The round with the median login throughput (the table's login row)."""
    ordered = sorted(rounds, key=lambda r: r[2].rps)
    return ordered[(len(ordered) - 1) // 2]


HEADER = (
    f"{'route':25} {'req/s':>7} {'p50 ms':>6} {'p99 ms':>6} {'p99/50':>6} "
    f"{'/bare':>5} {'(min-max)':>11} {'cpu':>4} {'/healthz':>8} {'cpu':>4} "
    f"{'us/req':>6} {'redis':>5} {'core':>4} {'errors':>6}"
)


def print_table(summaries: list[Summary], login: Result | None) -> None:
    print(HEADER)
    for s in summaries:
        print(
            f"{s.name:25} {s.rps:7.0f} {s.p50_ms:6.2f} {s.p99_ms:6.2f} {s.tail:6.1f} "
            f"{s.ratio:5.2f} {f'({s.ratio_min:.2f}-{s.ratio_max:.2f})':>11} "
            f"{s.cpu_ratio:4.2f} {s.healthz_ratio:8.2f} {s.healthz_cpu_ratio:4.2f} "
            f"{s.cpu_us:6.0f} {s.redis_us:5.0f} {s.core:4.0%} {s.errors:6d}"
        )
    if login is not None:
        print(
            f"{login.name:25} {login.rps:7.1f} {login.p50_ms:6.0f} {login.p99_ms:6.0f} "
            f"{login.p99_ms / login.p50_ms:6.1f} {'':40} {login.cpu_us:6.0f} {'':10} "
            f"{login.errors:6d}"
        )
    print(
        "\n/bare = route req/s / bare FastAPI req/s in the same round, median (min-max) over "
        "rounds; /healthz = the same against the app's /healthz;\ncpu = the same ratio by "
        "server CPU per request (reference CPU/req / route CPU/req): the share of the "
        "reference's throughput a CPU-bound worker reaches;\nus/req = server CPU "
        "microseconds per request; redis = the private Redis's CPU microseconds per request;\n"
        "core = share of one core the server used (near 100%: the server was the bottleneck); "
        "p99/50 = median of per-round p99 / p50"
    )
    if any(s.name in PEER_NAMES for s in summaries):
        print(
            "Litestar rows: /bare is the bare FastAPI route of Bastion's process, as for every "
            "row; their /healthz columns are against Litestar's own /bare"
        )


def print_login(rounds: list[LoginRound], hash_ms: float, cores: int) -> None:
    print()
    for quiet, loaded, login in rounds:
        print(
            f"login round: {login.rps:5.1f} logins/s; /healthz p99 alone {quiet.p99_ms:.2f} ms, "
            f"during logins {loaded.p99_ms:.2f} ms (x{loaded.p99_ms / quiet.p99_ms:.2f}); "
            f"server CPU per login {login.cpu_us / 1000:.1f} ms"
        )
    factor = statistics.median(loaded.p99_ms / quiet.p99_ms for quiet, loaded, _ in rounds)
    rate = statistics.median(login.rps for _, _, login in rounds)
    login_target = 0.9 * cores / (hash_ms / 1000)
    print(f"/healthz p99 under login load, median over rounds: x{factor:.2f} (target <= 3)")
    print(
        f"one Argon2id hash: {hash_ms:.1f} ms; login target 0.9 x {cores} server core(s) / hash = "
        f"{login_target:.1f}/s; measured {rate:.1f}/s, median over rounds "
        f"({rate / login_target:.2f} of target)"
    )


def verdicts(summaries: list[Summary]) -> list[tuple[str, bool]]:
    """Issue #18's goals, each with whether this run met it. The issue's figures are req/s
    ratios; the CPU ratio beside each is what a CPU-bound worker would reach."""
    by_name = {s.name: s for s in summaries}

    def cpu_note(s: Summary, met: bool) -> str:
        return f"(cpu ratio {s.cpu_ratio:.2f}: {'met' if met else 'missed'})"

    found = []
    for name, target in TARGETS.items():
        s = by_name[name]
        text = f"{name}: {s.ratio:.2f} of bare FastAPI req/s, goal >= {target:.2f}"
        found.append((f"{text} {cpu_note(s, s.cpu_ratio >= target)}", s.ratio >= target))
    low, high = HEALTHZ_BAND
    s = by_name[HEALTHZ]
    text = f"{HEALTHZ}: {s.ratio:.2f} of bare FastAPI req/s, goal ~1.00 ({low:.2f}-{high:.2f})"
    found.append((f"{text} {cpu_note(s, low <= s.cpu_ratio)}", low <= s.ratio <= high))
    found += [
        (f"{s.name}: p99/p50 {s.tail:.1f}, goal <= {TAIL_TARGET:.0f}", s.tail <= TAIL_TARGET)
        for s in summaries
        if s.name not in PEER_NAMES
    ]
    if PEER_JWT in by_name:
        s, peer = by_name[BEARER], by_name[PEER_JWT]
        text = (
            f"bearer /api/me ahead of Litestar's unchecked JWT: {s.ratio:.2f} against "
            f"{peer.ratio:.2f} of bare FastAPI req/s ({s.ratio / peer.ratio:.2f}x)"
        )
        by_cpu = "met" if s.cpu_us < peer.cpu_us else "missed"
        cpu = f"(by CPU per request, {s.cpu_us:.0f} against {peer.cpu_us:.0f} us: {by_cpu})"
        found.append((f"{text} {cpu}", s.ratio > peer.ratio))
    return found


def print_peer(summaries: list[Summary]) -> None:
    """Each Bastion route against its Litestar counterpart: issue #18's "x Litestar"."""
    by_name = {s.name: s for s in summaries}
    if PEER_JWT not in by_name:
        return
    print("\nBastion / Litestar (req/s ratios to bare FastAPI, divided; by CPU per request):")
    for name, peer_name in PEER_OF.items():
        s, peer = by_name[name], by_name[peer_name]
        print(
            f"  {name:25} {s.ratio / peer.ratio:5.2f}x {peer_name} "
            f"(cpu {peer.cpu_us / s.cpu_us:4.2f}x; {s.cpu_us:.0f} against {peer.cpu_us:.0f} us/req)"
        )


def print_verdicts(summaries: list[Summary]) -> None:
    print("\nissue #18 goals:")
    for text, met in verdicts(summaries):
        print(f"  {'met   ' if met else 'MISSED'} {text}")
    busy = min(s.core for s in summaries)
    if busy < BUSY_ENOUGH:
        print(
            f"\nwarning: in some measurements the server used only {busy:.0%} of its core: "
            "something else ran on it, or wrk or Redis could not keep up. The req/s ratios "
            "and the tail are unreliable; read the cpu ratios, or run again on a quiet machine."
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all routes (3)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement (4)")
    parser.add_argument("--login-rounds", type=int, default=3, help="login rounds (3); 0: none")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--local-cache",
        choices=["on", "off"],
        default="on",
        help="BASTION_REDIS_LOCAL_CACHE for the server (on)",
    )
    parser.add_argument("--server-cpus", default="0", help="taskset cpu list of the server (0)")
    parser.add_argument(
        "--load-cpus", default="1", help="taskset cpu list of wrk and the private Redis (1)"
    )
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument(
        "--redis-url", help="use this Redis (not pinned) instead of a private redis-server"
    )
    parser.add_argument(
        "--peer",
        choices=["litestar"],
        help="also measure a Litestar 2 app (bench/litestar_peer.py) in the same rounds",
    )
    args = parser.parse_args()
    if min(args.rounds, args.duration) < 1 or args.login_rounds < 0:
        parser.error("--rounds and --duration must be at least 1, --login-rounds at least 0")
    return args


def check_tools(pin: bool) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    if pin and shutil.which("taskset") is None:
        raise SystemExit("taskset is missing (util-linux), or run with --no-pin")


def local_cache_note(choice: str) -> str:
    """The --local-cache choice, and whether this Bastion has the setting it sets at all."""
    from bastion.settings import Settings

    if "redis_local_cache" not in Settings.model_fields:
        return f"{choice} (no effect: this Bastion has no redis_local_cache setting)"
    return choice


def revision() -> str:
    """The commit measured, with a mark when the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=BENCH,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=True,
            cwd=BENCH.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return head + (" (src/ modified)" if dirty else "")


def main() -> int:
    args = parse_args()
    check_tools(not args.no_pin)
    pinning = Pinning(None, None) if args.no_pin else Pinning(args.server_cpus, args.load_cpus)

    peer_note = ""
    if args.peer and (missing := peer_missing()):
        peer_note = f"--peer {args.peer} skipped: {missing}"
        print(peer_note, file=sys.stderr)
        args.peer = None

    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    redis: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None
    peer: subprocess.Popen[bytes] | None = None
    try:
        if args.redis_url:
            redis_url = args.redis_url
        else:
            redis, redis_url = start_redis(workdir, pinning)
        load = Load(pinning, redis_pid=redis.pid if redis else None)
        port = free_port()
        server, _ = start_server(
            workdir, redis_url, port, pinning=pinning, local_cache=args.local_cache
        )
        base = f"http://127.0.0.1:{port}"
        routes = routes_for(*sign_in(base))
        check_routes(base, routes)
        pids = warm_up(load, server.pid, base, args.connections)
        if args.peer:
            peer_port = free_port()
            peer = start_peer(workdir, redis_url, peer_port, pinning=pinning)
            peer_base = f"http://127.0.0.1:{peer_port}"
            cookie, token = peer_sign_in(peer_base)
            peer_pids = warm_up(load, peer.pid, peer_base, args.connections, path="/bare")
            routes += peer_routes(peer_base, peer_pids, cookie, token)
            check_routes(base, routes)
        rounds = run_rounds(load, routes, base, pids, args.rounds, args.duration, args.connections)
        summaries = [
            summarize(route.name, rounds, PEER_BARE if route.name in PEER_NAMES else HEALTHZ)
            for route in routes
        ]

        # Login throughput, and /healthz's tail latency while logins run.
        login_rounds: list[LoginRound] = []
        if args.login_rounds:
            script = login_script(workdir, base)
            login_rounds = login_phase(load, base, pids, script, args.duration, args.login_rounds)

        print(
            f"\nBastion benchmark {time.strftime('%Y-%m-%d %H:%M %Z')}, commit {revision()}: "
            f"{args.rounds} rounds x {args.duration}s per route (rotated order), "
            f"{args.connections} connections, 1 uvicorn worker, Redis stores "
            f"({'private redis-server' if redis else redis_url}), local cache "
            f"{local_cache_note(args.local_cache)}; {pinning.describe()}"
            + (f"; peer: Litestar {peer_version()} (same cpu as the server)" if peer else "")
            + (f"\n{peer_note}" if peer_note else "")
            + "\n"
        )
        print_table(summaries, median_login_round(login_rounds)[2] if login_rounds else None)
        print_peer(summaries)
        if login_rounds:
            print_login(login_rounds, hash_time(), len(os.sched_getaffinity(pids[0])))
        print_verdicts(summaries)
    finally:
        if peer is not None:
            stop(peer)
            if args.redis_url:
                forget(args.redis_url, f"litestar-{peer_port}", "{prefix}_*")
        if server is not None:
            stop(server)
            if args.redis_url:
                forget(args.redis_url, f"bench-{port}")
        if redis is not None:
            stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def peer_version() -> str:
    from importlib.metadata import version

    return version("litestar")


def hash_time(samples: int = 15) -> float:
    """Median milliseconds of one password hash with the default parameters."""
    from bastion.passwords import Passwords

    passwords = Passwords()
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        passwords.hash(PASSWORD)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
