"""Request size limits: 413 before a too-large body is parsed, 431 for oversized headers."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.asgi.sessions import ErrorResponder


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` on the paths ``applies`` selects: by
    ``Content-Length`` before reading, and by counting for chunked bodies."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        applies: Callable[[str], bool],
        on_error: ErrorResponder,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.applies = applies
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None:
            # isdigit() alone accepts "²" and other digits int() refuses; int() also refuses
            # more than 4300 digits, so compare the significant digits' count first.
            if not (length.isascii() and length.isdigit()):
                await self._refuse(scope, receive, send, 400, "invalid Content-Length")
                return
            digits = length.lstrip("0")
            if len(digits) > len(str(self.max_bytes)) or int(digits or "0") > self.max_bytes:
                await self._refuse(scope, receive, send, 413, "request body too large")
                return
        seen = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # Frameworks may turn the read error into their own 400; the answer is 413.
            if exceeded and not started:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:  # noqa: SIM105 - cheaper than contextlib.suppress, on every request
            await self.app(scope, counted_receive, guarded_send)
        except _TooLarge:
            pass
        if exceeded and not started:
            await self._refuse(scope, receive, send, 413, "request body too large")

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str
    ) -> None:
        response = await self.on_error(scope, status, message)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> str | None:
    """The first ``Content-Length`` of the request, as ``Headers.get`` reads it."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return str(value.decode("latin-1"))
    return None


class HeaderLimitMiddleware:
    """Answers 431 when a request's headers add up to more than ``max_bytes``.

    Servers differ here (uvicorn's httptools parser accepts headers of any size), so the
    app enforces it itself, before any cookie or token is looked at.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, on_error: ErrorResponder) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope["headers"])
            if size > self.max_bytes:
                response = await self.on_error(scope, 431, "request headers too large")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
