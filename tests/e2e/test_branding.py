"""The site's name, look and templates are the application's: BASTION_SITE_NAME on every
page, one theme block, templates overridden (and extended) from the application's folder,
and no "Protected by Bastion" unless the application writes it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.e2e.conftest import MakeSettings, Site, login
from tests.e2e.own_app import own_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TEMPLATES = ROOT / "docs" / "examples" / "branding" / "templates"
HTML = {"Accept": "text/html"}
SITE_NAME = "Acme & <Co> Notes"
ESCAPED = "Acme &amp; &lt;Co&gt; Notes"
TITLE = re.compile(r"<title>(.*?)</title>", re.S)
BRAND = re.compile(r'<a class="brand" href="/">(.*?)</a>', re.S)


def title_of(page: httpx.Response) -> str:
    match = TITLE.search(page.text)
    assert match, f"{page.url} has no title"
    return match.group(1)


async def every_page(site: Site, client: httpx.AsyncClient) -> list[httpx.Response]:
    """Each of Bastion's pages: anonymous ones, then a signed-in admin's, and error pages
    for both (an error page is rendered apart from the others)."""
    await site.create_user("root", roles=("admin",))
    pages = [await client.get(path) for path in ("/login", "/register")]
    pages.append(await client.get("/nowhere", headers=HTML))
    assert (await login(client, "root")).status_code == 303
    signed_in = (
        "/dashboard",
        "/account/sessions",
        "/account/password",
        "/admin/users",
        "/admin/sessions",
        "/admin/audit",
    )
    pages += [await client.get(path) for path in signed_in]
    pages.append(await client.get("/nowhere", headers=HTML))
    for page in pages:
        assert "<html" in page.text, page.url
    return pages


async def test_the_site_name_is_in_every_title_header_and_error_page(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(site_name=SITE_NAME, registration="open")
    async with own_app(settings) as site, site.client() as client:
        pages = await every_page(site, client)
        docs = await client.get("/docs")
    for page in pages:
        assert title_of(page).endswith(f" · {ESCAPED}"), page.url
        brand = BRAND.search(page.text)
        assert brand is not None, page.url
        assert f"<span>{ESCAPED}</span>" in brand.group(1)
        assert "Bastion" not in page.text, page.url
    assert title_of(pages[2]) == f"Not found · {ESCAPED}"
    # /docs names the site too, not the FastAPI application's title.
    assert title_of(docs) == f"API docs · {ESCAPED}"


async def test_the_default_site_name_is_bastion(site: Site, client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    assert title_of(page) == "Sign in · Bastion"
    assert title_of(await client.get("/docs")) == "API docs · Bastion"


async def test_the_footer_does_not_advertise_bastion_by_default(
    site: Site, client: httpx.AsyncClient
) -> None:
    for page in await every_page(site, client):
        assert "Protected by" not in page.text, page.url
        assert "<footer" not in page.text, page.url


async def test_an_app_template_replaces_bastions_and_extends_the_original(
    make_settings: MakeSettings,
) -> None:
    """docs/examples/branding/templates: a base.html extending "bastion/base.html" (theme,
    logo, footer) and a login.html extending "bastion/login.html"."""
    settings = make_settings(site_name="Acme Notes")
    async with (
        own_app(settings, templates_dir=EXAMPLE_TEMPLATES) as site,
        site.client() as client,
    ):
        await site.create_user("alice")
        login_page = await client.get("/login")
        not_found = await client.get("/nowhere", headers=HTML)
        await login(client, "alice")
        dashboard = await client.get("/dashboard")
    # The application's login.html wins, and the original's form is still inside it.
    assert "No account yet? Ask the team" in login_page.text
    assert 'name="password"' in login_page.text
    assert title_of(login_page) == "Sign in · Acme Notes"
    # Its base.html, which extends the original, frames every page, error pages included.
    for page in (login_page, not_found, dashboard):
        assert '<circle cx="12" cy="12" r="10"/>' in page.text, page.url
        assert '<footer class="footer">Acme Notes · <a href="/about">About</a></footer>' in (
            page.text
        )
        assert "--primary: #0f766e;" in page.text
        # The theme's inline style carries the response's CSP nonce, so the browser applies it.
        nonce = re.search(r"'nonce-([^']+)'", page.headers["content-security-policy"])
        assert nonce is not None
        assert f'<style nonce="{nonce.group(1)}">' in page.text
    assert "Welcome alice" in dashboard.text
