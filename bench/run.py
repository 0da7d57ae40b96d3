"""Load benchmark of the reference app: ratios against a bare route of the same app.

    python bench/run.py [--duration 10] [--connections 16] [--redis-url redis://127.0.0.1:6379/0]

Starts `bastion serve` single-worker (uvicorn with uvloop and httptools) on Redis stores and
a SQLite database in a temporary folder, creates a user, and measures with wrk, side by side
in one run: the bare route (/healthz), /api/me with the session cookie, /api/me with a
bearer token, the /api/profile cache hit, /dashboard; then login throughput with 8
connections, and the bare route's p99 during that login load against its p99 alone.

This machine is noisy: read the ratios, not the absolute numbers. Never run as a test.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).with_name("bastion")
PASSWORD = "benchmark password 1"  # noqa: S105 - a throwaway bench account
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_wrk(name: str, output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

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
    return Result(name, rps, latency("50"), latency("99"), errors)


def wrk(
    name: str,
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


def measure(name: str, url: str, **kwargs: object) -> Result:
    process = wrk(name, url, **kwargs)  # type: ignore[arg-type]
    output, _ = process.communicate()
    return parse_wrk(name, output)


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
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

        common = {"duration": args.duration, "connections": args.connections}
        warm = measure("warm-up", f"{base}/healthz", duration=3, connections=args.connections)
        del warm
        results = [
            measure("bare route (/healthz)", f"{base}/healthz", **common),
            measure(
                "/api/me, session cookie", f"{base}/api/me", headers={"Cookie": cookie}, **common
            ),
            measure(
                "/api/me, bearer token",
                f"{base}/api/me",
                headers={"Authorization": f"Bearer {access}"},
                **common,
            ),
            measure(
                "/api/profile, cache hit",
                f"{base}/api/profile",
                headers={"Cookie": cookie},
                **common,
            ),
            measure("/dashboard", f"{base}/dashboard", headers={"Cookie": cookie}, **common),
        ]
        bare = results[0]

        # Login throughput, and the bare route's tail latency while logins run.
        script = login_script(workdir, base)
        quiet = measure("bare p99 alone", f"{base}/healthz", duration=args.duration, connections=2)
        logins = wrk("login", f"{base}/login", duration=args.duration, connections=8, script=script)
        time.sleep(0.5)
        loaded = measure(
            "bare p99 under login load",
            f"{base}/healthz",
            duration=args.duration - 1,
            connections=2,
        )
        login = parse_wrk("login (8 connections)", logins.communicate()[0])

        hash_ms = hash_time()
        cores = os.cpu_count() or 1
        login_target = 0.9 * cores / (hash_ms / 1000)

        print(
            f"\nBastion benchmark: {args.duration}s per row, {args.connections} connections, "
            f"1 uvicorn worker, Redis stores ({time.strftime('%Y-%m-%d %H:%M')})\n"
        )
        print(f"{'route':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7} {'errors':>7}")
        for result in results:
            ratio = result.rps / bare.rps
            print(row(result, f"{ratio:7.2f}"))
        print(row(login, f"{'':>7}"))
        print()
        print(
            f"bare p99 alone: {quiet.p99_ms:.2f} ms; during logins: {loaded.p99_ms:.2f} ms "
            f"(x{loaded.p99_ms / quiet.p99_ms:.2f}; target <= 3)"
        )
        print(
            f"one Argon2id hash: {hash_ms:.1f} ms; login target 0.9 x {cores} cores / hash = "
            f"{login_target:.1f}/s; measured {login.rps:.1f}/s "
            f"({login.rps / login_target:.2f} of target)"
        )
        print("\ntargets: session /api/me >= 0.80, bearer /api/me >= 0.80, profile hit >= 0.85")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def row(result: Result, ratio: str) -> str:
    return (
        f"{result.name:32} {result.rps:9.1f} {result.p50_ms:8.2f} {result.p99_ms:8.2f} "
        f"{ratio} {result.errors:7d}"
    )


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
