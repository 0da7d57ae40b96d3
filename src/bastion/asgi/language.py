"""The language of each request (contract 6.5), set before any route or error page runs.

``?lang=`` wins and is kept in the ``bastion_lang`` cookie; then that cookie, the signed-in
user's own choice (kept in the session), ``Accept-Language`` and the site's default. HTML
answers say which in ``Content-Language`` and vary on what chose it. The browser's UTC
offset (``bastion_tz``, set by a small script) places times in the reader's zone.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.asgi.sessions import STATE_KEY, SessionState
from bastion.i18n.context import set_language
from bastion.i18n.formatting import parse_utc_offset
from bastion.i18n.languages import LANGUAGE_COOKIE, choose_language, normalize_language

TZ_COOKIE = "bastion_tz"
LANGUAGE_COOKIE_MAX_AGE = 365 * 86_400
LANGUAGE_KEY = "bastion.language"


def request_language(scope: Scope) -> str | None:
    """The language the middleware chose for this request (None outside it)."""
    value = scope.get(LANGUAGE_KEY)
    return value if isinstance(value, str) else None


def _query_language(query_string: bytes) -> str | None:
    for pair in query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"lang":
            return normalize_language(value.decode("latin-1"))
    return None


def _cookies(scope: Scope) -> dict[str, str]:
    """The language and time-zone cookies of the request (the only ones read here: a
    plain scan, cheaper than parsing every cookie on every request)."""
    return _cookie_values([value for name, value in scope.get("headers", ()) if name == b"cookie"])


def _cookie_values(lines: list[bytes]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in lines:
        if b"bastion_" not in value:
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, item = part.strip().partition("=")
            if key in (LANGUAGE_COOKIE, TZ_COOKIE):
                found.setdefault(key, item.strip('"'))
    return found


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def choose_for_scope(scope: Scope, *, default: str, user_choice: str | None = None) -> str:
    """The language of a request from its query, cookies and headers (contract 6.5)."""
    return choose_language(
        query=_query_language(scope.get("query_string", b"")),
        cookie=_cookies(scope).get(LANGUAGE_COOKIE),
        user_choice=user_choice,
        accept_language=_header(scope, b"accept-language"),
        default=default,
    )


class LanguageMiddleware:
    """Chooses the request's language; runs inside the session middleware."""

    def __init__(self, app: ASGIApp, *, default: str) -> None:
        self.app = app
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass over the request's headers for what choose_for_scope() reads in two.
        cookie_lines: list[bytes] = []
        accept_language: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                cookie_lines.append(value)
            elif name == b"accept-language" and accept_language is None:
                accept_language = value.decode("latin-1")
        cookies = _cookie_values(cookie_lines) if cookie_lines else {}
        state = scope.get(STATE_KEY)
        session = state.session if isinstance(state, SessionState) else None
        query_string = scope.get("query_string", b"")
        asked = _query_language(query_string) if query_string else None
        language = choose_language(
            query=asked,
            cookie=cookies.get(LANGUAGE_COOKIE),
            user_choice=session.language if session is not None else None,
            accept_language=accept_language,
            default=self.default,
        )
        scope[LANGUAGE_KEY] = language
        set_language(language, parse_utc_offset(cookies.get(TZ_COOKIE)))
        if (
            asked is not None
            and asked != cookies.get(LANGUAGE_COOKIE)
            and isinstance(state, SessionState)
        ):
            state.other_cookies.append(
                state.cookie_header(LANGUAGE_COOKIE, asked, max_age=LANGUAGE_COOKIE_MAX_AGE)
            )

        async def send_with_language(message: Message) -> None:
            if message["type"] == "http.response.start" and _is_html(message):
                headers = MutableHeaders(scope=message)
                headers["Content-Language"] = language
                headers.add_vary_header("Accept-Language")
                headers.add_vary_header("Cookie")
            await send(message)

        await self.app(scope, receive, send_with_language)


def _is_html(message: Message) -> bool:
    """Whether a response's first ``Content-Type`` is HTML (as ``MutableHeaders.get``
    reads it, without building one for the JSON answers that are most responses)."""
    for name, value in message.get("headers", ()):
        if name == b"content-type":
            return bool(value.startswith(b"text/html"))
    return False
