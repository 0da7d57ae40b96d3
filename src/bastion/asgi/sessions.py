"""Session cookies: load the server-side session, and set or clear the cookie on the way out.

Two cookies, both HttpOnly, SameSite=Lax, Path=/, no Domain (``__Host-`` + Secure in
production):

* the session cookie carries the 256-bit session id; the store knows only its hash;
* the *pre-session* cookie carries a signed CSRF secret for visitors who are not signed in,
  so the login form itself is CSRF-protected without writing anything to the store for
  anonymous traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.csrf import new_csrf_secret
from bastion.exceptions import StoreUnavailable
from bastion.sessions import Session, SessionManager
from bastion.signing import BadSignature, Signer

STATE_KEY = "bastion"
log = logging.getLogger("bastion.security")

ErrorResponder = Callable[[Scope, int, str], Awaitable[ASGIApp]]


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool = False
    session_name: str = "bastion_session"
    presession_name: str = "bastion_pre"

    @classmethod
    def for_environment(cls, production: bool) -> CookiePolicy:
        if production:
            # __Host-: the browser refuses it unless Secure, Path=/ and no Domain, so a
            # sibling subdomain cannot plant or overwrite it.
            return cls(True, "__Host-bastion_session", "__Host-bastion_pre")
        return cls()

    def header(self, name: str, value: str, *, max_age: int | None) -> str:
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    def clear(self, name: str) -> str:
        return self.header(name, "", max_age=0) + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


@dataclass
class SessionState:
    """What the middleware learned about this request's session; routes change it through
    :meth:`begin` and :meth:`end`, and the middleware writes the cookies."""

    session: Session | None = None
    presession_secret: str | None = None
    # Whether the request carried any of Bastion's cookies (session or pre-session),
    # valid or not: such a request is one a browser could have sent by itself, so it
    # always needs a CSRF token (see bastion.asgi.csrf).
    carries_cookie: bool = False
    set_cookies: list[str] = field(default_factory=list)
    # Cookies that are not the session's (the language choice): sign-in and sign-out
    # replace the session's cookies, never these.
    other_cookies: list[str] = field(default_factory=list)
    _policy: CookiePolicy = field(default_factory=CookiePolicy)
    _signer: Signer | None = None

    @property
    def csrf_secret(self) -> str | None:
        if self.session is not None:
            return self.session.csrf_secret
        return self.presession_secret

    def ensure_csrf_secret(self) -> str:
        """The secret CSRF tokens are bound to; mints a pre-session for anonymous visitors."""
        secret = self.csrf_secret
        if secret is not None:
            return secret
        assert self._signer is not None
        secret = new_csrf_secret()
        self.presession_secret = secret
        signed = self._signer.sign(secret.encode())
        self.set_cookies.append(
            self._policy.header(self._policy.presession_name, signed, max_age=None)
        )
        return secret

    def cookie_header(self, name: str, value: str, *, max_age: int | None) -> str:
        """A ``Set-Cookie`` value with this site's cookie attributes."""
        return self._policy.header(name, value, max_age=max_age)

    def begin(self, raw_id: str, session: Session, *, max_age: int | None) -> None:
        """Send the cookie of a new session (login, or an id rotation)."""
        self.session = session
        self.presession_secret = None
        self.set_cookies = [
            self._policy.header(self._policy.session_name, raw_id, max_age=max_age),
            self._policy.clear(self._policy.presession_name),
        ]

    def end(self) -> None:
        """Clear the session cookie (the caller ends the session in the store)."""
        self.session = None
        self.presession_secret = None
        self.set_cookies = [self._policy.clear(self._policy.session_name)]


def parse_cookie_header(scope: Scope) -> dict[str, list[str]]:
    """Every cookie value by name, keeping duplicates (RFC 6265 order)."""
    found: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        if name != b"cookie":
            continue
        for chunk in value.decode("latin-1").split(";"):
            key, sep, val = chunk.strip().partition("=")
            if sep and key:
                found.setdefault(key, []).append(val.strip().strip('"'))
    return found


class SessionMiddleware:
    """Puts a :class:`SessionState` in ``scope["bastion"]``.

    An authenticated request costs one store read (plus a last-seen write at most once per
    :meth:`SessionManager.touch_interval`). A store outage answers 503 and leaves the cookie
    alone; a cookie naming no live session is cleared.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        manager: Callable[[], SessionManager],
        signer: Signer,
        policy: CookiePolicy,
        on_error: ErrorResponder,
        skip: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app = app
        self.manager = manager
        self.signer = signer
        self.policy = policy
        self.on_error = on_error
        # Paths answered without reading the session (health probes): a session-store
        # outage must not hide behind the 503 of a cookie the probe does not even use.
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = SessionState(_policy=self.policy, _signer=self.signer)
        scope[STATE_KEY] = state
        cookies = parse_cookie_header(scope)
        state.carries_cookie = (
            self.policy.session_name in cookies or self.policy.presession_name in cookies
        )
        if self.skip(scope["path"]):
            await self.app(scope, receive, send)
            return
        session_values = cookies.get(self.policy.session_name, [])
        if len(session_values) > 1:
            # Two session cookies means someone planted one; refuse rather than guess, and
            # clear ours so the browser recovers.
            state.set_cookies.append(self.policy.clear(self.policy.session_name))
            response = await self.on_error(scope, 400, "malformed session cookie")
            await response(scope, receive, self._with_cookies(state, send))
            return
        if session_values:
            try:
                manager = self.manager()
                session = await manager.load(session_values[0])
                if session is not None:
                    session = await manager.touch(session)
            except StoreUnavailable as error:
                log.warning("session lookup failed: %s unavailable", error.component)
                response = await self.on_error(scope, 503, f"{error.component} unavailable")
                await response(scope, receive, send)
                return
            state.session = session
            if session is None:
                state.set_cookies.append(self.policy.clear(self.policy.session_name))
        if state.session is None:
            state.presession_secret = self._presession(cookies)
        await self.app(scope, receive, self._with_cookies(state, send))

    def _presession(self, cookies: dict[str, list[str]]) -> str | None:
        values = cookies.get(self.policy.presession_name, [])
        if len(values) != 1:
            return None
        try:
            return self.signer.unsign(values[0]).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None

    def _with_cookies(self, state: SessionState, send: Send) -> Send:
        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start" and (
                state.set_cookies or state.other_cookies
            ):
                headers = MutableHeaders(scope=message)
                for cookie in (*state.set_cookies, *state.other_cookies):
                    headers.append("Set-Cookie", cookie)
                # A response that sets a cookie must never be stored by any cache.
                headers["Cache-Control"] = "no-store"
            await send(message)

        return send_with_cookies


def session_state(scope: Scope) -> SessionState:
    state = scope.get(STATE_KEY)
    if not isinstance(state, SessionState):
        raise RuntimeError("Bastion's SessionMiddleware is not installed")
    return state
