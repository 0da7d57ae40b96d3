"""CSRF enforcement for unsafe requests that a browser's cookies could authenticate."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.asgi.sessions import ErrorResponder, session_state
from bastion.csrf import SAFE_METHODS, check_request
from bastion.exceptions import CSRFError
from bastion.recovery import redact_token_paths

log = logging.getLogger("bastion.security")
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
FORM_TYPE = "application/x-www-form-urlencoded"
# The token field is read from urlencoded bodies up to this size; larger forms must send
# the X-CSRF-Token header instead (the body limit middleware caps auth routes well below).
MAX_FORM_BYTES = 1_048_576


class CSRFMiddleware:
    """Checks every unsafe request except the bearer-only ones.

    One rule: a request is exempt only when it carries a Bearer ``Authorization`` header
    and none of Bastion's cookies (session or signed pre-session). A cross-site page
    cannot attach a Bearer header without a CORS preflight, and without the cookies
    nothing a browser sends by itself authenticates the request. A request that carries
    one of the cookies is checked whatever else it carries: routes such as ``/login``,
    ``/logout`` and the pages read the cookie directly, so a junk Bearer header must not
    switch their protection off. Other schemes (Basic, ...) never exempt: browsers attach
    cached credentials of those by themselves. Everything else is checked, whether or not
    it is signed in: that is what protects the login form.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_origins: Sequence[str],
        on_error: ErrorResponder,
        exempt: Callable[[str], bool] = lambda path: False,
        unhandled: Callable[[Scope], bool] = lambda scope: False,
    ) -> None:
        self.app = app
        self.trusted_origins = list(trusted_origins)
        self.on_error = on_error
        self.exempt = exempt
        # Requests no endpoint would run for (the router answers 404 or 405) change nothing,
        # so there is nothing to forge: they go on and get "405 Method Not Allowed" rather
        # than a CSRF 403 that would misstate why they failed.
        self.unhandled = unhandled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or self.exempt(scope["path"])
            or self.unhandled(scope)
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        state = session_state(scope)
        if _is_bearer(headers.get("authorization")) and not state.carries_cookie:
            await self.app(scope, receive, send)
            return
        token = headers.get(HEADER)
        body: list[Message] = []
        if token is None and _media_type(headers) == FORM_TYPE:
            token, body = await _token_from_form(receive)
            if token is None and body and body[-1].get("too_large"):
                response = await self.on_error(scope, 413, "request body too large")
                await response(scope, receive, send)
                return
        try:
            check_request(
                method=scope["method"],
                secure=scope.get("scheme") == "https",
                host=headers.get("host", ""),
                origin=headers.get("origin"),
                referer=headers.get("referer"),
                sec_fetch_site=headers.get("sec-fetch-site"),
                token=token,
                secret=state.csrf_secret,
                trusted_origins=self.trusted_origins,
            )
        except CSRFError as error:
            client = scope.get("client")
            log.warning(
                "csrf refused",
                extra={
                    "event": "csrf.refused",
                    "reason": error.reason,
                    "path": redact_token_paths(scope["path"]),
                    "ip": client[0] if client else None,
                },
            )
            response = await self.on_error(scope, 403, f"CSRF check failed: {error.reason}")
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive) if body else receive, send)


def _is_bearer(authorization: str | None) -> bool:
    """Whether the request carries a Bearer credential. Only a script can attach one, and
    only same-origin or after a CORS preflight; browsers attach cached Basic, Digest and
    Negotiate credentials to cross-site form posts by themselves, so those never count."""
    if authorization is None:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and bool(credentials.strip())


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _token_from_form(receive: Receive) -> tuple[str | None, list[Message]]:
    """Read the whole (bounded) body, find ``csrf_token``, keep the messages to replay."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            messages.append({"type": "http.request", "too_large": True})
            return None, messages
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        fields = parse_qsl(b"".join(chunks).decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return None, messages
    values = [value for name, value in fields if name == FORM_FIELD]
    return (values[0] if len(values) == 1 else None), messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
