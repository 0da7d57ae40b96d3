"""How long the event loop stalls while password hashes run in Bastion's hashing pool.

    .venv/bin/python bench/event_loop_gap.py [--hashes 4] [--rounds 5] [--memory-cost KiB]

A ticker task wakes every ``--tick-ms`` while ``--hashes`` concurrent ``hash_async`` calls
run; it prints, per round, the longest gap between two ticks and the ticks counted against
those a free loop would have made. Hashing on the loop would show as a gap of a whole hash
(about 200 ms at the default 64 MiB). The tests assert the mechanism instead (hashing runs
in the pool's threads while the loop serves other tasks); this measures its effect, which
depends on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time

from bastion.passwords import Passwords


async def one_round(passwords: Passwords, hashes: int, tick: float) -> tuple[float, float]:
    """The longest gap between ticks (ms) and the share of expected ticks that happened."""
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(tick)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    await asyncio.gather(*(passwords.hash_async(f"password {i}") for i in range(hashes)))
    elapsed = time.perf_counter() - started
    done.set()
    await ticking
    longest = max(later - earlier for earlier, later in itertools.pairwise(ticks))
    return longest * 1000, len(ticks) / max(1.0, elapsed / tick)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hashes", type=int, default=4, help="concurrent hashes per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tick-ms", type=float, default=10.0)
    parser.add_argument("--memory-cost", type=int, default=65_536, help="KiB (default 64 MiB)")
    parser.add_argument("--time-cost", type=int, default=2)
    args = parser.parse_args()

    passwords = Passwords(memory_cost=args.memory_cost, time_cost=args.time_cost)
    await passwords.hash_async("warm-up")  # starts a pool thread, pays first allocations
    print(
        f"{args.hashes} concurrent hashes, m={passwords.memory_cost} KiB "
        f"t={passwords.time_cost}, {passwords.max_concurrency} hashing thread(s), "
        f"tick every {args.tick_ms:g} ms"
    )
    gaps = []
    for round_number in range(1, args.rounds + 1):
        gap, share = await one_round(passwords, args.hashes, args.tick_ms / 1000)
        gaps.append(gap)
        print(f"round {round_number}: longest gap {gap:.1f} ms, {share:.0%} of expected ticks")
    print(f"median longest gap {statistics.median(gaps):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
