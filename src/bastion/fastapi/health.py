"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bastion.exceptions import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    """200 when the database and every store answer; else 503 naming what is down."""
    bastion = request.app.state.bastion
    try:
        services = bastion.services
    except StoreUnavailable:
        return JSONResponse({"status": "starting"}, status_code=503)

    async def probe(check: object) -> str:
        try:
            await check()  # type: ignore[operator]
        except StoreUnavailable:
            return "down"
        return "up"

    checks = {"database": services.users.ping}
    # Redis is probed through a store that lives there (any one: they share the client),
    # so rate limits alone in Redis are checked too, and an unused Redis URL is not.
    on_redis = [
        store
        for concern, store in (
            ("session", services.session_store),
            ("ratelimit", services.ratelimit_store),
            ("cache", services.cache_store),
        )
        if services.settings.store_kind(concern) == "redis"
    ]
    if on_redis:
        checks["redis"] = on_redis[0].ping
    results = await asyncio.gather(*(probe(check) for check in checks.values()))
    state = dict(zip(checks, results, strict=True))
    ok = all(value == "up" for value in state.values())
    body = {"status": "ready" if ok else "unavailable", **state}
    return JSONResponse(body, status_code=200 if ok else 503)
