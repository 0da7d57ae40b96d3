"""The language of each answer over HTTP (contract 6.5): ?lang= kept in the bastion_lang
cookie, the cookie over Accept-Language, a signed-in user's own choice (POST /language)
followed on their other devices, Content-Language and Vary, and error pages that come
before the session middleware."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import ORIGIN, Site, assert_refused, csrf_token, login

ZH = "zh-CN"
SIGN_IN_ZH = "登录"


def html_lang(response: httpx.Response) -> str:
    start = response.text.index("<html lang=")
    return response.text[start:].split('"', 2)[1]


async def test_lang_in_the_query_sets_the_cookie_and_content_language(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/login?lang=zh-CN")
    assert response.status_code == 200
    assert response.headers["Content-Language"] == ZH
    assert html_lang(response) == ZH
    assert SIGN_IN_ZH in response.text
    cookie = next(c for c in response.headers.get_list("set-cookie") if "bastion_lang=" in c)
    assert cookie.startswith("bastion_lang=zh-CN;")
    assert "Max-Age=" in cookie
    # The cookie keeps the choice for the next page, with no query.
    again = await client.get("/login")
    assert again.headers["Content-Language"] == ZH
    assert SIGN_IN_ZH in again.text


async def test_html_answers_vary_on_accept_language_and_cookie(client: httpx.AsyncClient) -> None:
    response = await client.get("/login", headers={"Accept-Language": "zh-CN"})
    vary = {v.strip().lower() for v in response.headers["Vary"].split(",")}
    assert {"accept-language", "cookie"} <= vary
    assert response.headers["Content-Language"] == ZH


async def test_accept_language_chooses_when_nothing_else_does(client: httpx.AsyncClient) -> None:
    chinese = await client.get("/login", headers={"Accept-Language": "fr;q=0.9, zh;q=0.8"})
    assert chinese.headers["Content-Language"] == ZH
    english = await client.get("/login", headers={"Accept-Language": "fr, de;q=0.5"})
    assert english.headers["Content-Language"] == "en"
    assert html_lang(english) == "en"


async def test_the_cookie_beats_accept_language(client: httpx.AsyncClient) -> None:
    client.cookies.set("bastion_lang", "en")
    response = await client.get("/login", headers={"Accept-Language": "zh-CN"})
    assert response.headers["Content-Language"] == "en"
    assert "Sign in" in response.text
    client.cookies.set("bastion_lang", "zh-CN")
    response = await client.get("/login", headers={"Accept-Language": "en"})
    assert response.headers["Content-Language"] == ZH


async def test_an_unsupported_lang_falls_back_and_sets_no_cookie(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/login?lang=fr", headers={"Accept-Language": "zh-CN"})
    assert response.status_code == 200
    assert response.headers["Content-Language"] == ZH  # the browser's language, not French
    assert not any("bastion_lang=" in c for c in response.headers.get_list("set-cookie"))
    plain = await client.get("/login?lang=xx-YY")
    assert plain.headers["Content-Language"] == "en"


async def test_a_users_choice_is_kept_for_the_account_on_every_device(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as laptop, site.client() as phone:
        assert (await login(laptop, "alice")).status_code == 303
        chosen = await laptop.post(
            "/language",
            data={"lang": ZH, "next": "/dashboard", "csrf_token": await csrf_token(laptop)},
            headers=ORIGIN,
        )
        assert chosen.status_code == 303
        assert chosen.headers["location"] == "/dashboard"
        assert (await laptop.get("/dashboard")).headers["Content-Language"] == ZH
        user = await site.bastion.services.users.get_by_username("alice")
        assert user is not None
        assert user.language == ZH
        # Another device: no cookie, an English browser; after signing in, Chinese.
        assert "bastion_lang" not in phone.cookies
        assert (await login(phone, "alice")).status_code == 303
        dashboard = await phone.get("/dashboard", headers={"Accept-Language": "en"})
        assert dashboard.status_code == 200
        assert dashboard.headers["Content-Language"] == ZH
        assert html_lang(dashboard) == ZH


async def test_choosing_a_language_needs_the_csrf_token(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        refused = await client.post(
            "/language", data={"lang": ZH, "next": "/dashboard"}, headers=ORIGIN
        )
        assert_refused(refused)
        user = await site.bastion.services.users.get_by_username("alice")
        assert user is not None
        assert user.language != ZH
        assert (await client.get("/dashboard")).headers["Content-Language"] == "en"


async def test_choosing_a_language_signed_out_sets_only_the_cookie(
    client: httpx.AsyncClient,
) -> None:
    token = await csrf_token(client, "/login")
    chosen = await client.post(
        "/language",
        data={"lang": ZH, "next": "https://evil.example/", "csrf_token": token},
        headers=ORIGIN,
    )
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/"  # next stays on this site
    assert client.cookies.get("bastion_lang") == ZH
    assert (await client.get("/login")).headers["Content-Language"] == ZH


async def test_an_error_page_before_the_session_middleware_follows_accept_language(
    client: httpx.AsyncClient,
) -> None:
    """Oversized headers (431) are refused before the session or the language middleware
    runs: the page still chooses from the request (Accept-Language, the cookie)."""
    filler = {"X-Filler": "x" * 70_000}
    chinese = await client.get("/login", headers={**filler, "Accept-Language": "zh-CN"})
    assert chinese.status_code == 431
    assert html_lang(chinese) == ZH
    assert "Request headers too large" not in chinese.text
    english = await client.get("/login", headers={**filler, "Accept-Language": "en"})
    assert english.status_code == 431
    assert html_lang(english) == "en"
    client.cookies.set("bastion_lang", "zh-CN")
    by_cookie = await client.get("/login", headers={**filler, "Accept-Language": "en"})
    assert html_lang(by_cookie) == ZH
