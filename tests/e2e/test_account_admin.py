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
    assert_refused,
    csrf_token,
    login,
    site_state,
)
from tests.roles import define_roles

NEW_PASSWORD = "a much better passphrase 42"


async def post_form(
    client: httpx.AsyncClient,
    path: str,
    data: dict[str, str | list[str]] | None = None,
    *,
    page: str = "/dashboard",
) -> httpx.Response:
    form: dict[str, str | list[str]] = {
        "csrf_token": await csrf_token(client, page),
        **(data or {}),
    }
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
    before = await site_state(site)
    response = await client.post(f"/account/sessions/{sid}/revoke", headers=ORIGIN)
    assert_refused(response)
    assert await site_state(site) == before
    assert await site.bastion.services.sessions.get(sid) is not None


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
    table = re.search(r"<table\b.*?</table>", users.text, flags=re.S)
    assert table is not None
    assert "alice" in table.group(0)
    assert "root" not in table.group(0)
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


async def api_tokens(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    grant = {"grant_type": "password", "username": username, "password": PASSWORD}
    response = await client.post("/api/token", data=grant)
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


async def test_granting_a_role_ends_the_users_sessions_and_tokens(site: Site) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    await define_roles(site.bastion.services.users, ["staff"])
    async with site.client() as admin, site.client() as alice, site.client() as api:
        await login(admin, "root")
        await login(alice, "alice")
        tokens = await api_tokens(api, "alice")
        assert (await alice.get("/admin/users")).status_code == 403
        response = await post_form(
            admin,
            f"/admin/users/{alice_id}/roles",
            {"roles": ["admin", "staff"]},
            page="/admin/users",
        )
        assert response.status_code == 303
        # The session that was not an admin's a moment ago does not become one.
        assert (await alice.get("/admin/users")).status_code == 303
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await api.get("/api/me", headers=bearer)).status_code == 401
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert (await api.post("/api/token", data=refresh)).status_code == 400
        # Signing in again gives a new session that holds the new roles.
        await login(alice, "alice")
        assert (await alice.get("/api/me")).json()["roles"] == ["admin", "staff"]
        assert (await alice.get("/admin/users")).status_code == 200
        # The admin making the change was not touched.
        assert (await admin.get("/admin/users")).status_code == 200
        event = next(
            e
            for e in await site.bastion.services.users.list_audit(0, 20)
            if e.event == "user.roles_changed"
        )
        assert event.detail is not None
        assert event.detail["sessions_ended"] == 2


async def test_changing_my_own_roles_rotates_my_session(site: Site) -> None:
    root_id = await site.create_user("root", roles=("admin",))
    await define_roles(site.bastion.services.users, ["auditor"])
    sessions = site.bastion.services.sessions
    async with site.client() as browser, site.client() as other_browser:
        await login(browser, "root", remember=True)
        await login(other_browser, "root")
        old_id = browser.cookies["bastion_session"]
        old = await sessions.load(old_id)
        assert old is not None
        old_token = await csrf_token(browser, "/admin/users")
        response = await browser.post(
            f"/admin/users/{root_id}/roles",
            data={"roles": ["admin", "auditor"], "csrf_token": old_token},
            headers=ORIGIN,
        )
        assert response.status_code == 303
        cookie = next(
            h for h in response.headers.get_list("set-cookie") if h.startswith("bastion_session=")
        )
        new_id = cookie.split(";", 1)[0].split("=", 1)[1]
        assert f"Max-Age={site.bastion.settings.remember_me_timeout}" in cookie
        new = await sessions.load(new_id)
        assert new is not None
        # New id, new CSRF secret, the new roles; the old id is dead.
        assert new_id != old_id
        assert await sessions.load(old_id) is None
        assert new.csrf_secret != old.csrf_secret
        assert new.roles == ("admin", "auditor")
        assert new.created_at == old.created_at  # rotation never extends a session
        assert new.absolute_expires_at == old.absolute_expires_at
        # A token of the old secret is worthless for the rotated session.
        refused = await browser.post("/logout", data={"csrf_token": old_token}, headers=ORIGIN)
        assert_refused(refused)
        assert (await browser.get("/api/me")).json()["roles"] == ["admin", "auditor"]
        # The admin's other browser could not be given a new cookie: it is signed out.
        assert (await other_browser.get("/dashboard")).status_code == 303
        assert [s.key for s in await sessions.list_for_user(root_id)] == [new.key]


async def test_set_roles_keeps_the_callers_session_only_when_it_is_the_users_own(
    site: Site,
) -> None:
    root_id = await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    await define_roles(site.bastion.services.users, ["staff"])
    sessions = site.bastion.services.sessions
    accounts = site.bastion.accounts
    _, root_session = await sessions.create(root_id, roles=["admin"])
    _, alice_session = await sessions.create(alice_id)
    # Changing someone else: the caller's session is neither rotated nor ended.
    assert await accounts.set_roles(alice_id, ["staff"], current=root_session) is None
    assert await sessions.get(root_session.key) == root_session
    assert await sessions.get(alice_session.key) is None
    # Setting the roles a user already has changes no privilege and ends nothing.
    _, alice_again = await sessions.create(alice_id, roles=["staff"])
    assert await accounts.set_roles(alice_id, ["staff"]) is None
    assert await sessions.get(alice_again.key) is not None
    # Removing a role through Accounts directly ends the sessions too.
    assert await accounts.set_roles(alice_id, []) is None
    assert await sessions.list_for_user(alice_id) == []


async def test_admin_actions_need_csrf(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("root", roles=("admin",))
    alice_id = await site.create_user("alice")
    await login(client, "root")
    before = await site_state(site)
    response = await client.post(
        f"/admin/users/{alice_id}/active", data={"active": "0"}, headers=ORIGIN
    )
    assert_refused(response)
    assert await site_state(site) == before
    alice = await site.bastion.services.users.get_by_id(alice_id)
    assert alice is not None
    assert alice.is_active


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
    async with site.client() as client, site.client() as second:
        await login(client, "root")
        await login(second, "root")
        sid = (await client.get("/api/me")).json()["session_id"]
        # Each form filled in as its route would accept it, but for the token.
        new_password = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
        routes = {
            "/logout": {},
            "/login": {"username": "alice", "password": PASSWORD},
            "/register": {
                "username": "mallory",
                "email": "m@example.com",
                "password": NEW_PASSWORD,
                "password_confirm": NEW_PASSWORD,
            },
            "/account/password": {"current_password": PASSWORD, **new_password},
            "/account/sessions/revoke-others": {},
            f"/account/sessions/{sid}/revoke": {},
            f"/admin/users/{other}/active": {"active": "0"},
            f"/admin/users/{other}/roles": {"roles": "admin"},
            "/admin/users/new": {
                "username": "mallory",
                "password": NEW_PASSWORD,
                "password_confirm": NEW_PASSWORD,
            },
            f"/admin/users/{other}/password": new_password,
            f"/admin/users/{other}/delete": {"confirm": "alice"},
            f"/admin/sessions/{sid}/revoke": {},
            "/password/forgot": {"email": "alice@example.com"},
            "/password/reset": new_password,
            "/password/reset/some.token": new_password,
            "/email/verify/resend": {"ticket": "some-ticket"},
            "/account/email": {"email": "new@example.com", "current_password": PASSWORD},
            "/account/email/verify": {},
            f"/admin/users/{other}/reset-link": {},
        }
        before = await site_state(site)
        for path, form in routes.items():
            response = await client.post(path, data=form, headers=ORIGIN)
            assert_refused(response)
        assert await site_state(site) == before  # passwords, roles, sessions, audit log
        assert (await client.get("/dashboard")).status_code == 200
        assert (await second.get("/dashboard")).status_code == 200
