"""Scaling with processes: `bastion serve --workers N` against one worker, on the session
cookie route (/api/me), and how the cores were shared.

    python bench/scaling.py [--workers 2] [--rounds 3] [--duration 4] [--connections 32]
                            [--wrk-threads 1] [--local-cache on|off] [--redis-url URL]

Issue #18 asks for N workers on N cores to give at least 0.9 x N the single-worker
throughput. On a 2-core machine wrk and Redis must run on the same cores as the workers, so
no layout measures that alone; this script measures four, each with its own sharing said:

- `1 worker`  pinned: the worker on cpu 0, wrk and Redis on cpu 1 (as `bench/run.py`);
- `N workers` pinned: the workers on cpus 0..N-1, wrk and Redis on cpu N-1 (they share a
  core with a worker);
- `1 worker` and `N workers` with nothing pinned: the same sharing for both, left to the
  scheduler.

Two servers run for the whole script (one worker, and `--workers` N; each its own SQLite
folder and Redis prefix, one private `redis-server` for both unless `--redis-url`); their
cores are set before each measurement with sched_setaffinity on every thread, and wrk is
started under `taskset`. Layouts are measured in rotating order for `--rounds` rounds; each
figure is the median over rounds, each ratio is taken within a round.

Besides req/s and latency, each layout shows where the CPU went during the measurement, in
shares of one core: all the server's processes (the uvicorn master and its workers), wrk
(from its rusage) and the private Redis; and the server CPU per request summed over all its
processes. The CPU per request of N workers over that of one says whether more processes
cost more per request (1.00: none); N / that ratio is the throughput N workers would reach
on N cores of their own (a projection from CPU per request, not a measurement: it assumes
the load generator and Redis elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import run

SCALING_TARGET = 0.9  # N workers >= 0.9 x N x one worker
UNEVEN = 0.75  # the busiest worker's share of the server CPU that is worth a note


@dataclass(frozen=True)
class Layout:
    name: str
    workers: int  # which server: 1 or N
    server_cpus: set[int] | None  # None: any
    load_cpus: str | None  # taskset list for wrk, None: any


@dataclass
class Sample:
    """One measurement of one layout."""

    result: run.Result
    server_cpu_s: float
    wrk_cpu_s: float
    redis_cpu_s: float | None
    worker_cpu_s: list[float]
    machine_cpu_s: float  # every process on the machine, from /proc/stat

    @property
    def other_cpu_s(self) -> float:
        """CPU the machine spent on anything but the server, wrk and the private Redis."""
        ours = self.server_cpu_s + self.wrk_cpu_s + (self.redis_cpu_s or 0.0)
        return max(0.0, self.machine_cpu_s - ours)

    @property
    def server_us(self) -> float:
        """Server CPU per request, all its processes."""
        return self.server_cpu_s * 1e6 / self.result.requests

    def core(self, seconds: float) -> float:
        return seconds / self.result.seconds


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    base: str
    cookie: str
    pids: list[int]  # the master first, then its workers


def set_cores(pids: list[int], cpus: set[int] | None) -> None:
    """Move every thread of these processes to `cpus` (None: all of the machine's)."""
    target = cpus if cpus is not None else set(range(os.cpu_count() or 1))
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # a thread ended
                os.sched_setaffinity(int(task.name), target)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cpus; /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / run.CLOCK_TICKS


def wrk_with_rusage(command: subprocess.Popen[str]) -> tuple[str, float]:
    """wrk's output and the CPU seconds it used (from wait4's rusage)."""
    assert command.stdout is not None
    output = command.stdout.read()
    _, status, usage = os.wait4(command.pid, 0)
    command.returncode = os.waitstatus_to_exitcode(status)
    return output, usage.ru_utime + usage.ru_stime


def measure(
    layout: Layout,
    server: Server,
    redis_pid: int | None,
    *,
    duration: int,
    connections: int,
    threads: int,
) -> Sample:
    set_cores(server.pids, layout.server_cpus)
    if redis_pid is not None:
        load = {int(c) for c in layout.load_cpus.split(",")} if layout.load_cpus else None
        set_cores([redis_pid], load)
    workers = [run.cpu_seconds(pid) for pid in server.pids]
    redis_before = run.cpu_seconds(redis_pid) if redis_pid is not None else 0.0
    machine_before = machine_busy_seconds()
    wrk = run.Load(run.Pinning(None, layout.load_cpus), threads).wrk(
        f"{server.base}/api/me",
        duration=duration,
        connections=connections,
        headers={"Cookie": server.cookie},
    )
    output, wrk_cpu = wrk_with_rusage(wrk)
    machine_cpu = machine_busy_seconds() - machine_before
    pairs = zip(server.pids, workers, strict=True)
    worker_cpu = [run.cpu_seconds(pid) - before for pid, before in pairs]
    redis_cpu = run.cpu_seconds(redis_pid) - redis_before if redis_pid is not None else None
    result = run.parse_wrk(layout.name, output)
    if result.errors or not result.requests:
        raise SystemExit(f"{layout.name}: {result.errors} errors of {result.requests}")
    workers_only = worker_cpu[1:] or worker_cpu
    return Sample(result, sum(worker_cpu), wrk_cpu, redis_cpu, workers_only, machine_cpu)


def start(
    workdir: Path, redis_url: str, workers: int, local_cache: str, connections: int
) -> Server:
    port = run.free_port()
    process, _ = run.start_server(
        workdir,
        redis_url,
        port,
        pinning=run.Pinning(None, None),
        local_cache=local_cache,
        workers=workers,
    )
    base = f"http://127.0.0.1:{port}"
    cookie, _ = run.sign_in(base)
    run.check_routes(base, [run.Route(run.COOKIE, "/api/me", {"Cookie": cookie})])
    # Every worker imports and starts on its own; warm them all before finding them.
    run.Load(run.Pinning(None, None)).wrk(
        f"{base}/api/me", duration=3, connections=connections, headers={"Cookie": cookie}
    ).communicate()
    pids = run.descendants(process.pid)
    serving = [pid for pid in pids[1:] if "multiprocessing.resource_tracker" not in cmdline(pid)]
    if workers > 1 and len(serving) < workers:
        raise SystemExit(f"expected {workers} worker processes under {process.pid}: {pids}")
    return Server(process, base, cookie, [process.pid, *serving] if workers > 1 else [process.pid])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def layouts(workers: int) -> list[Layout]:
    all_cores = set(range(workers))
    last = str(workers - 1)
    return [
        Layout("1 worker: cpu 0; wrk+redis: cpu 1", 1, {0}, "1"),
        Layout(f"{workers} workers: cpu 0-{last}; wrk+redis: cpu {last}", workers, all_cores, last),
        Layout("1 worker, nothing pinned", 1, None, None),
        Layout(f"{workers} workers, nothing pinned", workers, None, None),
    ]


def report(args: argparse.Namespace, rounds: list[dict[str, Sample]], names: list[str]) -> None:
    median = statistics.median
    print(
        f"\nBastion scaling {time.strftime('%Y-%m-%d %H:%M %Z')}, commit {run.revision()}: "
        f"/api/me by session cookie, {args.rounds} rounds x {args.duration}s (rotated order), "
        f"{args.connections} connections, wrk -t{args.wrk_threads}, local cache "
        f"{run.local_cache_note(args.local_cache)}, {os.cpu_count()} cpus\n"
    )
    print(
        f"{'layout':38} {'req/s':>7} {'p50 ms':>6} {'p99 ms':>6} {'us/req':>6} "
        f"{'server':>6} {'wrk':>5} {'redis':>5} {'other':>5}  per worker"
    )
    for name in names:
        own = [r[name] for r in rounds]
        redis = [s.core(s.redis_cpu_s) for s in own if s.redis_cpu_s is not None]
        split = " / ".join(
            f"{median(s.core(s.worker_cpu_s[i]) for s in own):.0%}"
            for i in range(len(own[0].worker_cpu_s))
        )
        print(
            f"{name:38} {median(s.result.rps for s in own):7.0f} "
            f"{median(s.result.p50_ms for s in own):6.2f} "
            f"{median(s.result.p99_ms for s in own):6.2f} "
            f"{median(s.server_us for s in own):6.0f} "
            f"{median(s.core(s.server_cpu_s) for s in own):6.0%} "
            f"{median(s.core(s.wrk_cpu_s) for s in own):5.0%} "
            f"{f'{median(redis):.0%}' if redis else '-':>5} "
            f"{median(s.core(s.other_cpu_s) for s in own):5.0%}  {split}"
        )
    print(
        "\nus/req = server CPU per request, all its processes; server, wrk, redis = CPU used "
        "during the measurement, in shares of one core; other = the rest of the machine's\n"
        "busy CPU then (other processes, interrupts; near 0% on a quiet machine); per worker = "
        "each worker's share"
    )
    n = args.workers
    goal = SCALING_TARGET * n
    pinned_one, pinned_n, free_one, free_n = names

    def ratio(top: str, bottom: str, key: str) -> float:
        if key == "rps":
            return median(r[top].result.rps / r[bottom].result.rps for r in rounds)
        return median(r[top].server_us / r[bottom].server_us for r in rounds)

    pinned = ratio(pinned_n, pinned_one, "rps")
    free = ratio(free_n, free_one, "rps")
    cost = ratio(pinned_n, pinned_one, "cpu")
    print(
        f"\n{n} workers / 1 worker, req/s (goal >= {goal:.1f}):\n"
        f"  pinned ({pinned_n} vs {pinned_one}): {pinned:.2f} "
        f"{'met' if pinned >= goal else 'missed'}\n"
        f"  nothing pinned, same sharing for both: {free:.2f} "
        f"{'met' if free >= goal else 'missed'}\n"
        f"server CPU per request, {n} workers / 1 worker (pinned layouts): {cost:.2f} "
        f"(1.00: more processes cost nothing more per request)\n"
        f"projection, not a measurement: {n} workers on {n} cores of their own (wrk and Redis "
        f"elsewhere) would give about {n / cost:.2f} x one worker"
    )
    for name in (pinned_n, free_n):
        shares = [max(s.worker_cpu_s) / s.server_cpu_s for r in rounds for s in [r[name]]]
        if median(shares) > UNEVEN:
            print(
                f"uneven: in '{name}' the busiest worker did {median(shares):.0%} of the "
                "server's work (uvicorn's workers share one listening socket, and wrk opens "
                "its connections at once: the kernel hands them to whichever worker accepts "
                "first, and a connection stays with its worker)"
            )
    if (os.cpu_count() or 1) <= n:
        print(
            f"this machine has {os.cpu_count()} cpus: wrk and Redis took the shares shown "
            f"above from the {n} workers' cores, so no layout here gives the workers {n} "
            "cores of their own"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="workers of the second server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--local-cache", choices=["on", "off"], default="on")
    parser.add_argument("--redis-url", help="use this Redis (its CPU is not measured)")
    args = parser.parse_args()
    if min(args.rounds, args.duration, args.wrk_threads) < 1 or args.workers < 2:
        parser.error("--workers must be at least 2, the others at least 1")
    if args.workers > (os.cpu_count() or 1):
        parser.error(f"--workers above this machine's {os.cpu_count()} cpus")
    return args


def main() -> int:
    args = parse_args()
    run.check_tools(pin=True)
    workdir = Path(tempfile.mkdtemp(prefix="bastion-scaling-"))
    redis: subprocess.Popen[bytes] | None = None
    servers: dict[int, Server] = {}
    try:
        if args.redis_url:
            redis_url = args.redis_url
        else:
            redis, redis_url = run.start_redis(workdir, run.Pinning(None, None))
        for workers in (1, args.workers):
            servers[workers] = start(
                workdir / f"w{workers}", redis_url, workers, args.local_cache, args.connections
            )
        plan = layouts(args.workers)
        rounds: list[dict[str, Sample]] = []
        for r in range(args.rounds):
            order = plan[r % len(plan) :] + plan[: r % len(plan)]
            rounds.append(
                {
                    layout.name: measure(
                        layout,
                        servers[layout.workers],
                        redis.pid if redis else None,
                        duration=args.duration,
                        connections=args.connections,
                        threads=args.wrk_threads,
                    )
                    for layout in order
                }
            )
        report(args, rounds, [layout.name for layout in plan])
    finally:
        for server in servers.values():
            run.stop(server.process)
            if args.redis_url:  # the server's prefix is bench-<its port>
                run.forget(args.redis_url, f"bench-{server.base.rpartition(':')[2]}")
        if redis is not None:
            run.stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
