"""bastion.asgi.sessions and bastion.asgi.csrf, driven through a small Starlette app.

The stack is the one ``install`` builds: SessionMiddleware outside CSRFMiddleware outside the
routes. Cookies are sent by hand (no cookie jar), so every request says exactly what it carries.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.asgi import csrf as csrf_module
from bastion.asgi.csrf import CSRFMiddleware
from bastion.asgi.sessions import (
    CookiePolicy,
    SessionMiddleware,
    SessionState,
    parse_cookie_header,
    session_state,
)
from bastion.clock import FakeClock
from bastion.csrf import mask_token, new_csrf_secret
from bastion.exceptions import StoreUnavailable
from bastion.sessions import SessionManager, SessionPolicy
from bastion.signing import Signer
from bastion.stores.memory import MemoryStore

ORIGIN = "https://testserver"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SIGNER = Signer(b"k" * 32, purpose="bastion.presession")
POLICY = CookiePolicy()
SESSION = POLICY.session_name
PRE = POLICY.presession_name


# ---- the application -----------------------------------------------------------------------


async def show_state(request: Request) -> Response:
    state = session_state(request.scope)
    secret = state.ensure_csrf_secret()
    return JSONResponse(
        {
            "user_id": state.session.user_id if state.session else None,
            "secret": secret,
            "token": mask_token(secret),
        }
    )


async def form(request: Request) -> Response:
    async with request.form() as data:
        fields = [
            [k, v if isinstance(v, str) else f"file:{v.filename}"] for k, v in data.multi_items()
        ]
    state = session_state(request.scope)
    return JSONResponse(
        {"fields": fields, "user_id": state.session.user_id if state.session else None}
    )


async def raw(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"length": len(body), "sha": hashlib.sha256(body).hexdigest()})


async def token_endpoint(request: Request) -> Response:
    return PlainTextResponse("token issued")


class Harness:
    def __init__(self, store: MemoryStore | None = None) -> None:
        self.clock = FakeClock()
        self.store = store or MemoryStore(namespace="sessions", clock=self.clock)
        self.manager = SessionManager(self.store, SessionPolicy(), self.clock)
        self.app_calls = 0

        async def login(request: Request) -> Response:
            state = session_state(request.scope)
            raw_id, session = await self.manager.create(
                42, replaces=state.session.key if state.session else None
            )
            state.begin(raw_id, session, max_age=None)
            return PlainTextResponse("signed in")

        async def logout(request: Request) -> Response:
            state = session_state(request.scope)
            if state.session:
                await self.manager.end(state.session.key)
            state.end()
            return PlainTextResponse("signed out")

        routes = Starlette(
            routes=[
                Route("/state", show_state),
                Route("/form", form, methods=["POST"]),
                Route("/raw", raw, methods=["POST", "PUT", "DELETE", "PATCH"]),
                Route("/login", login, methods=["POST"]),
                Route("/logout", logout, methods=["POST"]),
                Route("/api/token", token_endpoint, methods=["POST"]),
            ]
        )

        async def counting(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.app_calls += 1
            await routes(scope, receive, send)

        self.app: ASGIApp = SessionMiddleware(
            CSRFMiddleware(
                counting,
                trusted_origins=["https://trusted.example"],
                on_error=on_error,
                exempt=lambda path: path == "/api/token",
            ),
            manager=lambda: self.manager,
            signer=SIGNER,
            policy=POLICY,
            on_error=on_error,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        cookies: dict[str, str] | str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = {"Origin": ORIGIN} if method not in ("GET", "HEAD") else {}
        sent.update(headers or {})
        if isinstance(cookies, dict):
            cookies = "; ".join(f"{k}={v}" for k, v in cookies.items())
        headers_out = [(k.encode(), v.encode()) for k, v in sent.items()]
        if cookies:
            headers_out.append((b"Cookie", cookies.encode()))  # bytes: even non-ASCII
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            return await http.request(method, path, headers=headers_out, **kwargs)

    async def signed_in(self) -> tuple[str, str]:
        """A live session: (raw id for the cookie, a CSRF token for it)."""
        raw_id, session = await self.manager.create(42)
        return raw_id, mask_token(session.csrf_secret)


async def on_error(scope: Scope, status: int, message: str) -> ASGIApp:
    return PlainTextResponse(message, status_code=status)


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def cookie_value(response: httpx.Response, name: str) -> str | None:
    for header in set_cookies(response):
        first = header.split(";", 1)[0]
        if first.startswith(f"{name}="):
            return first.split("=", 1)[1]
    return None


def clears(response: httpx.Response, name: str) -> bool:
    return any(h.startswith(f"{name}=;") and "Max-Age=0" in h for h in set_cookies(response))


def assert_refused(harness: Harness, response: httpx.Response, reason: str = "") -> None:
    """A CSRF refusal: 403, the route never ran (so nothing changed), and no cookie set."""
    assert response.status_code == 403, response.text
    assert reason in response.text
    assert harness.app_calls == 0
    assert set_cookies(response) == []


@pytest.fixture
def harness() -> Harness:
    return Harness()


# ---- cookie parsing and policy -------------------------------------------------------------


def test_parse_cookie_header_keeps_duplicates_in_order() -> None:
    scope = {
        "headers": [
            (b"cookie", b'a=1; b="two"; a=3;  c=x ;noequals; =nokey'),
            (b"x-cookie", b"z=9"),
            (b"cookie", b"a=4"),
        ]
    }
    assert parse_cookie_header(scope) == {"a": ["1", "3", "4"], "b": ["two"], "c": ["x"]}


def test_parse_cookie_header_survives_any_bytes() -> None:
    scope = {"headers": [(b"cookie", bytes(range(256)))]}
    assert isinstance(parse_cookie_header(scope), dict)


def test_cookie_policy_headers() -> None:
    header = POLICY.header("n", "v", max_age=60)
    assert header == "n=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
    assert "Domain" not in header
    cleared = POLICY.clear("n")
    assert cleared.startswith("n=; ")
    assert "Max-Age=0" in cleared
    assert "Expires=Thu, 01 Jan 1970" in cleared


def test_production_cookies_are_host_prefixed_and_secure() -> None:
    policy = CookiePolicy.for_environment(production=True)
    assert policy.session_name.startswith("__Host-")
    assert policy.presession_name.startswith("__Host-")
    header = policy.header(policy.session_name, "v", max_age=None)
    assert "; Secure" in header
    assert "; Path=/" in header
    assert "Domain" not in header
    assert "Max-Age" not in header
    assert "; Secure" in policy.clear(policy.session_name)
    assert CookiePolicy.for_environment(production=False).secure is False


def test_session_state_needs_the_middleware() -> None:
    with pytest.raises(RuntimeError):
        session_state({"type": "http"})


# ---- sessions --------------------------------------------------------------------------------


async def test_valid_session_cookie_loads_the_session(harness: Harness) -> None:
    raw_id, _ = await harness.signed_in()
    response = await harness.request("GET", "/state", cookies={SESSION: raw_id})
    assert response.status_code == 200
    assert response.json()["user_id"] == 42
    assert set_cookies(response) == []


@pytest.mark.parametrize(
    "value",
    ["", "short", "x" * 43, "é", secrets.token_urlsafe(32)],
    ids=["empty", "short", "unissued-43", "non-ascii", "random-unissued"],
)
async def test_unknown_session_cookie_is_cleared(harness: Harness, value: str) -> None:
    response = await harness.request("GET", "/state", cookies=f"{SESSION}={value}")
    assert response.status_code == 200
    assert response.json()["user_id"] is None
    assert clears(response, SESSION)
    assert response.headers["cache-control"] == "no-store"


async def test_ended_session_cookie_is_cleared(harness: Harness) -> None:
    raw_id, _ = await harness.signed_in()
    await harness.manager.end_all_for_user(42)
    response = await harness.request("GET", "/state", cookies={SESSION: raw_id})
    assert response.json()["user_id"] is None
    assert clears(response, SESSION)


async def test_duplicate_session_cookies_are_refused_and_cleared(harness: Harness) -> None:
    raw_id, _ = await harness.signed_in()
    for cookies in (
        f"{SESSION}={raw_id}; {SESSION}={secrets.token_urlsafe(32)}",
        f"{SESSION}={raw_id}; {SESSION}={raw_id}",
    ):
        response = await harness.request("GET", "/state", cookies=cookies)
        assert response.status_code == 400
        assert clears(response, SESSION)
        assert response.headers["cache-control"] == "no-store"
    assert harness.app_calls == 0


async def test_presession_cookie_is_signed_and_reused(harness: Harness) -> None:
    first = await harness.request("GET", "/state")
    signed = cookie_value(first, PRE)
    assert signed is not None
    assert first.json()["secret"] not in signed.split(".")  # signed, not bare
    assert SIGNER.unsign(signed).decode() == first.json()["secret"]
    assert "HttpOnly" in set_cookies(first)[0]
    second = await harness.request("GET", "/state", cookies={PRE: signed})
    assert second.json()["secret"] == first.json()["secret"]
    assert set_cookies(second) == []


def _tampered(signed: str) -> list[str]:
    payload, mac = signed.rsplit(".", 1)
    other = Signer(b"o" * 32, purpose="bastion.presession")
    return [
        payload + "." + ("A" if mac[0] != "A" else "B") + mac[1:],
        SIGNER.sign(b"attacker-chosen-secret")[:-1] + "x",
        other.sign(new_csrf_secret().encode()),
        Signer(b"k" * 32, purpose="another-purpose").sign(new_csrf_secret().encode()),
        new_csrf_secret(),
        "",
        "...",
    ]


async def test_tampered_presession_cookie_is_ignored(harness: Harness) -> None:
    signed = cookie_value(await harness.request("GET", "/state"), PRE)
    assert signed is not None
    for bad in _tampered(signed):
        response = await harness.request("GET", "/state", cookies={PRE: bad})
        assert response.status_code == 200
        fresh = cookie_value(response, PRE)
        assert fresh is not None, f"{bad!r} was believed"
        assert SIGNER.unsign(fresh).decode() == response.json()["secret"]


async def test_store_outage_is_503_and_keeps_the_cookie() -> None:
    class DownStore(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            raise StoreUnavailable("session store", "connection refused")

    harness = Harness(DownStore(namespace="sessions"))
    response = await harness.request("GET", "/state", cookies={SESSION: secrets.token_urlsafe(32)})
    assert response.status_code == 503
    assert "session store unavailable" in response.text
    assert "connection refused" not in response.text
    assert set_cookies(response) == []
    assert harness.app_calls == 0
    # Anonymous traffic never needs the store.
    assert (await harness.request("GET", "/state")).status_code == 200


async def test_store_outage_while_touching_is_503_and_keeps_the_cookie() -> None:
    class WriteDownStore(MemoryStore):
        async def replace(self, key: str, value: bytes, ttl: float | None = None) -> bool:
            raise StoreUnavailable("session store")

    harness = Harness()
    harness.store.__class__ = WriteDownStore
    raw_id, _ = await harness.signed_in()
    harness.clock.advance(120)  # due for a last-seen write, well inside the idle timeout
    response = await harness.request("GET", "/state", cookies={SESSION: raw_id})
    assert response.status_code == 503
    assert set_cookies(response) == []


async def test_login_sets_the_session_cookie_and_drops_the_presession(harness: Harness) -> None:
    anonymous = await harness.request("GET", "/state")
    pre, token = cookie_value(anonymous, PRE), anonymous.json()["token"]
    assert pre is not None
    login = await harness.request("POST", "/login", cookies={PRE: pre}, data={"csrf_token": token})
    assert login.status_code == 200, login.text
    raw_id = cookie_value(login, SESSION)
    assert raw_id is not None
    assert len(raw_id) >= 43
    assert clears(login, PRE)
    assert login.headers["cache-control"] == "no-store"
    # The CSRF secret rotated at login: the anonymous token is worthless now.
    signed_in = await harness.request("GET", "/state", cookies={SESSION: raw_id})
    assert signed_in.json()["user_id"] == 42
    assert signed_in.json()["secret"] != anonymous.json()["secret"]
    calls = harness.app_calls
    stale = await harness.request(
        "POST", "/form", cookies={SESSION: raw_id}, data={"csrf_token": token}
    )
    assert stale.status_code == 403
    assert harness.app_calls == calls
    assert set_cookies(stale) == []
    fresh = await harness.request(
        "POST", "/form", cookies={SESSION: raw_id}, data={"csrf_token": signed_in.json()["token"]}
    )
    assert fresh.status_code == 200


async def test_logout_clears_the_cookie_and_ends_the_session(harness: Harness) -> None:
    raw_id, token = await harness.signed_in()
    response = await harness.request(
        "POST", "/logout", cookies={SESSION: raw_id}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 200
    assert clears(response, SESSION)
    assert await harness.manager.load(raw_id) is None


# ---- CSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
async def test_safe_methods_need_no_token(harness: Harness, method: str) -> None:
    raw_id, _ = await harness.signed_in()
    response = await harness.request(method, "/state", cookies={SESSION: raw_id})
    assert response.status_code in (200, 405)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_unsafe_request_without_token_is_403(harness: Harness, method: str) -> None:
    raw_id, _ = await harness.signed_in()
    response = await harness.request(method, "/raw", cookies={SESSION: raw_id}, content=b"x")
    assert_refused(harness, response, "token missing")


async def test_anonymous_post_without_presession_is_403(harness: Harness) -> None:
    response = await harness.request("POST", "/login", data={"csrf_token": "x"})
    assert_refused(harness, response, "no session")
    assert await harness.manager.list_for_user(42) == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_bearer_only_requests_skip_the_check(harness: Harness, scheme: str) -> None:
    response = await harness.request(
        "POST",
        "/raw",
        headers={"Authorization": f"{scheme} some.jwt.token", "Origin": "https://evil.example"},
        content=b"payload",
    )
    assert response.status_code == 200
    assert response.json()["length"] == 7


async def _cookie_of(harness: Harness, kind: str) -> str:
    if kind == "session":
        raw_id, _ = await harness.signed_in()
        return f"{SESSION}={raw_id}"
    if kind == "ended-session":
        raw_id, _ = await harness.signed_in()
        await harness.manager.end_all_for_user(42)
        return f"{SESSION}={raw_id}"
    signed = cookie_value(await harness.request("GET", "/state"), PRE)
    if kind == "presession":
        return f"{PRE}={signed}"
    return f"{PRE}=forged"


@pytest.mark.parametrize("kind", ["session", "ended-session", "presession", "bad-presession"])
@pytest.mark.parametrize("path", ["/logout", "/login"])
@pytest.mark.parametrize("origin", [{}, {"Origin": ORIGIN}], ids=["no-origin", "same-origin"])
async def test_a_bearer_header_does_not_exempt_a_request_carrying_our_cookies(
    harness: Harness, kind: str, path: str, origin: dict[str, str]
) -> None:
    cookie = await _cookie_of(harness, kind)
    sessions_before = await harness.manager.list_for_user(42)
    harness.app_calls = 0
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        response = await http.post(
            path, headers={"Cookie": cookie, "Authorization": "Bearer junk", **origin}
        )
    assert response.status_code == 403, response.text
    assert harness.app_calls == 0  # neither logged out nor logged in
    assert await harness.manager.list_for_user(42) == sessions_before
    if kind != "ended-session":  # a dead session cookie is cleared, as on any request
        assert set_cookies(response) == []


async def test_a_request_with_our_cookie_and_a_bearer_passes_with_a_valid_token(
    harness: Harness,
) -> None:
    raw_id, token = await harness.signed_in()
    response = await harness.request(
        "POST",
        "/raw",
        cookies={SESSION: raw_id},
        headers={"Authorization": "Bearer some.jwt.token", "X-CSRF-Token": token},
        content=b"payload",
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Digest username=x", "Negotiate abc", "", "Bearer"]
)
async def test_credentials_a_browser_attaches_by_itself_do_not_skip_the_check(
    harness: Harness, authorization: str
) -> None:
    # Browsers resend cached Basic/Digest/Negotiate credentials on cross-site form posts.
    raw_id, _ = await harness.signed_in()
    response = await harness.request(
        "POST",
        "/logout",
        cookies={SESSION: raw_id},
        headers={"Authorization": authorization, "Origin": "https://evil.example"},
    )
    assert_refused(harness, response)
    assert await harness.manager.load(raw_id) is not None


async def test_form_token_is_accepted_and_the_body_is_replayed_intact(harness: Harness) -> None:
    raw_id, token = await harness.signed_in()
    fields = [
        ("username", "ann"),
        ("csrf_token", token),
        ("note", "a&b=c%d ü 🙂 " * 200),
        ("tag", "one"),
        ("tag", "two"),
        ("empty", ""),
    ]
    response = await harness.request(
        "POST", "/form", cookies={SESSION: raw_id}, headers=FORM, content=urlencode(fields)
    )
    assert response.status_code == 200, response.text
    assert response.json()["fields"] == [list(f) for f in fields]
    assert response.json()["user_id"] == 42


async def test_chunked_form_is_replayed_byte_for_byte(harness: Harness) -> None:
    raw_id, token = await harness.signed_in()
    body = f"a=1&csrf_token={token}&b=".encode() + b"x" * 10_000

    async def chunks() -> Any:
        for start in range(0, len(body), 777):
            yield body[start : start + 777]

    response = await harness.request(
        "POST",
        "/raw",
        cookies={SESSION: raw_id},
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        content=chunks(),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "length": len(body),
        "sha": hashlib.sha256(body).hexdigest(),
    }


async def test_header_token_is_accepted_and_body_untouched(harness: Harness) -> None:
    raw_id, token = await harness.signed_in()
    response = await harness.request(
        "POST",
        "/raw",
        cookies={SESSION: raw_id},
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
        content=b'{"a": 1}',
    )
    assert response.status_code == 200
    assert response.json()["length"] == 8


async def test_multipart_form_needs_the_header(harness: Harness) -> None:
    raw_id, token = await harness.signed_in()
    without = await harness.request(
        "POST", "/form", cookies={SESSION: raw_id}, data={"csrf_token": token}, files={"f": b"x"}
    )
    assert_refused(harness, without, "token missing")
    with_header = await harness.request(
        "POST",
        "/form",
        cookies={SESSION: raw_id},
        headers={"X-CSRF-Token": token},
        data={"a": "1"},
        files={"f": b"x"},
    )
    assert with_header.status_code == 200
    assert with_header.json()["fields"] == [["a", "1"], ["f", "file:upload"]]


@pytest.mark.parametrize(
    "body",
    [
        b"csrf_token=",
        b"csrf_token=%FF%FE",
        b"csrf_token=\xff\xfe",
        b"a=1",
        b"",
    ],
)
async def test_missing_or_malformed_form_token_is_403(harness: Harness, body: bytes) -> None:
    raw_id, _ = await harness.signed_in()
    response = await harness.request(
        "POST",
        "/form",
        cookies={SESSION: raw_id},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        content=body,
    )
    assert_refused(harness, response)


async def test_two_token_fields_are_refused(harness: Harness) -> None:
    raw_id, token = await harness.signed_in()
    response = await harness.request(
        "POST",
        "/form",
        cookies={SESSION: raw_id},
        headers=FORM,
        content=urlencode([("csrf_token", token), ("csrf_token", token)]),
    )
    assert_refused(harness, response, "token missing")


async def test_token_of_another_session_is_refused(harness: Harness) -> None:
    raw_id, _ = await harness.signed_in()
    _, other_token = await harness.signed_in()
    response = await harness.request(
        "POST", "/form", cookies={SESSION: raw_id}, data={"csrf_token": other_token}
    )
    assert_refused(harness, response, "token incorrect")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_origin_is_refused_even_with_a_token(
    harness: Harness, headers: dict[str, str]
) -> None:
    raw_id, token = await harness.signed_in()
    response = await harness.request(
        "POST", "/form", cookies={SESSION: raw_id}, headers=headers, data={"csrf_token": token}
    )
    assert_refused(harness, response)


async def test_trusted_origin_and_same_origin_referer_pass(harness: Harness) -> None:
    raw_id, token = await harness.signed_in()
    trusted = await harness.request(
        "POST",
        "/form",
        cookies={SESSION: raw_id},
        headers={"Origin": "https://trusted.example"},
        data={"csrf_token": token},
    )
    assert trusted.status_code == 200
    # Without Origin, the Referer decides.
    transport = httpx.ASGITransport(app=harness.app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
        referer = await http.post(
            "/form",
            headers={"Cookie": f"{SESSION}={raw_id}", "Referer": f"{ORIGIN}/page"},
            data={"csrf_token": token},
        )
        neither = await http.post(
            "/form", headers={"Cookie": f"{SESSION}={raw_id}"}, data={"csrf_token": token}
        )
    assert referer.status_code == 200
    assert neither.status_code == 403
    assert "origin missing" in neither.text
    assert set_cookies(neither) == []


async def test_exempt_paths_are_skipped(harness: Harness) -> None:
    response = await harness.request(
        "POST", "/api/token", headers={"Origin": "https://evil.example"}, data={"a": "b"}
    )
    assert response.status_code == 200
    assert response.text == "token issued"


async def test_form_over_the_csrf_read_limit_is_413(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csrf_module, "MAX_FORM_BYTES", 1000)
    raw_id, token = await harness.signed_in()
    response = await harness.request(
        "POST", "/form", cookies={SESSION: raw_id}, data={"csrf_token": token, "x": "y" * 2000}
    )
    assert response.status_code == 413
    assert harness.app_calls == 0


async def test_csrf_middleware_passes_non_http_scopes() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        return None

    middleware = CSRFMiddleware(app, trusted_origins=[], on_error=on_error)
    await middleware({"type": "websocket", "path": "/", "headers": []}, receive, send)
    sessions = SessionMiddleware(
        app,
        manager=lambda: Harness().manager,
        signer=SIGNER,
        policy=POLICY,
        on_error=on_error,
    )
    await sessions({"type": "lifespan"}, receive, send)
    assert seen == ["websocket", "lifespan"]


def test_session_state_csrf_secret_prefers_the_session() -> None:
    state = SessionState(_signer=SIGNER)
    assert state.csrf_secret is None
    minted = state.ensure_csrf_secret()
    assert state.csrf_secret == minted
    assert state.ensure_csrf_secret() == minted  # minted once
    assert len(state.set_cookies) == 1
