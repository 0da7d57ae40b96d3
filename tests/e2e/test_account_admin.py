"""Devices, password change, registration, roles, admin pages and the audit log."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.e2e.conftest import (
    ORIGIN,
    PASSWORD,
    MakeSettings,
    Site,
    SiteFactory,
    csrf_token,
    login,
)

NEW_PASSWORD = "a much better passphrase 42"


async def post_form(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, str] | None = None,
    *,
    page: str = "/dashboard",
) -> httpx.Response:
    form = {"csrf_token": await csrf_token(client, page), **(data or {})}
    return await client.post(path, data=form, headers=ORIGIN)


async def test_sessions_page_lists_every_session_and_marks_this_one(site: Site) -> None:
    await site.create_user("alice")
    async with (
        site.client(headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}) as one,
        site.client() as two,
    ):
        await login(one, "alice")
        await login(two, "alice")
        page = await one.get("/account/sessions")
    assert page.status_code == 200
    assert page.text.count('action="/account/sessions/') >= 3  # two revoke forms + revoke-others
    assert "this device" in page.text
    assert "Firefox 120 on Linux" in page.text


async def test_revoking_another_session_signs_it_out(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as one, site.client() as two:
        await login(one, "alice")
        await login(two, "alice")
        other = next(s for s in (await one.get("/api/sessions")).json() if not s["current"])
        response = await post_form(one, f"/account/sessions/{other['id']}/revoke")
        assert response.status_code == 303
        assert (await two.get("/dashboard")).status_code == 303
        assert (await one.get("/dashboard")).status_code == 200


async def test_revoking_someone_elses_session_is_404(site: Site) -> None:
    await site.create_user("alice")
    await site.create_user("bob")
    async with site.client() as alice, site.client() as bob:
        await login(alice, "alice")
        await login(bob, "bob")
        bob_sid = (await bob.get("/api/me")).json()["session_id"]
        response = await post_form(alice, f"/account/sessions/{bob_sid}/revoke")
        assert response.status_code == 404
        assert (await bob.get("/dashboard")).status_code == 200


async def test_revoke_needs_a_csrf_token(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    sid = (await client.get("/api/me")).json()["session_id"]
    response = await client.post(f"/account/sessions/{sid}/revoke", headers=ORIGIN)
    assert response.status_code == 403


async def test_sign_out_everywhere_else_keeps_only_this_session(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as one, site.client() as two, site.client() as three:
        for client in (one, two, three):
            await login(client, "alice")
        assert (await post_form(one, "/account/sessions/revoke-others")).status_code == 303
        assert (await two.get("/dashboard")).status_code == 303
        assert (await three.get("/dashboard")).status_code == 303
        assert len((await one.get("/api/sessions")).json()) == 1


async def test_password_change_ends_other_sessions_and_their_tokens(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as browser, site.client() as other, site.client() as api:
        await login(browser, "alice")
        await login(other, "alice")
        tokens = (
            await api.post(
                "/api/token",
                data={"grant_type": "password", "username": "alice", "password": PASSWORD},
            )
        ).json()
        old_cookie = browser.cookies.get("bastion_session")
        response = await post_form(
            browser,
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD,
            },
            page="/account/password",
        )
        assert response.status_code == 200
        assert "Password changed" in response.text
        # This browser continues under a new id; the old id is dead.
        assert browser.cookies.get("bastion_session") != old_cookie
        assert (await browser.get("/dashboard")).status_code == 200
        assert (await other.get("/dashboard")).status_code == 303
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await api.get("/api/me", headers=bearer)).status_code == 401
        refresh = await api.post(
            "/api/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert refresh.status_code == 400
    async with site.client() as fresh:
        assert (await login(fresh, "alice", NEW_PASSWORD)).status_code == 303


async def test_password_change_refuses_wrong_current_password(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    response = await post_form(
        client,
        "/account/password",
        {
            "current_password": "wrong",
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
        page="/account/password",
    )
    assert response.status_code == 400
    assert "current password" in response.text


async def test_password_change_applies_the_policy(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    for new, confirm in (
        ("password123", "password123"),
        ("short", "short"),
        (NEW_PASSWORD, NEW_PASSWORD + "x"),
    ):
        response = await post_form(
            client,
            "/account/password",
            {"current_password": PASSWORD, "new_password": new, "new_password_confirm": confirm},
            page="/account/password",
        )
        assert response.status_code == 400, new


async def test_registration_is_closed_by_default(client: httpx.AsyncClient) -> None:
    assert (await client.get("/register")).status_code == 404


async def test_registration_creates_an_account_and_signs_in(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(registration="open"))
    async with site.client() as client:
        page = await client.get("/register")
        assert page.status_code == 200
        for field in ("username", "email", "password", "password_confirm"):
            assert f'name="{field}"' in page.text
        response = await post_form(
            client,
            "/register",
            {
                "username": "Carol",
                "email": "carol@example.com",
                "password": NEW_PASSWORD,
                "password_confirm": NEW_PASSWORD,
            },
            page="/register",
        )
        assert response.status_code == 303
        assert "Welcome Carol" in (await client.get("/dashboard")).text


async def test_registration_refuses_common_and_lookalike_input(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(registration="open"))
    await site.create_user("alice")
    async with site.client() as client:
        cases = [
            {"username": "bob", "password": "iloveyou1", "password_confirm": "iloveyou1"},  # common
            {
                "username": "bob",
                "password": "bob-is-the-best",
                "password_confirm": "bob-is-the-best",
            },
            {"username": "ALICE", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
            {
                "username": "\uff41lice",
                "password": NEW_PASSWORD,
                "password_confirm": NEW_PASSWORD,
            },  # fullwidth a
            {"username": "bob", "password": NEW_PASSWORD, "password_confirm": "different"},
        ]
        for case in cases:
            response = await post_form(client, "/register", {"email": "", **case}, page="/register")
            assert response.status_code == 400, case
    assert await site.bastion.services.users.count_users() == 1


async def test_admin_pages_are_forbidden_to_non_admins(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    for path in ("/admin/users", "/admin/sessions", "/admin/audit"):
        assert (await client.get(path)).status_code == 403, path


async def test_admin_pages_redirect_anonymous_visitors_to_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/users")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_admin_sees_users_sessions_and_audit(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("root", roles=("admin",))
    await site.create_user("alice", email="alice@example.com")
    await login(client, "root")
    users = await client.get("/admin/users?q=ali")
    assert users.status_code == 200
    assert "alice@example.com" in users.text
    assert "root" not in re.sub(r"<nav.*?</nav>", "", users.text, flags=re.S).split("<table>")[1]
    assert (await client.get("/admin/sessions")).status_code == 200
    audit = await client.get("/admin/audit")
    assert "login.success" in audit.text


async def test_admin_disable_ends_the_users_sessions(site: Site) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    async with site.client() as admin, site.client() as alice:
        await login(admin, "root")
        await login(alice, "alice")
        response = await post_form(
            admin, f"/admin/users/{alice_id}/active", {"active": "0"}, page="/admin/users"
        )
        assert response.status_code == 303
        assert (await alice.get("/dashboard")).status_code == 303
        assert (await login(alice, "alice")).status_code == 400
        events = [e.event for e in await site.bastion.services.users.list_audit(0, 20)]
        assert "user.disabled" in events


async def test_admin_role_change_reaches_live_sessions(site: Site) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    async with site.client() as admin, site.client() as alice:
        await login(admin, "root")
        await login(alice, "alice")
        assert (await alice.get("/admin/users")).status_code == 403
        response = await post_form(
            admin, f"/admin/users/{alice_id}/roles", {"roles": "admin, staff"}, page="/admin/users"
        )
        assert response.status_code == 303
        assert (await alice.get("/api/me")).json()["roles"] == ["admin", "staff"]
        assert (await alice.get("/admin/users")).status_code == 200


async def test_admin_actions_need_csrf(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    await login(client, "root")
    response = await client.post(
        f"/admin/users/{alice_id}/active", data={"active": "0"}, headers=ORIGIN
    )
    assert response.status_code == 403


async def test_admin_revokes_any_session(site: Site) -> None:
    await site.create_user("root", roles=("admin",))
    await site.create_user("alice")
    async with site.client() as admin, site.client() as alice:
        await login(admin, "root")
        await login(alice, "alice")
        sid = (await alice.get("/api/me")).json()["session_id"]
        response = await post_form(admin, f"/admin/sessions/{sid}/revoke", page="/admin/sessions")
        assert response.status_code == 303
        assert (await alice.get("/dashboard")).status_code == 303


async def test_audit_log_records_failures_without_passwords(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice", "my-secret-wrong-password")
    events = await site.bastion.services.users.list_audit(0, 20)
    failure = next(e for e in events if e.event == "login.failure")
    assert failure.username == "alice"
    assert "my-secret-wrong-password" not in repr(failure)


async def test_removing_a_role_ends_the_users_sessions(site: Site) -> None:
    await site.create_user("root", roles=("admin",))
    bob_id = await site.create_user("bob", roles=("admin", "staff"))
    async with site.client() as admin, site.client() as bob:
        await login(admin, "root")
        await login(bob, "bob")
        assert (await bob.get("/admin/users")).status_code == 200
        response = await post_form(
            admin, f"/admin/users/{bob_id}/roles", {"roles": "staff"}, page="/admin/users"
        )
        assert response.status_code == 303
        assert (await bob.get("/admin/users")).status_code == 303  # signed out
        await login(bob, "bob")
        assert (await bob.get("/admin/users")).status_code == 403


async def test_every_form_route_refuses_a_post_without_the_csrf_token(
    site_factory: Any, make_settings: Any
) -> None:
    site = await site_factory(make_settings(registration="open"))
    await site.create_user("root", roles=("admin",))
    other = await site.create_user("alice")
    async with site.client() as client:
        await login(client, "root")
        sid = (await client.get("/api/me")).json()["session_id"]
        routes = [
            "/logout",
            "/login",
            "/register",
            "/account/password",
            "/account/sessions/revoke-others",
            f"/account/sessions/{sid}/revoke",
            f"/admin/users/{other}/active",
            f"/admin/users/{other}/roles",
            f"/admin/sessions/{sid}/revoke",
        ]
        for path in routes:
            response = await client.post(path, data={"x": "1"}, headers=ORIGIN)
            assert response.status_code == 403, path
        assert (await client.get("/dashboard")).status_code == 200
