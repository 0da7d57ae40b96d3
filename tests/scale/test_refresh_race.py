"""One refresh token sent to two processes at the same instant, 100 times over.

Each race has a session of its own (made by a password grant beforehand). One thread per
process sends the refresh request on a connection opened beforehand, holding back the last
byte of the body until both threads reach a barrier, so both servers start on the token at
once. Whatever the two answers are, the token was used twice, so the session must be dead
afterwards: its access token refused, and any token the race handed out useless. A race
that leaves anything usable is counted, and the count must be 0. (It was 11 to 77 of 200
in runs on standalone Redis and on Cluster when spending a token was a ``pop`` followed,
a round trip later, by its spent marker; at that rate 100 races, half the suite time,
expect 5 to 38 survivors.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from urllib.parse import urlencode

import httpx

from tests.live import LiveServer
from tests.scale.conftest import Pair, client, grant

RACES = 100
FORM = "application/x-www-form-urlencoded"
USERS = ("alice", "carol")  # the users ``pair`` creates


def refresh(api: httpx.Client, refresh_token: str) -> httpx.Response:
    return api.post(
        "/api/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def still_usable(api: httpx.Client, tokens: dict[str, str]) -> list[str]:
    """Which of ``tokens`` still work; each refresh token is tried, which spends it."""
    usable = []
    me = api.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    if me.status_code != 401:
        usable.append(f"access token ({me.status_code})")
    if "refresh_token" in tokens and refresh(api, tokens["refresh_token"]).status_code != 400:
        usable.append("refresh token")
    return usable


def password_grants(pair: Pair, count: int) -> list[dict[str, str]]:
    """``count`` sessions, made on both processes by both users at once: one grant per user
    at a time, as more would meet the account back-off (``BASTION_LOGIN_MAX_FAILURES=2``
    counts each attempt in flight as a failure until it succeeds)."""

    def grants_of(user: str) -> list[httpx.Response]:
        return [grant((pair.a, pair.b)[i % 2], user) for i in range(count // len(USERS))]

    with ThreadPoolExecutor(len(USERS)) as pool:
        granted = [g for made in pool.map(grants_of, USERS) for g in made]
    assert [g.status_code for g in granted] == [200] * count
    return [g.json() for g in granted]


def refresh_at(api: httpx.Client, token: str, start: threading.Barrier) -> httpx.Response:
    """A refresh whose server gets the headers and all of the body but its last byte at
    once, and that byte when every racer has reached ``start``: the race starts with
    one-byte writes, not with whole requests built and sent in turn."""
    body = urlencode({"grant_type": "refresh_token", "refresh_token": token}).encode()

    def held_back_last_byte() -> Iterator[bytes]:
        yield body[:-1]
        start.wait(timeout=10)
        yield body[-1:]

    return api.post(
        "/api/token",
        content=held_back_last_byte(),
        headers={"Content-Type": FORM, "Content-Length": str(len(body))},
    )


@contextmanager
def racers(servers: tuple[LiveServer, LiveServer]) -> Iterator[list[httpx.Client]]:
    """One client per server, its connection opened beforehand so a race starts at once."""
    with ExitStack() as stack:
        clients = [stack.enter_context(client(server)) for server in servers]
        for api in clients:
            assert api.get("/healthz").status_code == 200
        yield clients


def test_one_refresh_token_sent_to_both_processes_at_once_never_keeps_the_session(
    pair: Pair,
) -> None:
    sessions = password_grants(pair, RACES)
    survivors: list[str] = []
    start = threading.Barrier(2)

    with racers((pair.a, pair.b)) as apis, ThreadPoolExecutor(len(apis)) as pool:
        for race, tokens in enumerate(sessions):
            sent = [pool.submit(refresh_at, api, tokens["refresh_token"], start) for api in apis]
            answers = [future.result() for future in sent]
            assert all(a.status_code in (200, 400) for a in answers), [a.text for a in answers]
            issued = [a.json() for a in answers if a.status_code == 200]
            usable = still_usable(apis[0], {"access_token": tokens["access_token"]})
            for successor in issued:
                usable += still_usable(apis[1], successor)
            if usable:
                survivors.append(f"race {race}: {len(issued)} refreshed, usable: {usable}")

    assert survivors == [], f"{len(survivors)} of {RACES} races kept the session alive"
