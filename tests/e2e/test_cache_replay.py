"""A cache hit answers with the very bytes FastAPI rendered for the miss: the body, the
status and the headers are the same (only ``max-age`` counts down), whatever shapes the
answer (response models and their options, the route's status code, headers set by a
dependency); a function cached under two routes answers each through its own model."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import httpx
from fastapi import Depends, Response
from pydantic import BaseModel

from bastion.fastapi import CurrentUser, cached
from tests.e2e.conftest import Site

RUNS: Counter[str] = Counter()


class Card(BaseModel):
    username: str
    nickname: str | None = None
    balance: Decimal
    at: datetime


def stamped(response: Response) -> None:
    # A dependency runs on every request, hit or miss: its header is on both answers.
    response.headers["X-Stamp"] = "dependency"


@cached(ttl=60, scope="user")
async def card(user: CurrentUser, _: Annotated[None, Depends(stamped)]) -> dict[str, Any]:
    RUNS["card"] += 1
    return {
        "username": user.username,
        "nickname": None,
        "balance": Decimal("12.50"),
        "at": datetime(2026, 12, 3, 22, 0, tzinfo=UTC),
        "secret": "not in the model",
        "n": RUNS["card"],
    }


@cached(ttl=60, scope="user")
async def created(user: CurrentUser) -> dict[str, Any]:
    RUNS["created"] += 1
    return {"n": RUNS["created"], "text": "é ✓"}


async def sign_in(site: Site, client: httpx.AsyncClient) -> dict[str, str]:
    await site.create_user("alice")
    from tests.e2e.conftest import PASSWORD

    grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    token = (await client.post("/api/token", data=grant)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def same_answer(first: httpx.Response, second: httpx.Response) -> None:
    assert second.status_code == first.status_code
    assert second.content == first.content

    def headers(response: httpx.Response) -> list[tuple[str, str]]:
        # The policy's nonce is new on every answer, and max-age counts down.
        return [
            (k, v.split("max-age=")[0] if k == "cache-control" else v)
            for k, v in response.headers.multi_items()
            if k != "content-security-policy"
        ]

    assert headers(second) == headers(first)


async def test_a_hit_is_the_miss_byte_for_byte_through_a_response_model(
    site: Site, client: httpx.AsyncClient
) -> None:
    RUNS.clear()
    site.app.get("/r/card", response_model=Card, response_model_exclude_none=True)(card)
    site.app.get("/r/card-raw")(card)
    auth = await sign_in(site, client)

    first, second = [await client.get("/r/card", headers=auth) for _ in range(2)]
    assert RUNS["card"] == 1
    same_answer(first, second)
    assert first.json() == {"username": "alice", "balance": "12.50", "at": "2026-12-03T22:00:00Z"}
    assert second.headers["x-stamp"] == "dependency"

    # The same function (so the same entry) under a route without the model: its own
    # rendering, from the stored value, never the other route's bytes.
    raw = await client.get("/r/card-raw", headers=auth)
    assert RUNS["card"] == 1
    assert raw.json()["secret"] == "not in the model"
    assert raw.json()["n"] == 1
    same_answer(raw, await client.get("/r/card-raw", headers=auth))
    same_answer(first, await client.get("/r/card", headers=auth))


async def test_a_hit_keeps_the_routes_status_code_and_non_ascii_text(
    site: Site, client: httpx.AsyncClient
) -> None:
    RUNS.clear()
    site.app.get("/r/created", status_code=201)(created)
    auth = await sign_in(site, client)

    first, second = [await client.get("/r/created", headers=auth) for _ in range(2)]
    assert RUNS["created"] == 1
    same_answer(first, second)
    assert second.status_code == 201
    assert second.json() == {"n": 1, "text": "é ✓"}


async def test_the_reference_profile_hit_is_the_miss_byte_for_byte(
    site: Site, client: httpx.AsyncClient
) -> None:
    auth = await sign_in(site, client)
    first, second = [await client.get("/api/profile", headers=auth) for _ in range(2)]
    same_answer(first, second)
