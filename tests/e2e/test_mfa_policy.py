"""BASTION_MFA=admins / required: a user who must have a second factor and has none gets,
after the password, a session that can only set one up; enrolling turns it into a full
session under a new id. On every session store and both databases."""

from __future__ import annotations

import re

import httpx

from bastion.clock import FakeClock
from bastion.mfa.totp import code_at, current_step
from tests.e2e.conftest import (
    ORIGIN,
    PASSWORD,
    MakeSettings,
    Site,
    SiteFactory,
    csrf_from,
    login,
)
from tests.e2e.test_two_step import set_cookie, verify

JSON = {"Accept": "application/json"}
SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')
RECOVERY_CODE = re.compile(r'class="recovery-code">([^<]+)<')


async def policy_site(site_factory: SiteFactory, make_settings: MakeSettings, mfa: str) -> Site:
    site = await site_factory(make_settings(mfa=mfa))
    # The factor service's clock: codes are made for it, one step apart.
    site.bastion.services.mfa.clock = FakeClock()
    return site


def next_code(site: Site, secret: str) -> str:
    clock = site.bastion.services.mfa.clock
    assert isinstance(clock, FakeClock)
    clock.advance(30)
    return code_at(secret, current_step(clock))


async def enrol_through_the_pages(site: Site, client: httpx.AsyncClient) -> str:
    """Set up TOTP as the user does: read the secret from /account/totp, type a code."""
    page = await client.get("/account/totp")
    assert page.status_code == 200, page.text
    match = SECRET.search(page.text)
    assert match, "no secret on the page"
    secret = match.group(1)
    done = await client.post(
        "/account/totp",
        data={"code": next_code(site, secret), "csrf_token": csrf_from(page.text)},
        headers=ORIGIN,
    )
    assert done.status_code == 200, done.text
    assert len(RECOVERY_CODE.findall(done.text)) == 10
    return secret


async def test_required_a_user_without_a_factor_can_only_enrol(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await policy_site(site_factory, make_settings, "required")
    await site.create_user("alice")
    async with site.client() as client:
        response = await login(client, "alice", next_path="/account/sessions")
        assert response.status_code == 303
        assert response.headers["location"] == "/account/security"
        assert set_cookie(response, "bastion_session") is not None
        # Every page but enrolment sends the browser to enrol; API calls get 403.
        for path in ("/dashboard", "/account/sessions", "/account/password", "/admin/users"):
            page = await client.get(path)
            assert page.status_code == 303, path
            assert page.headers["location"] == "/account/security"
        me = await client.get("/api/me", headers=JSON)
        assert me.status_code == 403
        assert "second factor" in me.json()["detail"]
        security = await client.get("/account/security")
        assert security.status_code == 200
        assert "needs a second factor" in security.text
        assert (await client.get("/_bastion/static/bastion.css")).status_code == 200


async def test_enrolling_turns_the_session_into_a_full_one_under_a_new_id(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await policy_site(site_factory, make_settings, "required")
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        enrolment_cookie = client.cookies["bastion_session"]
        secret = await enrol_through_the_pages(site, client)
        assert client.cookies["bastion_session"] != enrolment_cookie
        assert (await client.get("/dashboard")).status_code == 200
        me = (await client.get("/api/me")).json()
        assert me["amr"] == ["pwd", "otp", "mfa"]
        events = [e.event for e in await site.bastion.services.users.list_audit(0, 20)]
        assert "mfa.enrolment.completed" in events
        # The enrolment session's id is dead.
        async with site.client(cookies={"bastion_session": enrolment_cookie}) as old:
            assert (await old.get("/api/me")).status_code == 401
        # The next sign-in takes both steps.
        dashboard = await client.get("/dashboard")
        await client.post("/logout", data={"csrf_token": csrf_from(dashboard.text)}, headers=ORIGIN)
        assert (await login(client, "alice")).headers["location"] == "/login/verify"
        done = await verify(client, code=next_code(site, secret))
        assert done.headers["location"] == "/dashboard"


async def test_an_enrolment_session_can_sign_out(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await policy_site(site_factory, make_settings, "required")
    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        page = await client.get("/account/security")
        out = await client.post(
            "/logout", data={"csrf_token": csrf_from(page.text)}, headers=ORIGIN
        )
        assert out.status_code == 303
        assert out.headers["location"] == "/login?done=signed-out"
        assert await site.bastion.services.sessions.list_all() == []


async def test_admins_policy_holds_back_admins_only(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await policy_site(site_factory, make_settings, "admins")
    await site.create_user("root", roles=("admin",))
    await site.create_user("bob")
    async with site.client() as admin, site.client() as bob:
        assert (await login(admin, "root")).headers["location"] == "/account/security"
        assert (await admin.get("/admin/users")).headers["location"] == "/account/security"
        assert (await login(bob, "bob")).headers["location"] == "/dashboard"
        assert (await bob.get("/dashboard")).status_code == 200
        await enrol_through_the_pages(site, admin)
        assert (await admin.get("/admin/users")).status_code == 200


async def test_the_token_endpoint_gives_no_tokens_to_a_user_who_must_enrol(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await policy_site(site_factory, make_settings, "admins")
    await site.create_user("root", roles=("admin",))
    await site.create_user("bob")
    async with site.client() as client:
        refused = await client.post(
            "/api/token",
            data={"grant_type": "password", "username": "root", "password": "x" * 3},
        )
        assert refused.json()["error"] == "invalid_grant"  # a wrong password says only that
        held = await client.post(
            "/api/token", data={"grant_type": "password", "username": "root", "password": PASSWORD}
        )
        assert held.status_code == 400
        assert held.json()["error"] == "mfa_enrolment_required"
        assert "access_token" not in held.json()
        bob = await client.post(
            "/api/token", data={"grant_type": "password", "username": "bob", "password": PASSWORD}
        )
        assert bob.status_code == 200
    sessions = await site.bastion.services.sessions.list_all()
    assert [s.username for s in sessions] == ["bob"]
