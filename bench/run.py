"""Load benchmark of the reference app: ratios against a bare route of the same app.

    python bench/run.py [--rounds 5] [--duration 4] [--login-rounds 3] [--connections 16]
                        [--redis-url redis://127.0.0.1:6379/0]

Starts `bastion serve` single-worker (uvicorn with uvloop and httptools) on Redis stores and
a SQLite database in a temporary folder, creates a user, warms up for 3 s, and measures with
wrk: the bare route (/healthz), /api/me with the session cookie, /api/me with a bearer token,
the /api/profile cache hit and /dashboard, in `--rounds` rounds of `--duration` seconds per
route. Each round starts one route later (round r starts at route r mod 5), so no route
always follows the same one. Every ratio is taken within a round, then the median over rounds
is shown with its min-max.

Each measurement also reads the server process's own CPU time (utime + stime from
/proc/<pid>/stat) before and after wrk, divided by the requests wrk completed. The CPU ratio
bare CPU per request / route CPU per request is the steadier figure: the share of the bare
route's throughput a CPU-bound single worker would reach, whatever else the machine is doing.

Then, after 3 s of logins left out as warm-up, `--login-rounds` rounds of: the bare route's
p99 alone, then login throughput with 8 connections (with the server CPU per login) and the
bare route's p99 during that login load; the medians over rounds are the results.

This machine is noisy: read the ratios, not the absolute numbers. Never run as a test.
"""

from __future__ import annotations

import argparse
import math
import os
import re
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
PASSWORD = "benchmark password 1"  # noqa: S105 - a throwaway bench account
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BARE = "bare route (/healthz)"
TARGETS = {
    "/api/me, session cookie": 0.80,
    "/api/me, bearer token": 0.80,
    "/api/profile, cache hit": 0.85,
}
HEADER = (
    f"{'route':26} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>5} {'(min-max)':>11} "
    f"{'cpu us/req':>10} {'cpu ratio':>9} {'errors':>6}"
)


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_s: float = 0.0

    @property
    def cpu_us(self) -> float:
        """Server CPU microseconds per completed request."""
        return self.cpu_s * 1e6 / self.requests if self.requests else math.nan


@dataclass
class Summary:
    """One route over all rounds: medians, and the min-max of the req/s ratio."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    ratio: float
    ratio_min: float
    ratio_max: float
    cpu_us: float
    cpu_ratio: float
    errors: int


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


def parse_wrk(name: str, output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]

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
    return Result(name, rps, latency("50"), latency("99"), errors, requests)


def wrk(
    url: str,
    *,
    duration: int,
    connections: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> subprocess.Popen[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def measure(
    name: str,
    url: str,
    *,
    pid: int,
    duration: int,
    connections: int,
    headers: dict[str, str] | None = None,
) -> Result:
    """One wrk run, with the server's CPU time over it."""
    before = cpu_seconds(pid)
    output, _ = wrk(url, duration=duration, connections=connections, headers=headers).communicate()
    cpu = cpu_seconds(pid) - before
    result = parse_wrk(name, output)
    result.cpu_s = cpu
    return result


def start_server(
    workdir: Path, redis_url: str, port: int
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        {
            "BASTION_DATA_DIR": str(workdir / "data"),
            "BASTION_REDIS_URL": redis_url,
            "BASTION_REDIS_PREFIX": f"bench-{port}",
            "BASTION_LOGIN_IP_LIMIT": "1000000/minute",
            "BASTION_LOGIN_MAX_FAILURES": "1000000",
        }
    )
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, env
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("bastion serve did not start; see server.log")
        time.sleep(0.2)


def warm_up(server_pid: int, base: str, connections: int) -> int:
    """Warm the server for 3 s and return the pid whose CPU time grew: the one serving.

    With one worker, `bastion serve` calls uvicorn.run in its own process, so this is the
    Popen'd pid itself; a child that serves instead (a worker process) is found here.
    """
    pids = [server_pid, *children(server_pid)]
    before = {pid: cpu_seconds(pid) for pid in pids}
    wrk(f"{base}/healthz", duration=3, connections=connections).communicate()
    grown = {pid: cpu_seconds(pid) - before[pid] for pid in pids}
    serving = max(grown, key=grown.__getitem__)
    if grown[serving] <= 0:
        raise SystemExit(f"no server CPU time measured in /proc for {pids}")
    return serving


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
    return cookie, access


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
    routes: Sequence[Route], base: str, pid: int, rounds: int, duration: int, connections: int
) -> list[dict[str, Result]]:
    """Measure every route once per round; round r starts at route r mod len(routes)."""
    results = []
    for r in range(rounds):
        start = r % len(routes)
        order = [*routes[start:], *routes[:start]]
        results.append(
            {
                route.name: measure(
                    route.name,
                    base + route.path,
                    pid=pid,
                    duration=duration,
                    connections=connections,
                    headers=route.headers,
                )
                for route in order
            }
        )
    return results


def summarize(name: str, rounds: list[dict[str, Result]]) -> Summary:
    own = [results[name] for results in rounds]
    ratios = [results[name].rps / results[BARE].rps for results in rounds]
    cpu_ratios = [results[BARE].cpu_us / results[name].cpu_us for results in rounds]
    median = statistics.median
    return Summary(
        name=name,
        rps=median(r.rps for r in own),
        p50_ms=median(r.p50_ms for r in own),
        p99_ms=median(r.p99_ms for r in own),
        ratio=median(ratios),
        ratio_min=min(ratios),
        ratio_max=max(ratios),
        cpu_us=median(r.cpu_us for r in own),
        cpu_ratio=median(cpu_ratios),
        errors=sum(r.errors for r in own),
    )


LoginRound = tuple[Result, Result, Result]  # bare alone, bare under logins, logins


def login_phase(base: str, pid: int, script: Path, duration: int, rounds: int) -> list[LoginRound]:
    """After 3 s of logins left out (the first ones pay one-time costs: hashing threads
    and their memory, caches), ``rounds`` times: the bare p99 alone, then logins with the
    bare p99 measured during them."""
    wrk(f"{base}/login", duration=3, connections=8, script=script).communicate()
    return [login_round(base, pid, script, duration) for _ in range(rounds)]


def login_round(base: str, pid: int, script: Path, duration: int) -> LoginRound:
    """The server CPU over the login window also serves the bare requests measured during
    it: those are taken out at the CPU per request of the bare run alone (same 2
    connections)."""
    healthz = f"{base}/healthz"
    quiet = measure("bare p99 alone", healthz, pid=pid, duration=duration, connections=2)
    before = cpu_seconds(pid)
    logins = wrk(f"{base}/login", duration=duration, connections=8, script=script)
    time.sleep(0.5)
    loaded = measure(
        "bare p99 under login load",
        healthz,
        pid=pid,
        duration=max(1, duration - 1),
        connections=2,
    )
    login = parse_wrk("login (8 connections)", logins.communicate()[0])
    bare_share = loaded.requests * quiet.cpu_s / quiet.requests if quiet.requests else 0.0
    login.cpu_s = cpu_seconds(pid) - before - bare_share
    return quiet, loaded, login


def median_login_round(rounds: list[LoginRound]) -> LoginRound:
    """The round with the median login throughput (the table's login row)."""
    ordered = sorted(rounds, key=lambda r: r[2].rps)
    return ordered[(len(ordered) - 1) // 2]


def print_table(summaries: list[Summary], login: Result) -> None:
    print(HEADER)
    for s in summaries:
        print(
            f"{s.name:26} {s.rps:8.1f} {s.p50_ms:7.2f} {s.p99_ms:7.2f} {s.ratio:5.2f} "
            f"{f'({s.ratio_min:.2f}-{s.ratio_max:.2f})':>11} {s.cpu_us:10.0f} "
            f"{s.cpu_ratio:9.2f} {s.errors:6d}"
        )
    print(
        f"{login.name:26} {login.rps:8.1f} {login.p50_ms:7.2f} {login.p99_ms:7.2f} "
        f"{'':17} {login.cpu_us:10.0f} {'':9} {login.errors:6d}"
    )
    print(
        "\nratio = route req/s / bare req/s in the same round, median (min-max) over rounds\n"
        "cpu ratio = bare / route server CPU per request, median over rounds: the share of "
        "bare throughput a CPU-bound single worker reaches"
    )


def print_login(rounds: list[LoginRound], hash_ms: float) -> None:
    print()
    for quiet, loaded, login in rounds:
        print(
            f"login round: {login.rps:5.1f} logins/s; bare p99 alone {quiet.p99_ms:.2f} ms, "
            f"during logins {loaded.p99_ms:.2f} ms (x{loaded.p99_ms / quiet.p99_ms:.2f}); "
            f"server CPU per login {login.cpu_us / 1000:.1f} ms"
        )
    factor = statistics.median(loaded.p99_ms / quiet.p99_ms for quiet, loaded, _ in rounds)
    rate = statistics.median(login.rps for _, _, login in rounds)
    cores = os.cpu_count() or 1
    login_target = 0.9 * cores / (hash_ms / 1000)
    print(f"bare p99 under login load, median over rounds: x{factor:.2f} (target <= 3)")
    print(
        f"one Argon2id hash: {hash_ms:.1f} ms; login target 0.9 x {cores} cores / hash = "
        f"{login_target:.1f}/s; measured {rate:.1f}/s, median over rounds "
        f"({rate / login_target:.2f} of target)"
    )


def print_verdicts(summaries: list[Summary]) -> None:
    print("\ntargets: session /api/me >= 0.80, bearer /api/me >= 0.80, profile hit >= 0.85")
    by_name = {s.name: s for s in summaries}
    for name, target in TARGETS.items():
        s = by_name[name]
        by_rps = "met" if s.ratio >= target else "missed"
        by_cpu = "met" if s.cpu_ratio >= target else "missed"
        print(
            f"  {name:26} req/s ratio {s.ratio:.2f} {by_rps:6}  "
            f"cpu ratio {s.cpu_ratio:.2f} {by_cpu}  (target {target:.2f})"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all routes")
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--login-rounds", type=int, default=3, help="login load rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    if min(args.rounds, args.duration, args.login_rounds) < 1:
        parser.error("--rounds, --duration and --login-rounds must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    port = free_port()
    server, env = start_server(workdir, args.redis_url, port)
    base = f"http://127.0.0.1:{port}"
    try:
        subprocess.run(
            [str(BIN), "users", "create", "speedy", "--password-stdin"],
            input=PASSWORD + "\n",
            env=env,
            text=True,
            check=True,
            capture_output=True,
        )
        cookie, access = sign_in(base)
        routes = [
            Route(BARE, "/healthz"),
            Route("/api/me, session cookie", "/api/me", {"Cookie": cookie}),
            Route("/api/me, bearer token", "/api/me", {"Authorization": f"Bearer {access}"}),
            Route("/api/profile, cache hit", "/api/profile", {"Cookie": cookie}),
            Route("/dashboard", "/dashboard", {"Cookie": cookie}),
        ]
        pid = warm_up(server.pid, base, args.connections)
        rounds = run_rounds(routes, base, pid, args.rounds, args.duration, args.connections)
        summaries = [summarize(route.name, rounds) for route in routes]

        # Login throughput, and the bare route's tail latency while logins run.
        script = login_script(workdir, base)
        login_rounds = login_phase(base, pid, script, args.duration, args.login_rounds)
        hash_ms = hash_time()

        print(
            f"\nBastion benchmark: {args.rounds} rounds x {args.duration}s per route (rotated "
            f"order), {args.connections} connections, 1 uvicorn worker, Redis stores "
            f"({time.strftime('%Y-%m-%d %H:%M')})\n"
        )
        print_table(summaries, median_login_round(login_rounds)[2])
        print_login(login_rounds, hash_ms)
        print_verdicts(summaries)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


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
