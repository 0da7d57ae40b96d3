"""Time ``POST /password/forgot`` for an address that has an account and one that has none.

    .venv/bin/python bench/forgot_timing.py [-n 400] [--api]

The reference app runs in this process (SQLite and mail files in a temporary folder, limits
raised so that no request is throttled) and is called through httpx's ASGI transport, so
the numbers are the app's own time to answer, without a network. Requests for the two
addresses alternate, after a warm-up; it prints the median, the quartiles and the 95th
percentile of each, and the difference of the medians. A response waits for none of the
account's work (lookup, token, mail): that runs in a task of its own once the answer is
out, so the two should be the same within noise. Never run as a test (no timing
assertions anywhere in the suite).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bastion.settings import Settings
from bastion.webapp.app import create_app

KNOWN = "alice@example.com"
UNKNOWN = "nobody@example.com"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def summary(samples: list[float]) -> str:
    quartiles = statistics.quantiles(samples, n=4)
    p95 = statistics.quantiles(samples, n=20)[-1]
    return (
        f"median {statistics.median(samples):.3f} ms (quartiles {quartiles[0]:.3f}-"
        f"{quartiles[2]:.3f}, p95 {p95:.3f})"
    )


async def run(rounds: int, api: bool, folder: Path) -> None:
    settings = Settings(
        env="test",
        data_dir=folder / "data",
        email_backend="file",
        password_reset_ip_limit=f"{10 * rounds}/hour",
        email_link_limit=f"{10 * rounds}/hour",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = app.state.bastion.services
        hashed = await services.passwords.hash_async("a password for the benchmark 1")
        await services.users.create_user("alice", hashed, email=KNOWN)
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            token = CSRF.search((await client.get("/password/forgot")).text)
            assert token is not None
            form = {"csrf_token": token.group(1)}

            async def ask(email: str) -> float:
                started = time.perf_counter()
                if api:
                    response = await client.post("/api/password/forgot", json={"email": email})
                else:
                    response = await client.post(
                        "/password/forgot",
                        data={**form, "email": email},
                        headers={"Origin": "http://testserver"},
                    )
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code in (200, 202), response.status_code
                return elapsed

            for _ in range(20):  # warm-up
                await ask(KNOWN)
                await ask(UNKNOWN)
            known: list[float] = []
            unknown: list[float] = []
            for number in range(rounds):
                first, second = (KNOWN, UNKNOWN) if number % 2 == 0 else (UNKNOWN, KNOWN)
                for email in (first, second):
                    (known if email == KNOWN else unknown).append(await ask(email))
                # Let the work started after the answers finish before the next pair, so
                # neither address pays for the other's mail.
                await services.recovery.settle()
        await services.mailer.wait_idle(30)
    route = "POST /api/password/forgot" if api else "POST /password/forgot"
    print(f"{route}, {rounds} requests per address, alternating")
    print(f"  known address:   {summary(known)}")
    print(f"  unknown address: {summary(unknown)}")
    diff = statistics.median(known) - statistics.median(unknown)
    print(f"  difference of the medians: {diff:+.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400, help="requests per address (default 400)")
    parser.add_argument("--api", action="store_true", help="the JSON route instead of the page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(args.n, args.api, Path(folder)))


if __name__ == "__main__":
    main()
