"""bastion.asgi.limits: 413 by Content-Length before reading, and by counting streamed bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Form
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.asgi.limits import BodyLimitMiddleware

LIMIT = 1024


async def on_error(scope: Scope, status: int, message: str) -> ASGIApp:
    return PlainTextResponse(f"refused: {message}", status_code=status)


def limited(app: ASGIApp, *, prefix: str = "/auth") -> BodyLimitMiddleware:
    return BodyLimitMiddleware(
        app,
        max_bytes=LIMIT,
        applies=lambda path: path.startswith(prefix),
        on_error=on_error,
    )


class Recorder:
    """A plain ASGI app that reads the whole body and answers with its length."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        more = True
        while more:
            message = await receive()
            self.body += message.get("body", b"")
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(self.body)).encode()})


async def call(
    app: ASGIApp,
    *,
    path: str = "/auth/login",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: list[bytes] | None = None,
) -> tuple[int, bytes, int]:
    """Drive ``app`` by hand; returns (status, body, how many chunks the app received)."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks or []) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    taken = 0

    async def receive() -> Message:
        nonlocal taken
        if pending:
            taken += 1
            return pending.pop(0)
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    await app(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return starts[0]["status"], body, taken


# ---- Content-Length ----------------------------------------------------------------------


async def test_content_length_over_limit_is_refused_before_the_app_reads() -> None:
    inner = Recorder()
    status, body, taken = await call(
        limited(inner),
        headers=[(b"content-length", str(LIMIT + 1).encode())],
        chunks=[b"x" * (LIMIT + 1)],
    )
    assert status == 413
    assert body == b"refused: request body too large"
    assert not inner.called
    assert taken == 0


async def test_content_length_at_the_limit_passes_untouched() -> None:
    inner = Recorder()
    payload = bytes(range(256)) * (LIMIT // 256)
    status, body, _ = await call(
        limited(inner),
        headers=[(b"content-length", str(LIMIT).encode())],
        chunks=[payload[:100], payload[100:]],
    )
    assert status == 200
    assert inner.body == payload
    assert body == str(LIMIT).encode()


@pytest.mark.parametrize(
    "value",
    [b"abc", b"-1", b"+5", b"1e3", b"0x10", b" 12", b"12 ", b"1.0", b"", b"\xb2", b"\xb9\xb2"],
)
async def test_non_numeric_content_length_is_400(value: bytes) -> None:
    inner = Recorder()
    status, body, _ = await call(limited(inner), headers=[(b"content-length", value)])
    assert status == 400
    assert body == b"refused: invalid Content-Length"
    assert not inner.called


async def test_enormous_content_length_is_413_not_a_crash() -> None:
    # int() refuses more than 4300 digits; that must not become a 500.
    inner = Recorder()
    status, _, _ = await call(limited(inner), headers=[(b"content-length", b"9" * 5000)])
    assert status == 413
    assert not inner.called


async def test_content_length_with_leading_zeros_counts_its_value() -> None:
    inner = Recorder()
    status, _, _ = await call(
        limited(inner), headers=[(b"content-length", b"0" * 5000 + b"5")], chunks=[b"hello"]
    )
    assert status == 200
    assert inner.body == b"hello"


# ---- streamed bodies ---------------------------------------------------------------------


async def test_streamed_body_over_limit_is_413() -> None:
    inner = Recorder()
    status, body, taken = await call(limited(inner), chunks=[b"x" * 600, b"x" * 600, b"x" * 600])
    assert status == 413
    assert body == b"refused: request body too large"
    assert taken == 2, "reading stopped at the first chunk over the limit"


async def test_streamed_body_under_limit_passes() -> None:
    inner = Recorder()
    status, body, _ = await call(limited(inner), chunks=[b"a" * 500, b"b" * 524])
    assert status == 200
    assert body == b"1024"
    assert inner.body == b"a" * 500 + b"b" * 524


async def test_lying_content_length_is_still_counted() -> None:
    inner = Recorder()
    status, _, _ = await call(
        limited(inner), headers=[(b"content-length", b"10")], chunks=[b"x" * (LIMIT + 1)]
    )
    assert status == 413


async def test_app_that_turns_the_read_error_into_its_own_400_still_gives_413() -> None:
    async def swallowing(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while (await receive()).get("more_body"):
                pass
        except Exception:
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"bad body"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    status, body, _ = await call(limited(swallowing), chunks=[b"x" * LIMIT, b"x"])
    assert status == 413
    assert body == b"refused: request body too large"


async def test_starlette_app_error_handling_is_413_not_500() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(routes=[Route("/auth/echo", echo, methods=["POST"])])
    status, _, _ = await call(limited(app), path="/auth/echo", chunks=[b"x" * 700] * 2)
    assert status == 413


# ---- the same through FastAPI and a real HTTP client -------------------------------------


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.post("/auth/form")
    async def form(
        username: Annotated[str, Form()], note: Annotated[str, Form()] = ""
    ) -> dict[str, Any]:
        return {"username": username, "note_length": len(note)}

    @app.post("/public/form")
    async def public_form(note: Annotated[str, Form()]) -> dict[str, int]:
        return {"note_length": len(note)}

    return app


async def chunked(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_chunked_form_over_limit_is_413_through_fastapi() -> None:
    # FastAPI turns any error while reading a Form into its own 400; the answer is 413.
    async with client(limited(fastapi_app())) as http:
        response = await http.post(
            "/auth/form",
            content=chunked(b"username=ann&note=", b"x" * 700, b"x" * 700),
            headers=FORM,
        )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.text == "refused: request body too large"


async def test_form_with_content_length_over_limit_is_413_through_fastapi() -> None:
    async with client(limited(fastapi_app())) as http:
        response = await http.post("/auth/form", data={"username": "ann", "note": "x" * LIMIT})
    assert response.status_code == 413


async def test_form_under_limit_reaches_fastapi_intact() -> None:
    async with client(limited(fastapi_app())) as http:
        response = await http.post(
            "/auth/form", content=chunked(b"username=ann", b"&note=", b"y" * 500), headers=FORM
        )
    assert response.status_code == 200
    assert response.json() == {"username": "ann", "note_length": 500}


async def test_paths_not_selected_are_not_limited() -> None:
    async with client(limited(fastapi_app())) as http:
        response = await http.post(
            "/public/form", content=chunked(b"note=", b"z" * 5000), headers=FORM
        )
        assert response.status_code == 200
        assert response.json() == {"note_length": 5000}
        response = await http.post("/public/form", data={"note": "z" * 5000})
        assert response.status_code == 200


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        return None

    middleware = limited(app, prefix="/")
    await middleware({"type": "websocket", "path": "/auth/ws", "headers": []}, receive, send)
    await middleware({"type": "lifespan"}, receive, send)
    assert seen == ["websocket", "lifespan"]
