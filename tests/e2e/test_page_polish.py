"""What a new user sees on Bastion's pages: the sign-out notice, how long a throttled login
waits, error pages that keep the navigation and say things once, a favicon everywhere, and
``/docs`` under the same strict CSP as every page."""

from __future__ import annotations

import json
import re
from html import unescape

import httpx
import pytest

from bastion.exceptions import RateLimited
from bastion.fastapi.docs import SWAGGER_ASSETS
from tests.e2e.conftest import (
    CSRF_META,
    ORIGIN,
    MakeSettings,
    Site,
    SiteFactory,
    csrf_from,
    csrf_token,
    login,
)

HTML = {"Accept": "text/html"}
SIGNED_OUT = "You have been signed out."


def visible_text(html: str) -> str:
    """The text of ``<main>``, tags dropped: what the page says below the navigation."""
    main = re.search(r"<main[^>]*>(.*)</main>", html, re.S)
    assert main, "page has no <main>"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", main.group(1))).split())


def assert_strict_csp(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert re.search(r"script-src 'self' 'nonce-[^']+';", csp), csp
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp


# -- signing out -----------------------------------------------------------------------------


async def test_signing_out_shows_a_notice_on_the_login_page(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    response = await client.post(
        "/logout", data={"csrf_token": await csrf_token(client)}, headers=ORIGIN
    )
    assert response.status_code == 303
    page = await client.get(response.headers["location"])
    assert page.status_code == 200
    assert f'<div class="alert alert-ok" role="status">{SIGNED_OUT}</div>' in page.text
    # Still a working sign-in form: CSRF field and meta tag, never stored by a cache.
    assert csrf_from(page.text)
    assert CSRF_META.search(page.text)
    assert page.headers["cache-control"] == "no-store"
    assert_strict_csp(page)


async def test_login_page_notice_is_never_text_from_the_url(client: httpx.AsyncClient) -> None:
    for done in ("<script>alert(1)</script>", "You have been signed out.", "signed-out "):
        page = await client.get("/login", params={"done": done})
        assert page.status_code == 200
        assert 'role="status"' not in page.text
        assert "<script>alert" not in page.text
    assert SIGNED_OUT not in (await client.get("/login")).text


# -- a throttled login -----------------------------------------------------------------------


async def test_a_throttled_login_says_how_long_to_wait(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(login_ip_limit="1/hour"))
    await site.create_user("alice")
    async with site.client() as client:
        assert (await login(client, "alice", "not the password")).status_code == 400
        limited = await login(client, "alice")
    assert limited.status_code == 429
    assert 3540 < int(limited.headers["retry-after"]) <= 3600
    assert "Too many attempts. Please wait 60 minutes and try again." in limited.text
    assert 'name="password"' in limited.text


async def test_a_rate_limited_page_says_how_long_to_wait(site: Site) -> None:
    async def busy() -> None:
        raise RateLimited(90)

    site.app.add_api_route("/busy", busy)
    async with site.client() as client:
        page = await client.get("/busy", headers=HTML)
    assert page.status_code == 429
    assert page.headers["retry-after"] == "90"
    assert "Please wait 90 seconds and try again." in visible_text(page.text)


# -- error pages -----------------------------------------------------------------------------


async def test_error_pages_keep_the_navigation_for_signed_in_users(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice", roles=("admin",))
    await login(client, "alice")
    page = await client.get("/nowhere", headers=HTML)
    assert page.status_code == 404
    assert '<nav class="nav" aria-label="Account">' in page.text
    assert 'href="/admin/users"' in page.text
    # The sign-out form works from the error page: it carries a valid CSRF token.
    assert CSRF_META.search(page.text)
    signed_out = await client.post(
        "/logout", data={"csrf_token": csrf_from(page.text)}, headers=ORIGIN
    )
    assert signed_out.status_code == 303
    assert (await client.get("/dashboard")).status_code == 303


async def test_error_pages_for_visitors_have_no_navigation_and_set_no_cookie(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/nowhere", headers=HTML)
    assert page.status_code == 404
    assert 'aria-label="Account"' not in page.text
    assert "Sign out" not in page.text
    assert page.headers.get_list("set-cookie") == []
    assert_strict_csp(page)


async def test_the_404_page_says_not_found_once(client: httpx.AsyncClient) -> None:
    page = await client.get("/nowhere", headers=HTML)
    assert page.status_code == 404
    text = visible_text(page.text)
    assert text.casefold().count("not found") == 1, text
    assert "There is no page at this address." in text


async def test_a_405_page_says_its_title_once(client: httpx.AsyncClient) -> None:
    page = await client.request("PUT", "/login", headers=HTML)
    assert page.status_code == 405
    text = visible_text(page.text)
    assert text.casefold().count("method not allowed") == 1, text


async def test_json_errors_keep_their_detail(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


# -- favicon ---------------------------------------------------------------------------------


async def test_favicon_ico_is_an_icon_not_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/vnd.microsoft.icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # the ICO header


async def test_every_page_links_its_favicon(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    icon = '<link rel="icon" href="/_bastion/static/favicon.svg" type="image/svg+xml">'
    pages = [await client.get("/login"), await client.get("/nowhere", headers=HTML)]
    pages.append(await client.get("/docs"))
    await login(client, "alice")
    pages += [await client.get(path) for path in ("/dashboard", "/account/sessions")]
    pages.append(await client.get("/nowhere", headers=HTML))
    for page in pages:
        assert icon in page.text, page.url
    svg = await client.get("/_bastion/static/favicon.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"] == "image/svg+xml"


# -- /docs -----------------------------------------------------------------------------------


async def test_docs_run_swagger_ui_5_from_local_files_under_the_strict_csp(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert_strict_csp(page)
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
    assert f"{SWAGGER_ASSETS}/swagger-ui-bundle.js" in assets
    assert f"{SWAGGER_ASSETS}/swagger-ui.css" in assets
    assert "<script>" not in page.text  # no inline script: nothing for the CSP to allow
    for path in assets:
        assert (await client.get(path)).status_code == 200, path
    package = await client.get(f"{SWAGGER_ASSETS}/package.json")
    assert json.loads(package.text)["version"].startswith("5.")


@pytest.mark.parametrize("path", ["/redoc", "/docs/oauth2-redirect"])
async def test_fastapis_cdn_pages_are_gone(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path, headers=HTML)).status_code == 404
