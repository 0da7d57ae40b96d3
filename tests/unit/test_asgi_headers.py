"""bastion.asgi.headers: security headers on every response and a per-request CSP nonce."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from bastion.asgi.headers import (
    CSP_NONCE_KEY,
    SecurityHeadersMiddleware,
    content_security_policy,
)


async def page(request: Request) -> Response:
    return PlainTextResponse(request.scope[CSP_NONCE_KEY])


async def cached(request: Request) -> Response:
    return PlainTextResponse("cached", headers={"Cache-Control": "public, max-age=60"})


async def own_policy(request: Request) -> Response:
    return PlainTextResponse(
        "own",
        headers={"Content-Security-Policy": "default-src 'none'", "Referrer-Policy": "no-referrer"},
    )


async def boom(request: Request) -> Response:
    return PlainTextResponse("nope", status_code=404)


def app(*, hsts: bool = False) -> SecurityHeadersMiddleware:
    inner = Starlette(
        routes=[
            Route("/", page),
            Route("/cached", cached),
            Route("/own", own_policy),
            Route("/missing", boom),
        ]
    )
    return SecurityHeadersMiddleware(inner, hsts=hsts)


async def get(path: str, *, hsts: bool = False) -> httpx.Response:
    transport = httpx.ASGITransport(app=app(hsts=hsts))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        return await http.get(path)


async def test_basic_security_headers() -> None:
    response = await get("/")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] in ("same-origin", "no-referrer", "strict-origin")
    assert response.headers["x-frame-options"] == "DENY"


async def test_csp_denies_framing_and_inline_code() -> None:
    response = await get("/")
    csp = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert "*" not in csp


async def test_csp_nonce_is_the_one_in_scope_and_differs_per_request() -> None:
    nonces = set()
    for _ in range(5):
        response = await get("/")
        csp = response.headers["content-security-policy"]
        nonce = response.text
        assert f"script-src 'self' 'nonce-{nonce}'" in csp
        assert f"style-src 'self' 'nonce-{nonce}'" in csp
        assert len(nonce) >= 22  # 128 bits
        nonces.add(nonce)
    assert len(nonces) == 5


def test_content_security_policy_embeds_the_nonce() -> None:
    assert "'nonce-abc'" in content_security_policy("abc")


async def test_cache_control_no_store_when_the_app_chose_none() -> None:
    assert (await get("/")).headers["cache-control"] == "no-store"
    assert (await get("/missing")).headers["cache-control"] == "no-store"


async def test_app_cache_control_is_kept() -> None:
    response = await get("/cached")
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]


async def test_app_own_policies_are_kept_not_duplicated() -> None:
    response = await get("/own")
    assert response.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert response.headers.get_list("referrer-policy") == ["no-referrer"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_no_hsts_unless_asked() -> None:
    assert "strict-transport-security" not in (await get("/")).headers


@pytest.mark.parametrize("path", ["/", "/missing"])
async def test_hsts_when_enabled(path: str) -> None:
    hsts = (await get(path, hsts=True)).headers["strict-transport-security"]
    max_age = re.search(r"max-age=(\d+)", hsts)
    assert max_age
    assert int(max_age.group(1)) >= 31_536_000
    assert "includesubdomains" in hsts.lower()


async def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        await send({"type": "lifespan.startup.complete"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "lifespan"}
    await SecurityHeadersMiddleware(inner)(scope, receive, send)
    assert seen == [{"type": "lifespan"}]
    assert sent == [{"type": "lifespan.startup.complete"}]
