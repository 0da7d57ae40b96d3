"""Operators on the admin pages: create a user, set a password, choose roles, delete a user.

Each action goes through Accounts (sessions end, back-off clears, audited with the acting
admin); refused forms come back with their message and 400; nothing changes without the
CSRF token or for a signed-in user who is not an admin.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

import httpx
import pytest
from sqlalchemy import text

from bastion.clock import FakeClock
from bastion.passwords import has_usable_password
from bastion.ratelimit import LoginThrottle
from bastion.stores import MemoryStore
from bastion.users.repository import AuditRecord, RoleRecord
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

NEW_PASSWORD = "a fresh and rather long passphrase 7"
Form = Mapping[str, str | list[str]]


async def admin_post(client: httpx.AsyncClient, path: str, form: Form) -> httpx.Response:
    """``form`` posted as the page at ``path`` (a GET) would post it, with its CSRF token."""
    token = await csrf_token(client, path)
    return await client.post(path, data={"csrf_token": token, **form}, headers=ORIGIN)


async def events(site: Site, name: str) -> list[AuditRecord]:
    return [e for e in await site.bastion.services.users.list_audit(0, 100) if e.event == name]


async def signed_in_admin(site: Site, client: httpx.AsyncClient) -> int:
    root_id = await site.create_user("root", roles=("admin",))
    assert (await login(client, "root")).status_code == 303
    return root_id


def title_of(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match is not None
    return match.group(1)


def field_tag(html: str, name: str) -> str:
    """The ``<input>`` tag of the field with id ``name``."""
    match = re.search(rf'<input id="{re.escape(name)}"[^>]*>', html)
    assert match is not None, name
    return match.group(0)


def invalid_fields(html: str) -> set[str]:
    """The ids of the inputs marked ``aria-invalid="true"``."""
    return set(re.findall(r'<input id="([^"]+)"[^>]*aria-invalid="true"', html))


def checkboxes(html: str) -> dict[str, bool]:
    """The role checkboxes of a page: name -> ticked."""
    found = re.findall(
        r'<input id="role-\d+" name="roles" type="checkbox" value="([^"]+)"( checked)?', html
    )
    return {name: bool(ticked) for name, ticked in found}


# ---- create ----------------------------------------------------------------------------


async def test_admin_creates_a_user_with_roles_and_a_password_who_then_signs_in(
    site: Site, client: httpx.AsyncClient
) -> None:
    root_id = await signed_in_admin(site, client)
    await define_roles(site.bastion.services.users, ["staff", "auditor"])
    page = await client.get("/admin/users/new")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert checkboxes(page.text) == {"admin": False, "auditor": False, "staff": False}
    assert 'name="roles" type="text"' not in page.text

    response = await admin_post(
        client,
        "/admin/users/new",
        {
            "username": "carol",
            "email": "carol@example.org",
            "roles": ["staff", "auditor"],
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/users?done=created"
    assert "The user was created." in (await client.get(response.headers["location"])).text

    async with site.client() as carol:
        assert (await login(carol, "carol", NEW_PASSWORD)).status_code == 303
        me = (await carol.get("/api/me")).json()
        assert (me["email"], me["roles"]) == ("carol@example.org", ["auditor", "staff"])
    (created,) = await events(site, "user.created")
    assert (created.username, created.actor_id) == ("carol", root_id)
    assert created.detail == {"roles": ["auditor", "staff"], "password": "set"}


async def test_a_user_created_without_a_password_cannot_sign_in_until_an_admin_sets_one(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in_admin(site, client)
    response = await admin_post(client, "/admin/users/new", {"username": "dave"})
    assert response.status_code == 303
    dave = await site.bastion.services.users.get_by_username("dave")
    assert dave is not None
    assert not has_usable_password(dave.password_hash)
    assert "no password" in (await client.get("/admin/users")).text
    async with site.client() as guesser:
        for guess in ("", dave.password_hash, dave.password_hash[1:], PASSWORD):
            assert (await login(guesser, "dave", guess)).status_code == 400
    (created,) = await events(site, "user.created")
    assert created.detail == {"roles": [], "password": "none"}

    set_password = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
    response = await admin_post(client, f"/admin/users/{dave.id}/password", set_password)
    assert response.status_code == 303
    async with site.client() as browser:
        assert (await login(browser, "dave", NEW_PASSWORD)).status_code == 303


@pytest.mark.parametrize(
    ("form", "message", "field"),
    [
        pytest.param(
            {"username": "alice"},
            "An account with this user name or e-mail address already exists.",
            "username email",  # the unique indexes do not say which
            id="taken",
        ),
        pytest.param(
            {"username": "has space"}, "must not contain spaces", "username", id="bad-name"
        ),
        pytest.param({"username": "carol", "email": "nope"}, "not valid", "email", id="bad-email"),
        pytest.param(
            {"username": "carol", "roles": ["staff", "ghost"]},
            "The role &#39;ghost&#39; is not defined. Define it first with: "
            "bastion roles create ghost",
            "roles",
            id="undefined-role",
        ),
        pytest.param(
            {"username": "carol", "password": NEW_PASSWORD, "password_confirm": "other"},
            "do not match",
            "password_confirm",
            id="passwords-differ",
        ),
        pytest.param(
            {"username": "carol", "password": "short", "password_confirm": "short"},
            "at least",
            "password",
            id="too-short",
        ),
        pytest.param(
            {"username": "carol", "password": "carol-carol", "password_confirm": "carol-carol"},
            "user name",
            "password",
            id="contains-name",
        ),
    ],
)
async def test_a_refused_new_user_form_comes_back_with_its_message_and_400(
    site: Site, client: httpx.AsyncClient, form: Form, message: str, field: str
) -> None:
    await signed_in_admin(site, client)
    await site.create_user("alice")
    await define_roles(site.bastion.services.users, ["staff"])
    before = await site_state(site)
    response = await admin_post(client, "/admin/users/new", form)
    assert response.status_code == 400
    assert message in response.text
    assert 'role="alert"' in response.text
    assert title_of(response.text).startswith("Error: New user")
    # The field in error is marked and points at the message (WCAG 3.3.1).
    if field == "roles":
        assert '<fieldset class="choices" aria-describedby="form-error">' in response.text
    else:
        assert invalid_fields(response.text) == set(field.split())
        for name in field.split():
            assert 'aria-describedby="form-error' in field_tag(response.text, name)
    # The form keeps what was typed (never the passwords) and the chosen roles.
    assert f'value="{form["username"]}"' in response.text
    assert checkboxes(response.text).get("staff") == ("staff" in form.get("roles", []))
    assert NEW_PASSWORD not in response.text
    assert await site_state(site) == before


# ---- password --------------------------------------------------------------------------


async def test_admin_sets_a_password_ending_the_users_sessions_tokens_and_backoff(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    settings = make_settings(login_max_failures=2, login_max_backoff=4)
    site = await site_factory(settings)
    # The back-off on a fake clock: it holds however slowly this test runs.
    limiter = LoginThrottle.from_settings(MemoryStore("ratelimit", clock=FakeClock()), settings)
    site.bastion.services.authenticator.limiter = limiter
    site.bastion.services.accounts.limiter = limiter
    alice_id = await site.create_user("alice")
    async with (
        site.client() as admin,
        site.client() as alice,
        site.client(client=("192.0.2.9", 4000)) as guesser,
    ):
        root_id = await signed_in_admin(site, admin)
        assert (await login(alice, "alice")).status_code == 303
        grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        tokens = (await alice.post("/api/token", data=grant)).json()
        for _ in range(2):
            await login(guesser, "alice", "a wrong guess")
        assert (await login(guesser, "alice")).status_code == 429

        page = await admin.get(f"/admin/users/{alice_id}/password")
        assert page.status_code == 200
        assert "Set the password of alice" in page.text
        form = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
        response = await admin_post(admin, f"/admin/users/{alice_id}/password", form)
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/users?done=password"

        assert (await alice.get("/dashboard")).status_code == 303  # signed out
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert (await alice.post("/api/token", data=refresh)).status_code == 400
        assert (await login(guesser, "alice", NEW_PASSWORD)).status_code == 303  # no back-off
        assert (await admin.get("/admin/users")).status_code == 200  # the admin goes on
    (changed,) = await events(site, "password.changed")
    assert (changed.user_id, changed.actor_id) == (alice_id, root_id)
    assert changed.detail == {"sessions_ended": 2}  # the browser's and the token's


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"new_password": NEW_PASSWORD, "new_password_confirm": "other"}, "do not match"),
        ({"new_password": "short", "new_password_confirm": "short"}, "at least"),
        ({"new_password": "", "new_password_confirm": ""}, "The password is empty."),
    ],
)
async def test_a_refused_password_changes_nothing_and_ends_no_session(
    site: Site, form: Form, message: str
) -> None:
    alice_id = await site.create_user("alice")
    async with site.client() as admin, site.client() as alice:
        await signed_in_admin(site, admin)
        await login(alice, "alice")
        before = await site_state(site)
        response = await admin_post(admin, f"/admin/users/{alice_id}/password", form)
        assert response.status_code == 400
        assert message in response.text
        assert await site_state(site) == before
        assert (await alice.get("/dashboard")).status_code == 200


async def test_an_admin_changes_their_own_password_on_their_account_page_only(
    site: Site, client: httpx.AsyncClient
) -> None:
    root_id = await signed_in_admin(site, client)
    page = await client.get(f"/admin/users/{root_id}/password")
    assert page.status_code == 400
    assert 'href="/account/password"' in page.text
    before = await site_state(site)
    form = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
    token = await csrf_token(client, "/admin/users")
    response = await client.post(
        f"/admin/users/{root_id}/password", data={"csrf_token": token, **form}, headers=ORIGIN
    )
    assert response.status_code == 400
    assert await site_state(site) == before


# ---- roles -----------------------------------------------------------------------------


async def test_roles_are_chosen_with_checkboxes_of_the_defined_roles(
    site: Site, client: httpx.AsyncClient
) -> None:
    root_id = await signed_in_admin(site, client)
    bob_id = await site.create_user("bob", roles=("staff",))
    await define_roles(site.bastion.services.users, ["auditor"])
    page = await client.get(f"/admin/users/{bob_id}/roles")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert checkboxes(page.text) == {"admin": False, "auditor": False, "staff": True}
    async with site.client() as bob:
        await login(bob, "bob")
        response = await admin_post(client, f"/admin/users/{bob_id}/roles", {"roles": "auditor"})
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/users?done=roles"
        assert (await bob.get("/dashboard")).status_code == 303  # a privilege change
    assert await site.bastion.services.users.roles_of(bob_id) == {"auditor"}
    (changed,) = await events(site, "user.roles_changed")
    assert changed.actor_id == root_id
    assert changed.detail is not None
    assert (changed.detail["before"], changed.detail["after"]) == (["staff"], ["auditor"])
    # The users page lists roles as text now, with a link per user to this form.
    users = (await client.get("/admin/users")).text
    assert 'name="roles"' not in users
    assert f'href="/admin/users/{bob_id}/roles" aria-label="Roles of bob"' in users


async def test_a_refused_roles_form_changes_nothing(site: Site, client: httpx.AsyncClient) -> None:
    root_id = await signed_in_admin(site, client)
    bob_id = await site.create_user("bob", roles=("staff",))
    before = await site_state(site)
    undefined = await admin_post(
        client, f"/admin/users/{bob_id}/roles", {"roles": ["staff", "ghost"]}
    )
    assert undefined.status_code == 400
    assert "The role &#39;ghost&#39; is not defined" in undefined.text
    assert checkboxes(undefined.text) == {"admin": False, "staff": True}
    own_admin = await admin_post(client, f"/admin/users/{root_id}/roles", {"roles": "staff"})
    assert own_admin.status_code == 400
    assert "You cannot remove your own admin role." in own_admin.text
    assert await site_state(site) == before


# ---- delete ----------------------------------------------------------------------------


async def test_admin_deletes_a_user_after_confirming(site: Site) -> None:
    alice_id = await site.create_user("alice")
    async with site.client() as admin, site.client() as alice:
        root_id = await signed_in_admin(site, admin)
        await login(alice, "alice")
        page = await admin.get(f"/admin/users/{alice_id}/delete")
        assert page.status_code == 200
        assert "Delete alice?" in page.text
        assert "ends their sessions" in page.text
        assert 'name="confirm" value="alice"' in page.text
        # The confirmation field is what the page sends; a bare POST deletes nothing.
        before = await site_state(site)
        unconfirmed = await admin_post(admin, f"/admin/users/{alice_id}/delete", {})
        assert unconfirmed.status_code == 400
        assert await site_state(site) == before

        response = await admin_post(admin, f"/admin/users/{alice_id}/delete", {"confirm": "alice"})
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/users?done=deleted"
        assert (await alice.get("/dashboard")).status_code == 303
        assert (await login(alice, "alice")).status_code == 400
    assert await site.bastion.services.users.get_by_id(alice_id) is None
    assert await site.bastion.services.sessions.list_for_user(alice_id) == []
    (deleted,) = await events(site, "user.deleted")
    assert (deleted.username, deleted.actor_id) == ("alice", root_id)


async def test_deleting_a_user_the_applications_rows_still_hold_says_so(
    site: Site, client: httpx.AsyncClient
) -> None:
    """An application table with a plain foreign key to bastion_users keeps the user:
    the confirmation page says why (400), never a 404 or a 500."""
    await signed_in_admin(site, client)
    alice_id = await site.create_user("alice")
    table = f"app_notes_{secrets.token_hex(4)}"
    async with site.bastion.services.engine.begin() as conn:
        await conn.execute(
            text(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, "
                "owner_id INTEGER NOT NULL REFERENCES bastion_users (id))"
            )
        )
        await conn.execute(text(f"INSERT INTO {table} VALUES (1, {alice_id})"))
    try:
        response = await admin_post(client, f"/admin/users/{alice_id}/delete", {"confirm": "alice"})
        assert response.status_code == 400
        assert "The application still holds data of this user; remove it first." in response.text
        assert await site.bastion.services.users.get_by_id(alice_id) is not None
    finally:
        async with site.bastion.services.engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {table}"))


async def test_an_admin_cannot_delete_themselves(site: Site, client: httpx.AsyncClient) -> None:
    root_id = await signed_in_admin(site, client)
    page = await client.get(f"/admin/users/{root_id}/delete")
    assert page.status_code == 400
    assert "You cannot delete your own account." in page.text
    before = await site_state(site)
    token = await csrf_token(client, "/admin/users")
    response = await client.post(
        f"/admin/users/{root_id}/delete",
        data={"csrf_token": token, "confirm": "root"},
        headers=ORIGIN,
    )
    assert response.status_code == 400
    assert await site_state(site) == before


# ---- who may, and how ------------------------------------------------------------------


def admin_forms(user_id: int) -> dict[str, Form]:
    """Every new admin form, filled in as its route would accept it."""
    return {
        "/admin/users/new": {
            "username": "mallory",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
        },
        f"/admin/users/{user_id}/password": {
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
        f"/admin/users/{user_id}/roles": {"roles": "admin"},
        f"/admin/users/{user_id}/delete": {"confirm": "alice"},
    }


async def test_admin_forms_need_the_csrf_token(site: Site, client: httpx.AsyncClient) -> None:
    await signed_in_admin(site, client)
    alice_id = await site.create_user("alice")
    before = await site_state(site)
    for path, form in admin_forms(alice_id).items():
        assert_refused(await client.post(path, data=form, headers=ORIGIN))
        wrong = {"csrf_token": "x" * 43, **form}
        assert_refused(await client.post(path, data=wrong, headers=ORIGIN))
    assert await site_state(site) == before


async def test_admin_pages_and_forms_are_forbidden_to_other_users(
    site: Site, client: httpx.AsyncClient
) -> None:
    alice_id = await site.create_user("alice")
    await site.create_user("bob", roles=("staff",))
    await login(client, "bob")
    before = await site_state(site)
    for path, form in admin_forms(alice_id).items():
        assert (await client.get(path)).status_code == 403, path
        token = await csrf_token(client)
        answer = await client.post(path, data={"csrf_token": token, **form}, headers=ORIGIN)
        assert answer.status_code == 403, path
    assert await site_state(site) == before


@pytest.mark.parametrize("action", ["roles", "password", "delete"])
async def test_the_pages_of_a_user_that_does_not_exist_are_404(
    site: Site, client: httpx.AsyncClient, action: str
) -> None:
    await signed_in_admin(site, client)
    assert (await client.get(f"/admin/users/999/{action}")).status_code == 404
    # A number no user id can be is a bad request, never a database error.
    assert (await client.get(f"/admin/users/{2**63}/{action}")).status_code == 400


async def test_each_users_actions_are_named_for_that_user(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in_admin(site, client)
    alice_id = await site.create_user("alice")
    page = (await client.get("/admin/users")).text
    for label, path in [
        ("Disable alice", None),
        ("Roles of alice", f"/admin/users/{alice_id}/roles"),
        ("Set the password of alice", f"/admin/users/{alice_id}/password"),
        ("Delete alice", f"/admin/users/{alice_id}/delete"),
    ]:
        assert f'aria-label="{label}"' in page, label
        if path is not None:
            assert f'href="{path}" aria-label="{label}"' in page, label
    # No way to delete or re-password oneself from the list.
    assert 'aria-label="Delete root"' not in page
    assert 'aria-label="Set the password of root"' not in page


async def test_deleting_a_held_role_with_force_takes_it_through_accounts(site: Site) -> None:
    alice_id = await site.create_user("alice", roles=("staff",))
    bob_id = await site.create_user("bob", roles=("staff", "admin"))
    accounts = site.bastion.accounts
    async with site.client() as alice:
        await login(alice, "alice")
        assert await accounts.delete_role("staff", force=True) == 2
        assert (await alice.get("/dashboard")).status_code == 303  # her session ended
    users = site.bastion.services.users
    assert await users.roles_of(alice_id) == set()
    assert await users.roles_of(bob_id) == {"admin"}
    assert "staff" not in {role.name for role in await users.list_roles()}
    assert {e.user_id for e in await events(site, "user.roles_changed")} == {alice_id, bob_id}
    (deleted,) = await events(site, "role.deleted")
    assert deleted.detail == {"role": "staff", "taken_from": 2}


async def test_the_audit_page_names_the_admin_who_acted(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in_admin(site, client)
    alice_id = await site.create_user("alice")
    await admin_post(client, f"/admin/users/{alice_id}/delete", {"confirm": "alice"})
    page = (await client.get("/admin/audit")).text
    row = re.search(r"<tr>(?:(?!</tr>).)*user\.deleted(?:(?!</tr>).)*</tr>", page, flags=re.S)
    assert row is not None
    assert '<td data-label="User">alice</td>' in row.group(0)
    assert '<td data-label="By">root</td>' in row.group(0)


async def test_a_defined_roles_description_is_shown_beside_its_checkbox(
    site: Site, client: httpx.AsyncClient
) -> None:
    await signed_in_admin(site, client)
    await site.bastion.accounts.create_role("auditor", "Reads the <audit> log")
    alice_id = await site.create_user("alice")
    page = (await client.get(f"/admin/users/{alice_id}/roles")).text
    assert checkboxes(page) == {"admin": False, "auditor": False}
    assert "Reads the &lt;audit&gt; log" in page


async def test_the_role_checkboxes_show_each_roles_description(site: Site) -> None:
    template = site.bastion.templates.env.get_template("admin_role_choices.html")
    html = template.render(
        roles=[RoleRecord("admin", None, 1), RoleRecord("staff", "Sees the <b>reports</b>", 0)],
        chosen={"staff"},
    )
    assert checkboxes(html) == {"admin": False, "staff": True}
    assert '<p class="hint" id="role-2-hint">Sees the &lt;b&gt;reports&lt;/b&gt;</p>' in html
    assert 'value="staff" checked aria-describedby="role-2-hint"' in html
    assert "role-1-hint" not in html
