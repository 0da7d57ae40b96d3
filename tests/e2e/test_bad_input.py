"""Bad input: oversized bodies and headers, malformed cookies, tokens and forms, unsupported
methods, odd paths, and the one handler that turns a crash into a generic page.

Every refusal here is a 4xx, never a 5xx, and no answer shows a traceback, a file path,
SQL or a Redis key.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from fastapi import FastAPI

from bastion.csrf import mask_token, new_csrf_secret
from bastion.fastapi import install
from bastion.settings import Settings
from bastion.signing import Signer
from tests.e2e.conftest import ORIGIN, PASSWORD, Site, csrf_from, login
from tests.live import live_server

BODY_LIMIT = 64 * 1024
FORM = "application/x-www-form-urlencoded"
# Routes Bastion owns that take a body (CONTRACT 4.10: 413 above 64 KiB).
AUTH_POSTS = (
    "/login",
    "/logout",
    "/register",
    "/account/password",
    "/account/sessions/revoke-others",
    "/admin/users/1/roles",
    "/admin/sessions/x/revoke",
    "/api/token",
    "/api/token/revoke",
)
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "/src/",
    "site-packages",
    ".py",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "DELETE FROM",
    "sqlalchemy",
    "sqlite3",
    "asyncpg",
    "redis.exceptions",
)


def assert_refused_safely(
    response: httpx.Response, site: Site, *, status: int | None = None, case: object = ""
) -> None:
    """A 4xx (the given one, if any) whose body gives nothing away."""
    label = f"{case!r}: {response.status_code} {response.text[:200]!r}"
    assert 400 <= response.status_code < 500, label
    if status is not None:
        assert response.status_code == status, label
    assert_no_leak(response, site, case)


def assert_no_leak(response: httpx.Response, site: Site, case: object = "") -> None:
    body = response.text
    for marker in (*LEAK_MARKERS, f"{site.bastion.settings.redis_prefix}:"):
        assert marker not in body, f"{case!r}: the answer shows {marker!r}"


async def session_count(site: Site, user_id: int) -> int:
    return len(await site.bastion.services.sessions.list_for_user(user_id))


async def bearer_token(client: httpx.AsyncClient, username: str = "alice") -> str:
    response = await client.post(
        "/api/token", data={"grant_type": "password", "username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
async def open_site(
    site_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> Site:
    site: Site = await site_factory(make_settings(registration="open"))
    return site


# ---- bodies over 64 KiB -----------------------------------------------------------------


async def test_bodies_over_64_kib_on_auth_routes_get_413_by_content_length(
    open_site: Site,
) -> None:
    body = b"pad=" + b"a" * BODY_LIMIT
    async with open_site.client() as client:
        for path in AUTH_POSTS:
            response = await client.post(
                path, content=body, headers={**ORIGIN, "Content-Type": FORM}
            )
            assert response.request.headers["content-length"] == str(len(body))
            assert_refused_safely(response, open_site, status=413, case=path)


async def test_chunked_bodies_over_64_kib_on_auth_routes_get_413_without_content_length(
    open_site: Site,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"pad="
        for _ in range(9):  # 72 KiB in all, none of it announced
            yield b"a" * 8192

    async with open_site.client() as client:
        for path in AUTH_POSTS:
            response = await client.post(
                path, content=chunks(), headers={**ORIGIN, "Content-Type": FORM}
            )
            assert "content-length" not in response.request.headers
            assert response.request.headers["transfer-encoding"] == "chunked"
            assert_refused_safely(response, open_site, status=413, case=path)


async def test_an_oversized_token_request_is_refused_before_its_credentials_are_read(
    site: Site, client: httpx.AsyncClient
) -> None:
    alice = await site.create_user("alice")
    fields = f"grant_type=password&username=alice&password={quote(PASSWORD)}&pad="
    over = (fields + "a" * (BODY_LIMIT - len(fields) + 1)).encode()

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(over), 4096):
            yield over[start : start + 4096]

    by_length = await client.post("/api/token", content=over, headers={"Content-Type": FORM})
    assert_refused_safely(by_length, site, status=413)
    chunked = await client.post("/api/token", content=streamed(), headers={"Content-Type": FORM})
    assert_refused_safely(chunked, site, status=413)
    assert await session_count(site, alice) == 0
    # One byte less is exactly the limit: the same credentials are then read and accepted.
    at_limit = await client.post("/api/token", content=over[:-1], headers={"Content-Type": FORM})
    assert at_limit.status_code == 200, at_limit.text
    assert await session_count(site, alice) == 1


async def test_an_oversized_login_form_gets_413_and_signs_nobody_in(
    site: Site, client: httpx.AsyncClient
) -> None:
    alice = await site.create_user("alice")
    page = await client.get("/login")
    fields = f"csrf_token={csrf_from(page.text)}&username=alice&password={quote(PASSWORD)}&pad="
    body = (fields + "a" * (BODY_LIMIT - len(fields) + 1)).encode()
    response = await client.post("/login", content=body, headers={**ORIGIN, "Content-Type": FORM})
    assert_refused_safely(response, site, status=413)
    assert "bastion_session" not in client.cookies
    assert await session_count(site, alice) == 0


# ---- malformed cookies ------------------------------------------------------------------

MALFORMED_SESSION_COOKIES: tuple[bytes, ...] = (
    b"bastion_session=short",
    b"bastion_session=" + b"A" * 42,  # one character short of 256 bits
    b"bastion_session=" + b"A" * 44,
    b"bastion_session=" + b"A" * 42 + b"=",  # padded base64
    b"bastion_session=" + b"A" * 42 + b"+",  # not base64url
    b"bastion_session=" + "é".encode("latin-1") * 43,  # non-ASCII, right length
    b"bastion_session=\xff\xfe\xfd\xfc" + b"A" * 39,  # invalid UTF-8
    b"bastion_session=" + b"x" * 10_000,
    b'bastion_session="' + b"B" * 43 + b'"',  # quoted, but no session of ours
    b'bastion_session="unterminated',
    b"bastion_session=",
    b"bastion_session",
    b"bastion_session=a=b=c; other=1",
    b"bastion_session=%00%00%00",
    b";;;=;bastion_session;=",
)


async def test_malformed_session_cookies_are_ignored_as_anonymous(site: Site) -> None:
    for cookie in MALFORMED_SESSION_COOKIES:
        async with site.client() as client:
            page = await client.get("/dashboard", headers=[(b"cookie", cookie)])
            api = await client.get("/api/me", headers=[(b"cookie", cookie)])
        assert page.status_code == 303, (cookie, page.status_code)
        assert page.headers["location"].startswith("/login"), cookie
        assert_no_leak(page, site, cookie)
        assert_refused_safely(api, site, status=401, case=cookie)


async def test_a_session_cookie_naming_no_session_is_cleared(site: Site) -> None:
    unknown = secrets.token_urlsafe(32).encode()  # well formed, never issued
    async with site.client() as client:
        response = await client.get(
            "/dashboard", headers=[(b"cookie", b"bastion_session=" + unknown)]
        )
    assert response.status_code == 303
    cleared = [
        c for c in response.headers.get_list("set-cookie") if c.startswith("bastion_session=")
    ]
    assert cleared
    assert "Max-Age=0" in cleared[0]


async def test_two_session_cookies_get_400_and_the_cookie_cleared(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as browser:
        assert (await login(browser, "alice")).status_code == 303
        valid = browser.cookies["bastion_session"]
    planted = secrets.token_urlsafe(32)
    for order in (f"{valid}; bastion_session={planted}", f"{planted}; bastion_session={valid}"):
        cookie = f"bastion_session={order}".encode()
        for path in ("/dashboard", "/api/me", "/login"):
            async with site.client() as client:
                response = await client.get(path, headers=[(b"cookie", cookie)])
            assert_refused_safely(response, site, status=400, case=(path, order))
            cleared = response.headers.get_list("set-cookie")
            assert any(c.startswith("bastion_session=;") and "Max-Age=0" in c for c in cleared)
    # Neither copy was trusted, and the genuine session itself is intact.
    async with site.client() as client:
        still = await client.get(
            "/api/me", headers=[(b"cookie", f"bastion_session={valid}".encode())]
        )
    assert still.status_code == 200


async def test_a_forged_presession_cookie_carries_no_csrf_secret(site: Site) -> None:
    alice = await site.create_user("alice")
    secret = new_csrf_secret()
    genuine = site.bastion.presession_signer.sign(secret.encode())
    other_key = Signer(secrets.token_bytes(32), purpose="bastion.presession")
    forgeries = (
        other_key.sign(secret.encode()),  # signed with someone else's key
        genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),  # MAC tampered
        secret,  # the bare secret, unsigned
        genuine.replace(".", ""),
        genuine + "." + genuine,
        "é" * 40,
    )
    form = {"username": "alice", "password": PASSWORD, "csrf_token": mask_token(secret)}
    for forged in forgeries:
        async with site.client() as client:
            response = await client.post(
                "/login",
                content=urlencode(form).encode(),
                headers=[
                    (b"cookie", f"bastion_pre={forged}".encode()),
                    (b"content-type", FORM.encode()),
                    (b"origin", ORIGIN["Origin"].encode()),
                ],
            )
        assert_refused_safely(response, site, status=403, case=forged)
        assert "bastion_session" not in response.headers.get("set-cookie", "")
    assert await session_count(site, alice) == 0
    # The same form with the server's own signature passes: the forgery was the only fault.
    async with site.client() as client:
        signed_in = await client.post(
            "/login", data=form, headers={**ORIGIN, "Cookie": f"bastion_pre={genuine}"}
        )
    assert signed_in.status_code == 303


async def test_non_ascii_presession_cookie_bytes_are_ignored(site: Site) -> None:
    async with site.client() as client:
        page = await client.get("/login", headers=[(b"cookie", b"bastion_pre=\xff\xfe.\xfd\xfc")])
        refused = await client.post(
            "/login",
            content=b"username=alice&password=x&csrf_token=x",
            headers=[
                (b"cookie", b"bastion_pre=\xff\xfe.\xfd\xfc"),
                (b"content-type", FORM.encode()),
                (b"origin", ORIGIN["Origin"].encode()),
            ],
        )
    assert page.status_code == 200
    assert_refused_safely(refused, site, status=403)


# ---- malformed bearer tokens ------------------------------------------------------------


def malformed_authorizations(token: str) -> list[bytes]:
    header, payload, signature = token.split(".")
    std_alphabet = signature.replace("-", "+").replace("_", "/")
    if std_alphabet == signature:
        std_alphabet = "+/" + signature[2:]
    return [
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer    ",
        b"Bearer \xff\xfe\xfd",  # non-ASCII bytes
        "Bearer é.é.é".encode("latin-1"),
        f"Bearer {header}.{payload}".encode(),  # two parts
        f"Bearer {token}.{signature}".encode(),  # four parts
        f"Bearer {token}=".encode(),  # padding
        f"Bearer {header}==.{payload}.{signature}".encode(),
        f"Bearer {header}.{payload}.{std_alphabet}".encode(),  # base64, not base64url
        f"Bearer {header}.{payload}.".encode(),  # no signature
        b"Bearer ..",
        f"Bearer {header}.{payload}.{signature[::-1]}".encode(),
        f"Bearer {token} {token}".encode(),
        b"Bearer " + b"A" * 60_000,  # huge, yet under the header limit: reaches the decoder
        f"bearer {header}.{payload}.{signature[:-4]}AAAA".encode(),  # lowercase, bad token
        f"Basic {base64.b64encode(f'alice:{PASSWORD}'.encode()).decode()}".encode(),
        f"Token {token}".encode(),  # another scheme, even with a good token
        f"Bearer\t{token}".encode(),
        f"{token}".encode(),  # no scheme at all
    ]


async def test_malformed_bearer_tokens_get_401_with_a_bearer_challenge(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    token = await bearer_token(client)
    for value in malformed_authorizations(token):
        response = await client.get("/api/me", headers=[(b"authorization", value)])
        assert_refused_safely(response, site, status=401, case=value[:80])
        assert response.headers["www-authenticate"].startswith("Bearer"), value[:80]
    # The token they were made from is good, and the scheme name is case-insensitive
    # (RFC 7235), so the refusals above were about the malformations alone.
    for scheme in ("Bearer", "bearer", "BEARER"):
        accepted = await client.get("/api/me", headers={"Authorization": f"{scheme} {token}"})
        assert accepted.status_code == 200, scheme


async def test_a_bearer_token_on_a_page_route_never_fails_with_5xx(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    token = await bearer_token(client)
    for value in malformed_authorizations(token):
        response = await client.get("/dashboard", headers=[(b"authorization", value)])
        # Pages are cookie-authenticated: an Authorization header changes nothing there.
        assert response.status_code == 303, value[:80]


# ---- wrong content types and broken forms -----------------------------------------------


def broken_bodies(fields: str) -> list[tuple[str, bytes]]:
    """(content type, body) pairs that do not make a usable form of ``fields``."""
    as_json = "{" + ",".join(
        f'"{k}": "{v}"' for k, v in (pair.split("=", 1) for pair in fields.split("&"))
    )
    return [
        ("application/json", (as_json + "}").encode()),
        ("application/json", b'{"unterminated": '),
        ("text/plain", fields.encode()),
        ("application/xml", b"<form/>"),
        ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n"),
        ("multipart/form-data; boundary=zz", b"not multipart at all"),
        ("multipart/form-data; boundary=", b"--\r\n"),
        (FORM, b"%zz=%&grant_type=%G0&username=%&password=%%%"),
        (FORM, b"grant_type=password&username=\xff\xfe&password=%ff%fe%fd"),
        (FORM + "; charset=utf-16", fields.encode("utf-16")),
        ("", fields.encode()),
    ]


async def test_token_endpoint_refuses_wrong_content_types_and_broken_forms(
    site: Site, client: httpx.AsyncClient
) -> None:
    alice = await site.create_user("alice")
    fields = f"grant_type=password&username=alice&password={PASSWORD}"
    for path in ("/api/token", "/api/token/revoke"):
        for content_type, body in broken_bodies(fields):
            headers = {"Content-Type": content_type} if content_type else {}
            response = await client.post(path, content=body, headers=headers)
            assert_refused_safely(response, site, case=(path, content_type, body[:40]))
    # The credentials were in every body but were never read as a form.
    assert await session_count(site, alice) == 0


async def test_login_refuses_wrong_content_types_and_broken_forms(
    site: Site, client: httpx.AsyncClient
) -> None:
    alice = await site.create_user("alice")
    token = csrf_from((await client.get("/login")).text)
    fields = f"username=alice&password={PASSWORD}&csrf_token={token}"
    for content_type, body in broken_bodies(fields):
        # The token also goes in the header, so the CSRF check passes and the body is read;
        # a 403 from it would be acceptable too, as long as nobody is signed in.
        headers = {**ORIGIN, "X-CSRF-Token": token}
        if content_type:
            headers["Content-Type"] = content_type
        response = await client.post("/login", content=body, headers=headers)
        assert_refused_safely(response, site, case=(content_type, body[:40]))
        assert "bastion_session" not in client.cookies
    assert await session_count(site, alice) == 0


async def test_account_forms_refuse_broken_bodies_without_5xx(
    open_site: Site,
) -> None:
    await open_site.create_user("alice", roles=("admin",))
    async with open_site.client() as client:
        await login(client, "alice")
        token = csrf_from((await client.get("/account/password")).text)
        for path in ("/account/password", "/register", "/admin/users/1/roles"):
            for content_type, body in broken_bodies("current_password=x&new_password=y"):
                headers = {**ORIGIN, "X-CSRF-Token": token}
                if content_type:
                    headers["Content-Type"] = content_type
                response = await client.post(path, content=body, headers=headers)
                assert response.status_code < 500, (path, content_type, response.status_code)
                assert_no_leak(response, open_site, (path, content_type))


# ---- oversized and many headers ---------------------------------------------------------


async def test_oversized_headers_get_431_in_process(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    token = await bearer_token(client)
    for path in ("/", "/login", "/api/me", "/healthz"):
        big = await client.get(path, headers={"X-Big": "a" * 100_000})
        assert_refused_safely(big, site, status=431, case=path)
    huge_token = await client.get("/api/me", headers={"Authorization": "Bearer " + "A" * 100_000})
    assert_refused_safely(huge_token, site, status=431)
    huge_cookie = await client.get(
        "/dashboard", headers={"Cookie": "bastion_session=" + "x" * 70_000}
    )
    assert_refused_safely(huge_cookie, site, status=431)
    # Just under the limit is fine.
    fits = await client.get(
        "/api/me", headers={"Authorization": f"Bearer {token}", "X-Pad": "a" * 50_000}
    )
    assert fits.status_code == 200


async def test_many_headers_and_odd_header_bytes_never_fail_with_5xx(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    many = [(f"x-h{i}".encode(), b"v") for i in range(1000)]
    for path in ("/", "/login", "/api/me"):
        response = await client.get(path, headers=many)
        assert response.status_code < 500, path
    odd: list[tuple[bytes, bytes]] = [
        (b"user-agent", b"\xff\xfe Mozilla/5.0 \x80\x81"),
        (b"x-forwarded-for", b"\xff, 999.1.1.1, ::ffff:zz"),
        (b"forwarded", b'for="\xff";proto=gopher'),
        (b"accept-language", b"\xc3\x28"),
        (b"referer", b"http://\xff\xfe/"),
    ]
    # A session created with those headers is stored and shown without trouble.
    async with site.client(headers=odd) as browser:
        assert (await login(browser, "alice")).status_code == 303
        page = await browser.get("/account/sessions")
        api = await browser.get("/api/sessions")
    assert page.status_code == 200
    assert api.status_code == 200


def test_a_real_server_refuses_a_64_kb_header_and_keeps_answering(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with live_server(data) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        refused = http.get("/login", headers={"X-Big": "a" * 64 * 1024})
        assert 400 <= refused.status_code < 500
        assert "Traceback" not in refused.text
        for _ in range(3):
            assert http.get("/healthz").status_code == 200
        assert http.get("/login").status_code == 200


# ---- methods ----------------------------------------------------------------------------

ROUTES = (
    "/",
    "/login",
    "/logout",
    "/dashboard",
    "/account/sessions",
    "/account/password",
    "/admin/users",
    "/api/me",
    "/api/token",
    "/api/sessions",
    "/healthz",
    "/.well-known/jwks.json",
)


async def test_unsupported_methods_get_405_whoever_asks(site: Site) -> None:
    await site.create_user("alice", roles=("admin",))
    async with site.client() as anonymous, site.client() as browser, site.client() as api:
        await login(browser, "alice")
        api.headers["Authorization"] = f"Bearer {await bearer_token(api)}"
        for client in (anonymous, browser, api):
            for path in ROUTES:
                for method in ("TRACE", "PUT", "PATCH"):
                    response = await client.request(method, path, headers=ORIGIN)
                    assert_refused_safely(response, site, status=405, case=(method, path))
                    assert response.headers.get("allow"), (method, path)
                options = await client.request("OPTIONS", path)
                assert options.status_code < 500, path
        # Nothing was ended along the way.
        assert (await browser.get("/dashboard")).status_code == 200


# ---- path tricks ------------------------------------------------------------------------

ODD_IDS = (
    "a" * 10_000,
    "%00",
    "a%00b",
    "%C3%A9t%C3%A9",
    "\u00e9\u4e2d\U0001f600",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "%ff%fe",
    "%20",
    "0" * 64,  # shaped like a session key, but nobody's
    "A" * 43,  # shaped like a raw session id
    "-1",
    "null",
)


async def test_odd_session_ids_in_paths_get_404_or_422(site: Site) -> None:
    await site.create_user("alice", roles=("admin",))
    async with site.client() as client:
        await login(client, "alice")
        token = csrf_from((await client.get("/account/sessions")).text)
        headers = {**ORIGIN, "X-CSRF-Token": token}
        for odd in ODD_IDS:
            answers = [
                await client.delete(f"/api/sessions/{odd}", headers=headers),
                await client.post(f"/account/sessions/{odd}/revoke", headers=headers),
                await client.post(f"/admin/sessions/{odd}/revoke", headers=headers),
            ]
            for response in answers:
                assert response.status_code in (404, 422), (odd[:40], response.status_code)
                assert_no_leak(response, site, odd[:40])
        # Still signed in: none of them touched this session.
        assert (await client.get("/dashboard")).status_code == 200


async def test_odd_query_values_on_admin_pages_get_4xx(site: Site) -> None:
    await site.create_user("alice", roles=("admin",))
    async with site.client() as client:
        await login(client, "alice")
        for query in (
            "page=0",
            "page=-1",
            "page=abc",
            "page=99999999999999999999",
            "q=" + "x" * 200,
        ):
            response = await client.get(f"/admin/users?{query}")
            assert_refused_safely(response, site, status=400, case=query)
        for query in ("page=%00", "q=%ff%fe", "q=%00"):
            response = await client.get(f"/admin/users?{query}")
            assert response.status_code in (200, 400), query
            assert_no_leak(response, site, query)


# ---- the 500 page -----------------------------------------------------------------------

SECRET_TEXT = "secret /etc/passwd SELECT * FROM users"


@pytest.fixture
async def crashing_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    app = FastAPI()
    install(app, make_settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET_TEXT)

    @app.get("/api/boom")
    async def api_boom() -> None:
        raise RuntimeError(SECRET_TEXT)

    async with app.router.lifespan_context(app):
        yield app


@pytest.mark.parametrize(
    ("path", "content_type"), [("/boom", "text/html"), ("/api/boom", "application/json")]
)
async def test_an_unexpected_error_shows_a_generic_page_with_a_logged_error_id(
    crashing_app: FastAPI, caplog: pytest.LogCaptureFixture, path: str, content_type: str
) -> None:
    transport = httpx.ASGITransport(app=crashing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with caplog.at_level(logging.ERROR, logger="bastion"):
            response = await client.get(path)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith(content_type)
    for leaked in ("secret", "/etc/passwd", "SELECT", "RuntimeError", "Traceback", ".py"):
        assert leaked not in response.text
    match = re.search(r"error id ([0-9a-f]{8,})", response.text)
    assert match, response.text
    error_id = match.group(1)
    records = [r for r in caplog.records if r.name == "bastion" and error_id in r.getMessage()]
    assert len(records) == 1
    # The log keeps what the answer hides.
    assert records[0].exc_info is not None
    assert SECRET_TEXT in str(records[0].exc_info[1])
    # The answer still carries the security headers every other response has.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


async def test_each_unexpected_error_gets_its_own_error_id(crashing_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=crashing_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        first = (await client.get("/api/boom")).json()["detail"]
        second = (await client.get("/api/boom")).json()["detail"]
    assert first != second
