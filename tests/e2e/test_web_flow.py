"""The browser sign-in flow through the ASGI app, on every session store."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from bastion.sessions import session_key
from tests.e2e.conftest import (
    ORIGIN,
    PASSWORD,
    Site,
    assert_refused,
    csrf_from,
    csrf_token,
    form_error,
    login,
    site_state,
)


def session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("bastion_session=") and "Max-Age=0" not in header:
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


async def test_root_redirects_anonymous_visitors_to_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


async def test_login_page_has_the_contract_fields(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert response.status_code == 200
    for field in ('name="username"', 'name="password"', 'name="remember"', 'name="csrf_token"'):
        assert field in response.text
    assert '<meta name="csrf-token"' in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_login_issues_new_session_cookie_and_redirects(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    response = await login(client, "alice")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    raw = session_cookie(response)
    assert raw is not None
    assert len(raw) >= 43
    header = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("bastion_session=")
    )
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert "Domain" not in header
    assert "Max-Age" not in header
    dashboard = await client.get("/dashboard")
    assert dashboard.status_code == 200
    assert "Welcome alice" in dashboard.text


async def test_only_the_hash_of_the_session_id_is_stored(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    raw = session_cookie(await login(client, "alice"))
    assert raw is not None
    store = site.bastion.services.session_store
    assert await store.get(f"s:{raw}") is None
    stored = await store.get(f"s:{session_key(raw)}")
    assert stored is not None
    assert raw.encode() not in stored


async def test_login_always_issues_a_new_id(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    first = session_cookie(await login(client, "alice"))
    second = session_cookie(await login(client, "alice"))
    assert first
    assert second
    assert first != second
    # Logging in again ended the previous session of this browser.
    assert await site.bastion.services.sessions.load(first) is None
    assert await site.bastion.services.sessions.load(second) is not None


async def test_wrong_password_unknown_user_and_disabled_account_look_the_same(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await site.create_user("alice")
    await site.create_user("bob")
    await site.bastion.services.users.set_active(user_id, False)
    answers = [
        await login(client, "alice"),  # disabled, right password
        await login(client, "bob", "wrong password"),
        await login(client, "nobody"),
    ]
    assert [a.status_code for a in answers] == [400, 400, 400]
    messages = [form_error(a.text) for a in answers]
    assert messages[0]
    assert len(set(messages)) == 1
    assert all(session_cookie(a) is None for a in answers)


async def test_login_without_csrf_token_is_refused(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    await client.get("/login")
    before = await site_state(site)
    response = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers=ORIGIN
    )
    assert_refused(response)
    assert await site_state(site) == before  # no session, no last-login, no audit entry


async def test_login_from_another_origin_is_refused(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    page = await client.get("/login")
    before = await site_state(site)
    response = await client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(page.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert_refused(response)
    assert await site_state(site) == before


async def test_login_without_origin_or_referer_is_refused(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    page = await client.get("/login")
    before = await site_state(site)
    response = await client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert_refused(response)
    assert await site_state(site) == before


async def test_csrf_token_rotates_at_login(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    page = await client.get("/login")
    before = csrf_from(page.text)
    form = {"username": "alice", "password": PASSWORD, "csrf_token": before}
    assert (await client.post("/login", data=form, headers=ORIGIN)).status_code == 303
    # The pre-login token no longer works for the signed-in session.
    state = await site_state(site)
    response = await client.post("/logout", data={"csrf_token": before}, headers=ORIGIN)
    assert_refused(response)
    assert await site_state(site) == state
    assert (await client.get("/dashboard")).status_code == 200


JUNK_BEARER = {"Authorization": "Bearer junk"}


@pytest.mark.parametrize("origin", [{}, ORIGIN], ids=["no-origin", "same-origin"])
async def test_a_junk_bearer_header_does_not_let_logout_skip_csrf(
    site: Site, client: httpx.AsyncClient, origin: dict[str, str]
) -> None:
    await site.create_user("alice")
    raw = session_cookie(await login(client, "alice"))
    before = await site_state(site)
    response = await client.post("/logout", headers={**JUNK_BEARER, **origin})
    assert_refused(response)
    assert await site_state(site) == before
    assert await site.bastion.services.sessions.load(raw) is not None
    assert (await client.get("/dashboard")).status_code == 200


@pytest.mark.parametrize("origin", [{}, ORIGIN], ids=["no-origin", "same-origin"])
@pytest.mark.parametrize("signed_in", [False, True], ids=["pre-session", "session"])
async def test_a_junk_bearer_header_does_not_let_login_skip_csrf(
    site: Site, client: httpx.AsyncClient, origin: dict[str, str], signed_in: bool
) -> None:
    # A forged login (into the attacker's account) with the victim's cookie riding along.
    await site.create_user("alice")
    await site.create_user("mallory")
    if signed_in:
        await login(client, "alice")
    else:
        await client.get("/login")  # the signed pre-session cookie
    before = await site_state(site)
    response = await client.post(
        "/login",
        data={"username": "mallory", "password": PASSWORD},
        headers={**JUNK_BEARER, **origin},
    )
    assert_refused(response)
    assert await site_state(site) == before  # no new session, the old one still live
    if signed_in:
        assert (await client.get("/api/me")).json()["username"] == "alice"


@pytest.mark.parametrize("origin", [{}, ORIGIN], ids=["no-origin", "same-origin"])
async def test_a_junk_bearer_header_does_not_let_admin_forms_skip_csrf(
    site: Site, client: httpx.AsyncClient, origin: dict[str, str]
) -> None:
    await site.create_user("root", roles=("admin",))
    alice = await site.create_user("alice")
    await login(client, "root")
    before = await site_state(site)
    response = await client.post(
        f"/admin/users/{alice}/roles", data={"roles": "admin"}, headers={**JUNK_BEARER, **origin}
    )
    assert_refused(response)
    assert await site_state(site) == before
    assert await site.bastion.services.users.roles_of(alice) == set()


async def test_bearer_only_requests_need_no_csrf_token(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    tokens = [(await client.post("/api/token", data=grant)).json() for _ in range(2)]
    assert len(client.cookies.jar) == 0  # an API client: no cookie of ours
    bearer = {"Authorization": f"Bearer {tokens[0]['access_token']}"}
    other = (
        await client.get(
            "/api/me", headers={"Authorization": f"Bearer {tokens[1]['access_token']}"}
        )
    ).json()["session_id"]
    response = await client.delete(f"/api/sessions/{other}", headers=bearer)
    assert response.status_code == 204


async def test_masked_tokens_differ_per_response(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    assert await csrf_token(client) != await csrf_token(client)


async def test_logout_ends_the_session_server_side(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    raw = session_cookie(await login(client, "alice"))
    token = await csrf_token(client)
    response = await client.post("/logout", data={"csrf_token": token}, headers=ORIGIN)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?done=signed-out"
    cleared = [
        h for h in response.headers.get_list("set-cookie") if h.startswith("bastion_session=")
    ]
    assert cleared
    assert "Max-Age=0" in cleared[0]
    assert await site.bastion.services.sessions.load(raw) is None
    # Replaying the old cookie does not get back in.
    async with site.client(cookies={"bastion_session": raw or ""}) as replay:
        assert (await replay.get("/dashboard")).status_code == 303


async def test_logout_without_token_is_refused(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    before = await site_state(site)
    response = await client.post("/logout", headers=ORIGIN)
    assert_refused(response)
    assert await site_state(site) == before
    assert (await client.get("/dashboard")).status_code == 200


async def test_dashboard_needs_a_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/dashboard"


async def test_unknown_session_id_is_ignored_and_cleared(site: Site) -> None:
    async with site.client(cookies={"bastion_session": "A" * 43}) as forged:
        response = await forged.get("/dashboard")
    assert response.status_code == 303
    assert any("Max-Age=0" in h for h in response.headers.get_list("set-cookie"))


async def test_next_is_followed_only_to_same_origin_paths(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    good = await login(client, "alice", next_path="/account/sessions?x=1")
    assert good.headers["location"] == "/account/sessions?x=1"
    for evil in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ):
        response = await login(client, "alice", next_path=evil)
        assert response.headers["location"] == "/dashboard", evil


async def test_remember_me_sets_a_persistent_cookie(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    response = await login(client, "alice", remember=True)
    header = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("bastion_session=")
    )
    assert f"Max-Age={site.bastion.settings.remember_me_timeout}" in header


async def test_remember_me_sessions_get_their_own_idle_timeout(
    site_factory: Any, make_settings: Any
) -> None:
    site = await site_factory(make_settings(remember_me_idle_timeout=7_200))
    await site.create_user("alice")
    sessions = site.bastion.services.sessions
    async with site.client() as remembered, site.client() as plain:
        remembered_id = session_cookie(await login(remembered, "alice", remember=True))
        plain_id = session_cookie(await login(plain, "alice"))
    remembered_session = await sessions.load(remembered_id)
    plain_session = await sessions.load(plain_id)
    assert remembered_session is not None
    assert plain_session is not None
    assert remembered_session.idle_timeout == 7_200
    assert plain_session.idle_timeout == site.bastion.settings.session_idle_timeout == 1_800


async def test_login_page_explains_keep_me_signed_in(site_factory: Any, make_settings: Any) -> None:
    default = await site_factory(make_settings())
    async with default.client() as client:
        page = (await client.get("/login")).text
    help_text = re.search(r'id="remember-help">([^<]*)<', page)
    assert help_text is not None
    assert "up to 30 days" in help_text.group(1)
    assert "at least once every 14 days" in help_text.group(1)
    assert "after 30 minutes without a visit" in help_text.group(1)
    assert 'aria-describedby="remember-help"' in page
    custom = await site_factory(
        make_settings(
            remember_me_timeout=604_800, remember_me_idle_timeout=86_400, session_idle_timeout=5400
        )
    )
    async with custom.client() as client:
        page = (await client.get("/login")).text
    assert "up to 7 days, as long as you visit at least once every 1 day." in page
    assert "after 90 minutes without a visit" in page


async def test_security_headers_are_on_every_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"]
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert "strict-transport-security" not in response.headers


async def test_healthz_and_readyz_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "up"


async def test_unknown_route_gets_a_404_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "Not found" in response.text


async def test_trace_is_405_not_5xx(client: httpx.AsyncClient) -> None:
    response = await client.request("TRACE", "/login")
    assert response.status_code == 405
