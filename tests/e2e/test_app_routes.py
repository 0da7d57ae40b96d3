"""The application's own routes: browser-facing protection (``SignedInUser``,
``require_role(..., browser=True)``), Bastion's template helpers in the application's own
templates, and CSP additions on the application's own prefixes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from html import escape, unescape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import DictLoader, Environment

from bastion.asgi.headers import content_security_policy
from bastion.exceptions import ConfigError
from bastion.fastapi import (
    CurrentUser,
    SignedInUser,
    add_template_helpers,
    cached,
    install,
    require_role,
    signed_in_user,
)
from bastion.settings import Settings
from tests.e2e.conftest import (
    CSRF_FIELD,
    CSRF_META,
    ORIGIN,
    PASSWORD,
    MakeSettings,
    Site,
    login,
    store_params,
)

# What Chromium sends when it loads a page.
BROWSER = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
    "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
}
NOTES_PAGE = """<!doctype html>
<html><head>{{ csrf_meta() }}<title>Notes</title></head>
<body>
<h1>Notes of {{ user.username }}</h1>
<ul>{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>
<form method="post" action="/notes">{{ csrf_field() }}<input name="text"><button>Add</button></form>
<script nonce="{{ csp_nonce() }}">document.title = "ran";</script>
</body></html>"""
CONTACT_PAGE = """<form method="post" action="/contact">{{ csrf_field() }}
<textarea name="message"></textarea><button>Send</button></form>"""
CSP_ADDITIONS = {
    "/reports": {"img-src": ["https://charts.example"]},
    "/": {"frame-src": ["https://video.example"]},
}
NONCE = re.compile(r'<script nonce="([^"]+)">')


def build_app(settings: Settings, csp_additions: Mapping[str, Any] | None = None) -> FastAPI:
    """An application with its own pages, API and templates, Bastion installed."""
    app = FastAPI()
    install(app, settings, csp_additions=csp_additions)
    templates = Jinja2Templates(
        env=Environment(
            loader=DictLoader({"notes.html": NOTES_PAGE, "contact.html": CONTACT_PAGE}),
            autoescape=True,
        )
    )
    add_template_helpers(templates)
    plain = Environment(autoescape=True)
    add_template_helpers(plain)
    notes: dict[int, list[str]] = {}

    @app.get("/notes", response_class=HTMLResponse)
    async def notes_page(request: Request, user: SignedInUser) -> HTMLResponse:
        context = {"user": user, "notes": notes.get(user.user_id, [])}
        return templates.TemplateResponse(request, "notes.html", context)

    @app.get("/notes/tagged/{tag}", response_class=HTMLResponse)
    async def tagged(tag: str, user: SignedInUser) -> str:
        return f"<h1>{escape(tag)}</h1>"

    @app.post("/notes")
    async def add_note(user: SignedInUser, text: Annotated[str, Form()]) -> RedirectResponse:
        notes.setdefault(user.user_id, []).append(text)
        return RedirectResponse("/notes", status_code=303)

    @app.post("/notes/upload")
    async def upload(user: SignedInUser, file: UploadFile) -> dict[str, int]:
        return {"size": len(await file.read())}

    @app.get("/plain", response_class=HTMLResponse)
    async def plain_page(request: Request, user: SignedInUser) -> str:
        template = plain.from_string("{{ csrf_meta() }}{{ csrf_field() }}{{ csp_nonce() }}")
        return template.render(request=request)

    @app.get("/contact", response_class=HTMLResponse)
    async def contact_page(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, "contact.html")

    @app.post("/contact")
    async def contact(message: Annotated[str, Form()]) -> RedirectResponse:
        return RedirectResponse("/contact?sent=1", status_code=303)

    @app.get("/api/notes/count")
    @cached(ttl=60, scope="user")
    async def count(user: Any = Depends(signed_in_user)) -> int:  # noqa: B008
        # Not annotated as a Principal: found as the principal by its mark alone.
        return len(notes.get(user.user_id, []))

    @app.get("/api/notes")
    async def api_notes(user: CurrentUser) -> list[str]:
        return notes.get(user.user_id, [])

    @app.get(
        "/reports",
        response_class=HTMLResponse,
        # "admin" is a role every database defines.
        dependencies=[Depends(require_role("admin", browser=True))],
    )
    async def reports() -> str:
        return "<h1>Reports</h1>"

    @app.get("/reports/chart", response_class=HTMLResponse)
    async def chart() -> str:
        return "<h1>Chart</h1>"

    @app.get("/reportsX", response_class=HTMLResponse)
    async def not_under_reports() -> str:
        return "<h1>Not a report</h1>"

    return app


@pytest.fixture(params=store_params("sql", "redis"))
def store_kind(request: pytest.FixtureRequest) -> str:
    """One database of each kind is enough here: what is tested is the answers' form."""
    return str(request.param)


@pytest_asyncio.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[Site]:
    app = build_app(make_settings(), CSP_ADDITIONS)
    async with app.router.lifespan_context(app):
        yield Site(app, app.state.bastion)


@pytest_asyncio.fixture
async def client(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with site.client() as http:
        yield http


async def get_without_accept(client: httpx.AsyncClient, path: str) -> httpx.Response:
    request = client.build_request("GET", path)
    del request.headers["accept"]
    return await client.send(request)


def assert_bearer_challenge(response: httpx.Response, error: str | None = None) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    if error is not None:
        assert f'error="{error}"' in challenge
    assert response.headers["content-type"] == "application/json"
    assert "location" not in response.headers


async def bearer_token(client: httpx.AsyncClient, username: str) -> str:
    grant = {"grant_type": "password", "username": username, "password": PASSWORD}
    response = await client.post("/api/token", data=grant)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def directives(response: httpx.Response) -> dict[str, list[str]]:
    csp = response.headers["content-security-policy"]
    return {d.split()[0]: d.split()[1:] for d in csp.split("; ")}


def nonce_of(response: httpx.Response) -> str:
    match = re.search(r"'nonce-([^']+)'", response.headers["content-security-policy"])
    assert match, response.headers["content-security-policy"]
    return match.group(1)


# -- who is sent to sign in, who gets 401 ---------------------------------------------------


async def test_anonymous_browser_is_sent_to_sign_in_and_comes_back_with_the_query(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    wanted = "/notes?tag=a%20b&sort=new"
    response = await client.get(wanted, headers=BROWSER)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location == f"/login?next={quote(wanted, safe='/')}"
    next_path = parse_qs(urlsplit(location).query)["next"][0]
    assert next_path == wanted
    signed_in = await login(client, "alice", next_path=next_path)
    assert signed_in.headers["location"] == wanted
    assert (await client.get(wanted, headers=BROWSER)).status_code == 200


async def test_a_path_with_non_ascii_characters_comes_back_after_sign_in(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    wanted = "/notes/tagged/caf%C3%A9"  # /notes/tagged/café, as the browser sends it
    response = await client.get(wanted, headers=BROWSER)
    next_path = parse_qs(urlsplit(response.headers["location"]).query)["next"][0]
    assert next_path == wanted
    assert (await login(client, "alice", next_path=next_path)).headers["location"] == wanted
    assert (await client.get(wanted, headers=BROWSER)).text == "<h1>café</h1>"


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "*/*",
        None,
        "text/html;q=0.5, application/json",
        "text/html, application/json",
        "text/*;q=0.9, application/*",
        "text/html;q=0",
        "text/html;q=abc, application/json;q=0.1",
        "text/html;q=nan",
    ],
    ids=[
        "json",
        "anything",
        "missing",
        "json-preferred",
        "tie",
        "wildcards",
        "html-refused",
        "bad-q",
        "nan-q",
    ],
)
async def test_anonymous_api_clients_get_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, accept: str | None
) -> None:
    if accept is None:
        response = await get_without_accept(client, "/notes")
    else:
        response = await client.get("/notes", headers={"Accept": accept})
    assert_bearer_challenge(response)
    assert response.json() == {"detail": "authentication required"}


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "TEXT/HTML ; Q=1",
        "text/html, application/json;q=0.9",
        "text/*, application/json;q=0.5",
    ],
)
async def test_accept_preferring_html_counts_as_a_browser(
    client: httpx.AsyncClient, accept: str
) -> None:
    response = await client.get("/notes", headers={"Accept": accept})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/notes"


async def test_a_bearer_token_decides_even_with_a_browser_accept(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    refused = await client.get("/notes", headers={**BROWSER, "Authorization": "Bearer junk"})
    assert_bearer_challenge(refused, "invalid_token")
    token = await bearer_token(client, "alice")
    page = await client.get("/notes", headers={**BROWSER, "Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    assert "Notes of alice" in page.text


async def test_a_signed_in_browser_and_its_scripts_see_the_page(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    for headers in (BROWSER, {"Accept": "*/*"}, {"Accept": "application/json"}):
        response = await client.get("/notes", headers=headers)
        assert response.status_code == 200, headers
        assert "Notes of alice" in response.text


async def test_a_missing_role_is_a_403_page_for_browsers_and_json_for_api_clients(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await site.create_user("sam", roles=("admin",))
    await login(client, "alice")
    page = await client.get("/reports", headers=BROWSER)
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Forbidden</h1>" in page.text
    assert "You may not do this." in unescape(page.text)
    for accept in ("application/json", "*/*"):
        refused = await client.get("/reports", headers={"Accept": accept})
        assert refused.status_code == 403
        assert refused.json() == {"detail": "You may not do this."}
    token = await bearer_token(client, "alice")
    bearer = await client.get("/reports", headers={**BROWSER, "Authorization": f"Bearer {token}"})
    assert bearer.status_code == 403
    assert bearer.json() == {"detail": "You may not do this."}

    async with site.client() as admin:
        await login(admin, "sam")
        assert (await admin.get("/reports", headers=BROWSER)).text == "<h1>Reports</h1>"


async def test_anonymous_callers_of_a_role_route_are_sent_to_sign_in_or_refused(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/reports", headers=BROWSER)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/reports"
    assert_bearer_challenge(await client.get("/reports", headers={"Accept": "*/*"}))


async def test_current_user_stays_an_api_dependency(client: httpx.AsyncClient) -> None:
    """The README's ``CurrentUser`` never redirects, whatever the caller accepts."""
    response = await client.get("/api/notes", headers=BROWSER)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


# -- the application's own templates and forms ---------------------------------------------


async def test_app_template_renders_the_csrf_field_meta_tag_and_nonce(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    tokens = set()
    for _ in range(2):
        page = await client.get("/notes", headers=BROWSER)
        field, meta = CSRF_FIELD.findall(page.text), CSRF_META.findall(page.text)
        assert len(field) == 1
        assert meta == field  # one masked token per response
        tokens.add(field[0])
        assert NONCE.findall(page.text) == [nonce_of(page)]
    assert len(tokens) == 2  # masked afresh for every response


async def test_app_form_post_succeeds_with_the_csrf_field_and_fails_without(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    page = await client.get("/notes", headers=BROWSER)
    token = CSRF_FIELD.findall(page.text)[0]

    refused = await client.post("/notes", data={"text": "forged"}, headers=ORIGIN)
    assert refused.status_code == 403
    added = await client.post("/notes", data={"text": "milk", "csrf_token": token}, headers=ORIGIN)
    assert added.status_code == 303
    notes = (await client.get("/notes", headers=BROWSER)).text
    assert "<li>milk</li>" in notes
    assert "forged" not in notes


async def test_multipart_posts_send_the_token_in_the_header(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    token = CSRF_META.findall((await client.get("/notes", headers=BROWSER)).text)[0]
    upload = {"file": ("note.txt", b"twelve bytes", "text/plain")}
    # The field does not work in a multipart body: the middleware reads urlencoded ones only.
    in_body = await client.post(
        "/notes/upload", files=upload, data={"csrf_token": token}, headers=ORIGIN
    )
    assert in_body.status_code == 403
    in_header = await client.post(
        "/notes/upload", files=upload, headers={**ORIGIN, "X-CSRF-Token": token}
    )
    assert in_header.status_code == 200
    assert in_header.json() == {"size": 12}


async def test_a_plain_jinja_environment_gets_the_helpers_too(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    page = await client.get("/plain", headers=BROWSER)
    assert CSRF_META.findall(page.text) == CSRF_FIELD.findall(page.text) != []
    assert page.text.endswith(nonce_of(page))


async def test_an_anonymous_visitors_form_works_through_a_pre_session(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/contact", headers=BROWSER)
    assert "bastion_pre" in page.cookies
    token = CSRF_FIELD.findall(page.text)[0]
    assert (
        await client.post("/contact", data={"message": "hi"}, headers=ORIGIN)
    ).status_code == 403
    sent = await client.post(
        "/contact", data={"message": "hi", "csrf_token": token}, headers=ORIGIN
    )
    assert sent.status_code == 303


async def test_signed_in_user_keys_a_per_user_cache_entry(
    site: Site, client: httpx.AsyncClient
) -> None:
    assert_bearer_challenge(await client.get("/api/notes/count"))
    await site.create_user("alice")
    await login(client, "alice")
    assert (await client.get("/api/notes/count")).json() == 0


def test_helpers_without_the_request_say_what_is_missing() -> None:
    env = Environment(autoescape=True)
    add_template_helpers(env)
    with pytest.raises(RuntimeError, match=r"csrf_field\(\) needs the request"):
        env.from_string("{{ csrf_field() }}").render()


# -- CSP additions ----------------------------------------------------------------------------


async def test_csp_additions_apply_on_their_prefix_only(client: httpx.AsyncClient) -> None:
    for path in ("/reports/chart", "/reports"):
        response = await client.get(path, headers=BROWSER)
        assert directives(response)["img-src"] == ["'self'", "data:", "https://charts.example"]
        assert directives(response)["frame-src"] == ["'self'", "https://video.example"]
    elsewhere = directives(await client.get("/reportsX", headers=BROWSER))
    assert elsewhere["img-src"] == ["'self'", "data:"]
    assert elsewhere["frame-src"] == ["'self'", "https://video.example"]  # the "/" addition
    for kept in ("frame-ancestors", "base-uri", "object-src"):
        assert elsewhere[kept] == ["'none'"]


@pytest.mark.parametrize(
    "path", ["/login", "/", "/register", "/docs", "/_bastion/static/bastion.css", "/healthz"]
)
async def test_bastion_routes_keep_their_csp_under_an_added_prefix(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers=BROWSER)
    assert response.status_code < 500
    assert response.headers["content-security-policy"] == content_security_policy(
        nonce_of(response)
    )


@pytest.mark.parametrize(
    "additions",
    [
        {"/embed": {"frame-ancestors": ["https://partner.example"]}},
        {"/embed": {"base-uri": ["https://partner.example"]}},
        {"/embed": {"object-src": ["https://partner.example"]}},
        {"/embed": {"default-src": ["https://partner.example"]}},
        {"/embed": {"sandbox": ["allow-scripts"]}},
        {"/embed": {"script-src": ["'unsafe-inline'"]}},
        {"/embed": {"script-src": ["'unsafe-eval'"]}},
        {"/embed": {"img-src": ["'self' https://x.example"]}},
        {"/embed": {"img-src": ["https://x.example; script-src *"]}},
        {"/embed": {"img-src": ["https://x.example,https://y.example"]}},
        {"/embed": {"img-src": ["*"]}},
        {"/embed": {"img-src": ["https://*"]}},
        {"/embed": {"img-src": ["https://x.example\r\nSet-Cookie: a=b"]}},
        {"/embed": {"img-src": "https://x.example"}},
        {"/embed": {"script-src": ["https:"]}},
        {"/embed": {"script-src": ["data:"]}},
        {"/embed": {"frame-src": ["javascript:"]}},
        {"/embed": {"frame-src": ["javascript://x.example"]}},
        {"/embed": ["img-src", "https://x.example"]},
        {"/embed": {"img-src": ["'sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='"]}},
        {"embed": {"img-src": ["https://x.example"]}},
        {"/embed?x": {"img-src": ["https://x.example"]}},
    ],
    ids=lambda additions: repr(additions)[:60],
)
def test_invalid_csp_additions_are_refused_at_install(
    tmp_path: Path, additions: Mapping[str, Mapping[str, Sequence[str]]]
) -> None:
    with pytest.raises(ConfigError, match="CSP additions"):
        install(FastAPI(), Settings(env="test", data_dir=tmp_path), csp_additions=additions)


def test_valid_csp_additions_are_accepted(tmp_path: Path) -> None:
    install(
        FastAPI(),
        Settings(env="test", data_dir=tmp_path),
        csp_additions={
            "/media/": {
                "img-src": ["https://*.cdn.example:8443/img/", "blob:"],
                "media-src": ["https://video.example"],
                "script-src": ["https://js.example/widget.js"],
                "style-src": ["'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"],
                "connect-src": ["wss://live.example"],
            }
        },
    )
