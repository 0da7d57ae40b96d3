"""Time one password hash (and one verify) with Bastion's parameters; prints the medians.

    .venv/bin/python bench/hash_time.py [-n 31] [--memory-cost KiB] [--time-cost T]

Single-threaded, one hash at a time: this is the latency of one login, not the throughput.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable

from bastion.passwords import MIN_MEMORY_COST, MIN_PARALLELISM, MIN_TIME_COST, Passwords


def median_ms(action: Callable[[], object], n: int) -> tuple[float, float, float]:
    action()  # warm-up: first call pays for allocations and imports
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), min(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=31, help="hashes to time (default 31)")
    parser.add_argument("--memory-cost", type=int, default=MIN_MEMORY_COST, help="KiB")
    parser.add_argument("--time-cost", type=int, default=MIN_TIME_COST)
    parser.add_argument("--parallelism", type=int, default=MIN_PARALLELISM)
    args = parser.parse_args()

    passwords = Passwords(
        memory_cost=args.memory_cost, time_cost=args.time_cost, parallelism=args.parallelism
    )
    password = secrets.token_urlsafe(21)  # 28 characters, a typical long password
    stored = passwords.hash(password)
    hashed = median_ms(lambda: passwords.hash(password), args.n)
    verified = median_ms(lambda: passwords.verify(password, stored), args.n)
    print(
        f"argon2id m={passwords.memory_cost} KiB t={passwords.time_cost} "
        f"p={passwords.parallelism}, n={args.n}"
    )
    for name, (median, low, high) in (("hash", hashed), ("verify", verified)):
        print(f"{name:>6}: median {median:.1f} ms (min {low:.1f}, max {high:.1f})")


if __name__ == "__main__":
    main()
