"""Re-authentication ("sudo mode", contract 6.3): sensitive actions outside
``BASTION_REAUTH_WINDOW`` send a browser to ``/reauth`` and refuse an API client with RFC
9470's ``insufficient_user_authentication``; ``/reauth`` restarts the window.

A session is taken outside the window by moving its ``auth_time`` back through the session
store (no sleeping), which is what the passing of time does to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import Depends, FastAPI

from bastion.clock import FakeClock, system_clock
from bastion.fastapi import Principal, RecentUser, install, require_recent_auth
from bastion.mfa import totp
from bastion.ratelimit import LoginThrottle
from bastion.settings import Settings
from bastion.stores import MemoryStore
from tests.e2e.conftest import (
    BASE,
    ORIGIN,
    PASSWORD,
    Site,
    assert_refused,
    csrf_from,
    csrf_token,
    login,
    site_state,
)

WINDOW = 60
WRONG = "not the password at all"
NEW_PASSWORD = "a much better passphrase 42"
MakeSettings = Callable[..., Settings]
SiteFactory = Callable[[Settings], Any]


@pytest.fixture
async def site(site_factory: SiteFactory, make_settings: MakeSettings) -> Site:
    """The reference app with a one-minute window; alice (admin) and bob exist."""
    result: Site = await site_factory(make_settings(reauth_window=WINDOW))
    await result.create_user("alice", roles=("admin",), email="alice@example.com")
    await result.create_user("bob", email="bob@example.com")
    return result


async def age_sign_ins(site: Site, username: str, seconds: float = WINDOW + 1) -> None:
    """Every session of ``username`` signed in (or re-authenticated) ``seconds`` earlier."""
    services = site.bastion.services
    user = await services.users.get_by_username(username)
    assert user is not None
    for session in await services.sessions.list_for_user(user.id):
        await services.sessions.update(session, auth_time=session.auth_time - seconds)


def reauth_location(next_path: str) -> str:
    return f"/reauth?next={quote(next_path, safe='/')}"


async def reauthenticate(
    client: httpx.AsyncClient, next_path: str, password: str = PASSWORD
) -> httpx.Response:
    page = await client.get(reauth_location(next_path))
    assert page.status_code == 200, page.text
    form = {"password": password, "next": next_path, "csrf_token": csrf_from(page.text)}
    return await client.post("/reauth", data=form, headers=ORIGIN)


async def user_id(site: Site, username: str) -> int:
    user = await site.bastion.services.users.get_by_username(username)
    assert user is not None
    return int(user.id)


# ---- browsers: every sensitive page and action ------------------------------------------

SENSITIVE_PAGES = (
    "/account/password",
    "/account/email",
    "/account/totp",
    "/admin/users",
    "/admin/users/new",
    "/admin/users/{bob}/roles",
    "/admin/users/{bob}/password",
    "/admin/users/{bob}/delete",
    "/admin/users/{bob}/mfa",
    "/admin/sessions",
    "/admin/audit",
)


@pytest.mark.parametrize("path", SENSITIVE_PAGES)
async def test_a_sensitive_page_outside_the_window_goes_to_reauth_and_back(
    site: Site, path: str
) -> None:
    path = path.format(bob=await user_id(site, "bob"))
    async with site.client() as client:
        await login(client, "alice")
        assert (await client.get(path)).status_code == 200  # just signed in: inside
        await age_sign_ins(site, "alice")
        held = await client.get(path)
        assert held.status_code == 303
        assert held.headers["location"] == reauth_location(path)
        back = await reauthenticate(client, path)
        assert back.status_code == 303
        assert back.headers["location"] == path
        assert (await client.get(path)).status_code == 200


async def test_a_get_comes_back_with_its_query_intact(site: Site) -> None:
    path = "/admin/users?q=bo&page=1"
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        held = await client.get(path)
        assert held.headers["location"] == "/reauth?next=/admin/users%3Fq%3Dbo%26page%3D1"
        back = await reauthenticate(client, path)
        assert back.headers["location"] == path
        page = await client.get(path)
    assert page.status_code == 200
    assert 'value="bo"' in page.text


def sensitive_posts(bob: int, bob_session: str) -> list[tuple[str, dict[str, str], str]]:
    """(action, its form, the page the form is on)."""
    new_password = {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD}
    return [
        ("/account/password", {"current_password": PASSWORD, **new_password}, "/account/password"),
        (
            "/account/email",
            {"email": "new@example.com", "current_password": PASSWORD},
            "/account/email",
        ),
        ("/account/sessions/revoke-others", {}, "/account/sessions"),
        ("/account/totp", {"code": "123456"}, "/account/totp"),
        ("/account/totp/disable", {}, "/account/security"),
        ("/account/recovery-codes", {}, "/account/security"),
        ("/account/passkeys/1/rename", {"name": "new name"}, "/account/security"),
        ("/account/passkeys/1/remove", {}, "/account/security"),
        ("/admin/users/new", {"username": "carol", **new_password}, "/admin/users/new"),
        (f"/admin/users/{bob}/active", {"active": "0"}, "/admin/users"),
        (f"/admin/users/{bob}/roles", {"roles": "admin"}, f"/admin/users/{bob}/roles"),
        (f"/admin/users/{bob}/password", new_password, f"/admin/users/{bob}/password"),
        (f"/admin/users/{bob}/reset-link", {}, f"/admin/users/{bob}/password"),
        (f"/admin/users/{bob}/delete", {"confirm": "bob"}, f"/admin/users/{bob}/delete"),
        (f"/admin/users/{bob}/mfa/reset", {"confirm": "bob"}, f"/admin/users/{bob}/mfa"),
        (f"/admin/sessions/{bob_session}/revoke", {}, "/admin/sessions"),
    ]


async def test_every_sensitive_action_outside_the_window_changes_nothing(site: Site) -> None:
    async with site.client() as client, site.client() as bobs, site.client() as elsewhere:
        await login(bobs, "bob")
        await login(client, "alice")
        await login(elsewhere, "alice")  # for "sign out everywhere else"
        bob = await user_id(site, "bob")
        (bob_session,) = await site.bastion.services.sessions.list_for_user(bob)
        await age_sign_ins(site, "alice")
        token = await csrf_token(client)
        before = await site_state(site)
        for action, form, page in sensitive_posts(bob, bob_session.key):
            held = await client.post(
                action,
                data={**form, "csrf_token": token},
                headers={**ORIGIN, "Referer": f"{BASE}{page}"},
            )
            assert held.status_code == 303, action
            assert held.headers["location"] == reauth_location(page), action
        assert await site_state(site) == before


@pytest.mark.parametrize("path", ["/account/passkeys/options", "/account/passkeys"])
async def test_passkey_registration_calls_outside_the_window_get_rfc_9470s_challenge(
    site: Site, path: str
) -> None:
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        headers = {**ORIGIN, "X-CSRF-Token": await csrf_token(client)}
        refused = await client.post(path, json={"credential": {}, "name": "key"}, headers=headers)
    assert refused.status_code == 401
    assert "confirm it is you at /reauth" in challenge_params(refused)
    assert refused.headers["www-authenticate"].endswith(f'max_age="{WINDOW}"')


@pytest.mark.parametrize(
    "referer",
    [None, "http://evil.example/account/sessions", "https://testserver/account/sessions", ""],
    ids=["none", "other-site", "other-scheme", "empty"],
)
async def test_a_post_without_a_same_origin_referer_comes_back_to_the_dashboard(
    site: Site, referer: str | None
) -> None:
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        headers = {**ORIGIN, **({"Referer": referer} if referer is not None else {})}
        form = {"csrf_token": await csrf_token(client)}
        held = await client.post("/account/sessions/revoke-others", data=form, headers=headers)
    assert held.status_code == 303
    assert held.headers["location"] == "/reauth?next=/dashboard"


async def test_after_reauthentication_the_action_works(site: Site) -> None:
    async with site.client() as client, site.client() as elsewhere:
        await login(client, "alice")
        await login(elsewhere, "alice")
        await age_sign_ins(site, "alice")
        form = {"csrf_token": await csrf_token(client)}
        referer = {**ORIGIN, "Referer": f"{BASE}/account/sessions"}
        held = await client.post("/account/sessions/revoke-others", data=form, headers=referer)
        assert held.headers["location"] == reauth_location("/account/sessions")
        back = await reauthenticate(client, "/account/sessions")
        assert back.headers["location"] == "/account/sessions"
        form = {"csrf_token": await csrf_token(client, "/account/sessions")}
        done = await client.post("/account/sessions/revoke-others", data=form, headers=referer)
        assert done.status_code == 303
        assert done.headers["location"] == "/account/sessions?done=others"
        assert (await elsewhere.get("/api/me")).status_code == 401
        assert (await client.get("/api/me")).status_code == 200


async def test_password_change_after_reauthentication(site: Site) -> None:
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        assert (await client.get("/account/password")).status_code == 303
        await reauthenticate(client, "/account/password")
        form = {
            "csrf_token": await csrf_token(client, "/account/password"),
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        }
        changed = await client.post("/account/password", data=form, headers=ORIGIN)
    assert changed.status_code == 200
    assert "Password changed" in changed.text


async def test_reauthentication_renews_the_session_and_restarts_its_window(site: Site) -> None:
    services = site.bastion.services
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        (old,) = await services.sessions.list_for_user(await user_id(site, "alice"))
        old_cookie = client.cookies["bastion_session"]
        back = await reauthenticate(client, "/account/password")
        assert back.status_code == 303
        (new,) = await services.sessions.list_for_user(await user_id(site, "alice"))
        me = (await client.get("/api/me")).json()
        devices = await client.get("/account/sessions")
    assert client.cookies["bastion_session"] != old_cookie
    assert new.key != old.key
    assert new.created_at == old.created_at  # the same sign-in, under a new id
    assert new.auth_time > old.auth_time + WINDOW
    assert new.amr == ("pwd",)
    assert me["session_id"] == new.key
    assert me["amr"] == ["pwd"]
    assert me["auth_time"] == int(new.auth_time)
    assert "password" in devices.text
    events = await services.users.list_audit(0, 10)
    success = [e for e in events if e.event == "reauth.success"]
    assert len(success) == 1
    assert success[0].session_ref == new.key[:12]


# ---- the /reauth page --------------------------------------------------------------------


async def test_a_wrong_password_at_reauth_changes_nothing(site: Site) -> None:
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        wrong = await reauthenticate(client, "/account/password", WRONG)
        assert wrong.status_code == 400
        assert "The password is not correct." in wrong.text
        assert 'name="password"' in wrong.text
        assert 'name="next" value="/account/password"' in wrong.text
        empty = await reauthenticate(client, "/account/password", "")
        assert empty.status_code == 400
        assert (await client.get("/account/password")).status_code == 303
    events = [e.event for e in await site.bastion.services.users.list_audit(0, 10)]
    assert events.count("reauth.failure") == 1  # an empty form is not an attempt


async def test_wrong_passwords_at_reauth_share_the_sign_in_backoff(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    settings = make_settings(
        reauth_window=WINDOW, login_max_failures=2, login_max_backoff=4, login_ip_limit="100/minute"
    )
    site: Site = await site_factory(settings)
    clock = FakeClock()
    limiter = LoginThrottle.from_settings(MemoryStore("ratelimit", clock=clock), settings)
    site.bastion.services.authenticator.limiter = limiter
    site.bastion.services.accounts.limiter = limiter
    await site.create_user("alice")
    async with site.client() as client, site.client() as other:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        assert (await reauthenticate(client, "/dashboard", WRONG)).status_code == 400
        assert (await reauthenticate(client, "/dashboard", WRONG)).status_code == 400
        throttled = await reauthenticate(client, "/dashboard", PASSWORD)
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "1"
        assert "Too many attempts" in throttled.text
        assert (await login(other, "alice")).status_code == 429  # one budget with sign-in
        clock.advance(1)
        assert (await reauthenticate(client, "/dashboard")).status_code == 303
    assert await limiter.failures("alice") == 0


@pytest.mark.parametrize(
    "next_path",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"],
)
async def test_reauth_never_sends_the_browser_to_another_site(site: Site, next_path: str) -> None:
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        page = await client.get("/reauth", params={"next": next_path})
        assert 'name="next" value="/dashboard"' in page.text
        form = {"password": PASSWORD, "next": next_path, "csrf_token": csrf_from(page.text)}
        back = await client.post("/reauth", data=form, headers=ORIGIN)
    assert back.status_code == 303
    assert back.headers["location"] == "/dashboard"


async def test_the_reauth_form_needs_its_csrf_token(site: Site) -> None:
    async with site.client() as client:
        await login(client, "alice")
        await age_sign_ins(site, "alice")
        page = await client.get("/reauth?next=/account/password")
        assert 'name="csrf_token"' in page.text
        form = {"password": PASSWORD, "next": "/account/password"}
        assert_refused(await client.post("/reauth", data=form, headers=ORIGIN))
        forged = {**form, "csrf_token": "x" * 64}
        assert_refused(await client.post("/reauth", data=forged, headers=ORIGIN))
        assert (await client.get("/account/password")).status_code == 303  # still outside


async def test_an_anonymous_visitor_of_reauth_signs_in_and_comes_back_to_the_action(
    site: Site,
) -> None:
    async with site.client() as client:
        page = await client.get("/reauth?next=/account/password")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/account/password"
        signed_in = await login(client, "alice", next_path="/account/password")
        assert signed_in.headers["location"] == "/account/password"
        assert (await client.get("/account/password")).status_code == 200


# ---- second factors at /reauth ------------------------------------------------------------


async def enrol_totp(site: Site, username: str) -> tuple[str, list[str]]:
    """Turn TOTP on for ``username`` (its current step is then used up); returns the secret
    and the recovery codes."""
    mfa = site.bastion.services.mfa
    uid = await user_id(site, username)
    secret = (await mfa.begin_totp(uid, username)).secret
    codes = await mfa.confirm_totp(uid, totp.code_at(secret, totp.current_step(system_clock)))
    return secret, codes


def next_code(secret: str) -> str:
    """A code the server accepts once: the next step's (one step of drift is allowed)."""
    return totp.code_at(secret, totp.current_step(system_clock) + 1)


async def reauthenticate_with(
    client: httpx.AsyncClient, next_path: str, **fields: str
) -> httpx.Response:
    page = await client.get(reauth_location(next_path))
    form = {**fields, "next": next_path, "csrf_token": csrf_from(page.text)}
    return await client.post("/reauth", data=form, headers=ORIGIN)


async def test_reauth_offers_the_second_factors_the_account_has(site: Site) -> None:
    async with site.client() as with_totp, site.client() as without:
        await login(without, "bob")
        plain = await without.get("/reauth?next=/account/password")
        await login(with_totp, "alice")  # signed in with the password, then turns TOTP on
        await enrol_totp(site, "alice")
        offered = await with_totp.get("/reauth?next=/account/password")
    assert 'name="password"' in plain.text
    assert 'name="code"' not in plain.text
    assert 'name="recovery_code"' not in plain.text
    assert 'name="password"' in offered.text
    assert 'name="code"' in offered.text
    assert 'name="recovery_code"' in offered.text


async def test_an_authenticator_code_reauthenticates_and_joins_the_methods(site: Site) -> None:
    async with site.client() as client:
        await login(client, "alice")
        secret, _ = await enrol_totp(site, "alice")
        await age_sign_ins(site, "alice")
        back = await reauthenticate_with(client, "/account/email", code=next_code(secret))
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/account/email"
        assert (await client.get("/account/email")).status_code == 200
        me = (await client.get("/api/me")).json()
        devices = await client.get("/account/sessions")
    assert me["amr"] == ["pwd", "otp"]
    assert "password + authenticator code" in devices.text


async def test_a_wrong_or_replayed_code_at_reauth_is_a_counted_failure(site: Site) -> None:
    async with site.client() as client:
        await login(client, "alice")
        secret, _ = await enrol_totp(site, "alice")
        await age_sign_ins(site, "alice")
        code = next_code(secret)
        assert (await reauthenticate_with(client, "/dashboard", code=code)).status_code == 303
        await age_sign_ins(site, "alice")
        replayed = await reauthenticate_with(client, "/dashboard", code=code)
        wrong = await reauthenticate_with(client, "/dashboard", code="000000")
        assert (await client.get("/account/password")).status_code == 303
    assert replayed.status_code == 400
    assert "That code is not valid." in replayed.text
    assert wrong.status_code == 400
    events = await site.bastion.services.users.list_audit(0, 20)
    failures = [e for e in events if e.event == "mfa.failure"]
    assert len(failures) == 2
    assert all((e.detail or {}).get("purpose") == "re-authentication" for e in failures)


async def test_a_recovery_code_reauthenticates_once(site: Site) -> None:
    async with site.client() as client:
        await login(client, "alice")
        _, codes = await enrol_totp(site, "alice")
        await age_sign_ins(site, "alice")
        used = await reauthenticate_with(client, "/account/password", recovery_code=codes[0])
        assert used.status_code == 303
        assert used.headers["location"] == "/account/password"
        assert (await client.get("/api/me")).json()["amr"] == ["pwd", "rec"]
        await age_sign_ins(site, "alice")
        again = await reauthenticate_with(client, "/account/password", recovery_code=codes[0])
    assert again.status_code == 400
    summary = await site.bastion.services.mfa.summary(await user_id(site, "alice"))
    assert summary.recovery_codes_left == len(codes) - 1


# ---- API clients and the application's own routes ----------------------------------------


@asynccontextmanager
async def app_with_sensitive_routes(settings: Settings) -> AsyncIterator[Site]:
    """An application of its own with sensitive routes of each kind."""
    app = FastAPI()
    install(app, settings)

    @app.post("/api/transfer")
    async def transfer(
        user: Annotated[Principal, Depends(require_recent_auth())],
    ) -> dict[str, str]:
        return {"by": user.username}

    @app.get("/reports/purge")
    async def purge(user: RecentUser, confirm: str = "") -> dict[str, str]:
        return {"by": user.username, "confirm": confirm}

    @app.post("/api/staff-only")
    async def staff_only(
        user: Annotated[Principal, Depends(require_recent_auth(role="staff"))],
    ) -> dict[str, str]:
        return {"by": user.username}

    async with app.router.lifespan_context(app):
        yield Site(app, app.state.bastion)


async def token_for(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    response = await client.post("/api/token", data=form)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def challenge_params(response: httpx.Response) -> str:
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication", ')
    return challenge


async def test_a_bearer_client_outside_the_window_gets_rfc_9470s_challenge(
    make_settings: MakeSettings,
) -> None:
    async with app_with_sensitive_routes(make_settings(reauth_window=WINDOW)) as site:
        await site.create_user("alice")
        async with site.client() as api:
            tokens = await token_for(api, "alice")
            assert (await api.post("/api/transfer", headers=bearer(tokens))).status_code == 200
            await age_sign_ins(site, "alice")
            refused = await api.post("/api/transfer", headers=bearer(tokens))
            assert refused.status_code == 401
            challenge = challenge_params(refused)
            assert 'error_description="a more recent sign-in is required: sign in again at ' in (
                challenge
            )
            assert challenge.endswith(f'max_age="{WINDOW}"')
            assert refused.json()["detail"].startswith("a more recent sign-in is required")
            # A refresh keeps the session and its sign-in time: still refused.
            form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
            refreshed = (await api.post("/api/token", data=form)).json()
            assert (await api.post("/api/transfer", headers=bearer(refreshed))).status_code == 401
            # A new password grant is a new sign-in: a new window.
            fresh = await token_for(api, "alice")
            done = await api.post("/api/transfer", headers=bearer(fresh))
    assert done.status_code == 200
    assert done.json() == {"by": "alice"}


async def test_a_browser_route_answers_a_navigation_with_reauth_and_a_script_with_401(
    make_settings: MakeSettings,
) -> None:
    async with app_with_sensitive_routes(make_settings(reauth_window=WINDOW)) as site:
        await site.create_user("alice")
        async with site.client() as browser:
            await login(browser, "alice")
            await age_sign_ins(site, "alice")
            navigation = await browser.get(
                "/reports/purge?confirm=yes", headers={"Accept": "text/html"}
            )
            script = await browser.get("/reports/purge?confirm=yes")  # Accept: */*
            assert navigation.status_code == 303
            assert navigation.headers["location"] == "/reauth?next=/reports/purge%3Fconfirm%3Dyes"
            assert script.status_code == 401
            assert "confirm it is you at /reauth" in challenge_params(script)
            back = await reauthenticate(browser, "/reports/purge?confirm=yes")
            assert back.headers["location"] == "/reports/purge?confirm=yes"
            done = await browser.get("/reports/purge?confirm=yes")
    assert done.json() == {"by": "alice", "confirm": "yes"}


async def test_a_missing_role_is_a_403_whatever_the_window(make_settings: MakeSettings) -> None:
    async with app_with_sensitive_routes(make_settings(reauth_window=WINDOW)) as site:
        await site.create_user("alice")
        async with site.client() as api:
            tokens = await token_for(api, "alice")
            assert (await api.post("/api/staff-only", headers=bearer(tokens))).status_code == 403
            await age_sign_ins(site, "alice")
            assert (await api.post("/api/staff-only", headers=bearer(tokens))).status_code == 403
        async with site.client() as anonymous:
            plain = await anonymous.get("/reports/purge")
    assert plain.status_code == 401  # anonymous: asked to sign in, not to re-authenticate
    assert plain.headers["www-authenticate"] == "Bearer"
