"""LanguageMiddleware on raw ASGI messages: which answers say their language and vary."""

from __future__ import annotations

import pytest
from starlette.types import Message, Receive, Scope, Send

from bastion.asgi.language import LANGUAGE_KEY, LanguageMiddleware


def _app(content_type: bytes | None) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"2")]
        if content_type is not None:
            headers.append((b"content-type", content_type))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _call(
    content_type: bytes | None, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> tuple[Scope, dict[bytes, list[bytes]]]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "path": "/", "query_string": query, "headers": headers}
    await LanguageMiddleware(_app(content_type), default="en")(scope, receive, send)  # type: ignore[arg-type]
    found: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        found.setdefault(name, []).append(value)
    return scope, found


@pytest.mark.parametrize("content_type", [b"text/html; charset=utf-8", b"text/html"])
async def test_an_html_answer_says_its_language_and_varies_on_what_chose_it(
    content_type: bytes,
) -> None:
    _, headers = await _call(content_type, [(b"accept-language", b"zh-CN,en;q=0.5")])
    assert headers[b"content-language"] == [b"zh-CN"]
    assert headers[b"vary"] == [b"Accept-Language, Cookie"]


@pytest.mark.parametrize("content_type", [b"application/json", None, b"text/plain"])
async def test_other_answers_get_no_language_headers(content_type: bytes | None) -> None:
    scope, headers = await _call(content_type, [(b"accept-language", b"zh-CN")])
    assert scope[LANGUAGE_KEY] == "zh-CN"
    assert b"content-language" not in headers
    assert b"vary" not in headers


async def test_the_first_accept_language_and_cookie_of_each_name_count() -> None:
    scope, _ = await _call(
        b"text/html",
        [
            (b"accept-language", b"en"),
            (b"accept-language", b"zh-CN"),
            (b"cookie", b"a=1"),
            (b"cookie", b"bastion_lang=zh-CN; bastion_tz=60"),
            (b"cookie", b"bastion_lang=en"),
        ],
    )
    assert scope[LANGUAGE_KEY] == "zh-CN"  # the cookie, from the second Cookie line
    scope, _ = await _call(
        b"text/html", [(b"accept-language", b"en"), (b"accept-language", b"zh-CN")]
    )
    assert scope[LANGUAGE_KEY] == "en"


async def test_the_query_beats_the_cookie() -> None:
    scope, _ = await _call(b"text/html", [(b"cookie", b"bastion_lang=en")], query=b"x=1&lang=zh")
    assert scope[LANGUAGE_KEY] == "zh-CN"
