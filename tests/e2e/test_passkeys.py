"""Passkey routes over HTTP, with a software authenticator standing in for the browser's:
registration, sign-in without a password, the second step of a sign-in, re-authentication,
renaming and removing, and what they refuse (no CSRF token, another browser's challenge, a
disabled or unverified account). On every session store and both databases."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bastion.mfa.passkeys import relying_party
from tests.e2e.conftest import (
    BASE,
    CSRF_META,
    ORIGIN,
    MakeSettings,
    Site,
    SiteFactory,
    assert_refused,
    csrf_token,
    login,
)
from tests.soft_authenticator import SoftAuthenticator

JSON = {**ORIGIN, "Accept": "application/json"}


async def meta_token(client: httpx.AsyncClient, path: str) -> str:
    """The token of the page's <meta name="csrf-token"> (what passkeys.js sends)."""
    match = CSRF_META.search((await client.get(path)).text)
    assert match, f"{path} has no csrf meta tag"
    return match.group(1)


async def post_json(
    client: httpx.AsyncClient, path: str, token: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await client.post(path, json=body or {}, headers={**JSON, "X-CSRF-Token": token})


async def add_passkey(
    client: httpx.AsyncClient, device: SoftAuthenticator, name: str = "Laptop"
) -> httpx.Response:
    token = await meta_token(client, "/account/security")
    options = await post_json(client, "/account/passkeys/options", token)
    assert options.status_code == 200, options.text
    answer = device.create(options.json())
    return await post_json(client, "/account/passkeys", token, {"credential": answer, "name": name})


async def passkey_sign_in(
    client: httpx.AsyncClient, device: SoftAuthenticator, next_path: str = ""
) -> httpx.Response:
    token = await meta_token(client, "/login")
    options = await post_json(client, "/login/passkey/options", token)
    assert options.status_code == 200, options.text
    assert options.json()["publicKey"]["allowCredentials"] == []
    answer = device.get(options.json())
    return await post_json(
        client, "/login/passkey", token, {"credential": answer, "next": next_path}
    )


async def enrolled_alice(site: Site) -> SoftAuthenticator:
    """alice, with a passkey on a new device (added through the routes)."""
    await site.create_user("alice", email="alice@example.com")
    device = SoftAuthenticator(BASE)
    async with site.client() as browser:
        await login(browser, "alice")
        added = await add_passkey(browser, device)
    assert added.status_code == 201, added.text
    return device


async def test_passkey_added_on_the_account_signs_in_without_a_password(site: Site) -> None:
    device = await enrolled_alice(site)
    async with site.client() as browser:
        signed_in = await passkey_sign_in(browser, device, "/account/sessions")
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json() == {"redirect": "/account/sessions"}
        assert "bastion_session=" in signed_in.headers["set-cookie"]
        me = (await browser.get("/api/me")).json()
        assert me["username"] == "alice"
        assert me["amr"] == ["hwk", "user", "mfa"]
        sessions = await browser.get("/account/sessions")
        assert "with passkey" in sessions.text
    audit = await site.bastion.services.users.list_audit(limit=10)
    assert {"mfa.passkey.registered", "login.success"} <= {event.event for event in audit}


async def test_a_passkey_sign_in_goes_only_to_a_path_of_this_site(site: Site) -> None:
    device = await enrolled_alice(site)
    async with site.client() as browser:
        signed_in = await passkey_sign_in(browser, device, "https://evil.example/")
        assert signed_in.json() == {"redirect": "/dashboard"}


async def test_passkey_routes_need_the_csrf_token(site: Site) -> None:
    await site.create_user("alice")
    async with site.client() as browser:
        await browser.get("/login")
        assert_refused(await browser.post("/login/passkey/options", json={}, headers=JSON))
        assert_refused(await browser.post("/login/passkey", json={}, headers=JSON))
        await login(browser, "alice")
        assert_refused(await browser.post("/account/passkeys/options", json={}, headers=JSON))
        assert_refused(await browser.post("/account/passkeys", json={}, headers=JSON))


async def test_account_passkey_routes_need_a_signed_in_browser(site: Site) -> None:
    async with site.client() as browser:
        token = await meta_token(browser, "/login")
        refused = await post_json(browser, "/account/passkeys/options", token)
        assert refused.status_code == 401


async def test_an_answer_is_refused_from_another_browser_and_its_challenge_is_spent(
    site: Site,
) -> None:
    device = await enrolled_alice(site)
    async with site.client() as asking, site.client() as other:
        token = await meta_token(asking, "/login")
        options = (await post_json(asking, "/login/passkey/options", token)).json()
        answer = device.get(options)
        other_token = await meta_token(other, "/login")
        stolen = await post_json(other, "/login/passkey", other_token, {"credential": answer})
        assert stolen.status_code == 400
        assert stolen.json()["error"] == "passkey_refused"
        assert "set-cookie" not in stolen.headers
        late = await post_json(asking, "/login/passkey", token, {"credential": answer})
        assert late.status_code == 400


async def test_a_disabled_account_cannot_sign_in_with_its_passkey(site: Site) -> None:
    device = await enrolled_alice(site)
    services = site.bastion.services
    alice = await services.users.get_by_username("alice")
    assert alice is not None
    await services.users.set_active(alice.id, False)
    async with site.client() as browser:
        refused = await passkey_sign_in(browser, device)
        assert refused.status_code == 400
        assert "bastion_session=" not in refused.headers.get("set-cookie", "")
        assert (await browser.get("/api/me")).status_code == 401


async def test_an_unverified_address_gets_no_session_when_verification_is_required(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(email_verification="required"))
    await site.create_user("alice", email="alice@example.com")
    services = site.bastion.services
    alice = await services.users.get_by_username("alice")
    assert alice is not None
    rp = relying_party(services.settings, BASE)
    device = SoftAuthenticator(BASE)
    options = await services.passkeys.registration_options(alice, rp, "setup")
    await services.passkeys.register(alice, device.create(options), "Laptop", rp, "setup")
    async with site.client() as browser:
        refused = await passkey_sign_in(browser, device)
        assert refused.status_code == 403
        assert refused.json()["error"] == "email_not_verified"
        assert (await browser.get("/api/me")).status_code == 401


async def test_passkeys_are_listed_renamed_and_removed_on_the_security_page(site: Site) -> None:
    device = await enrolled_alice(site)
    await site.create_user("mallory")
    services = site.bastion.services
    alice = await services.users.get_by_username("alice")
    assert alice is not None
    (passkey,) = await services.passkeys.list_for_user(alice.id)
    async with site.client() as mallory:
        await login(mallory, "mallory")
        token = await csrf_token(mallory)
        form = {"csrf_token": token, "name": "mine"}
        theirs = await mallory.post(
            f"/account/passkeys/{passkey.id}/rename", data=form, headers=ORIGIN
        )
        assert theirs.status_code == 404
        gone = await mallory.post(
            f"/account/passkeys/{passkey.id}/remove", data={"csrf_token": token}, headers=ORIGIN
        )
        assert gone.status_code == 404
    async with site.client() as browser:
        assert (await passkey_sign_in(browser, device)).status_code == 200
        page = await browser.get("/account/security")
        assert "Laptop" in page.text
        token = await csrf_token(browser, "/account/security")
        renamed = await browser.post(
            f"/account/passkeys/{passkey.id}/rename",
            data={"csrf_token": token, "name": "Travel phone"},
            headers=ORIGIN,
        )
        assert renamed.status_code == 303
        page = await browser.get(renamed.headers["location"])
        assert "Passkey renamed." in page.text
        assert "Travel phone" in page.text
        removed = await browser.post(
            f"/account/passkeys/{passkey.id}/remove", data={"csrf_token": token}, headers=ORIGIN
        )
        assert removed.status_code == 303
        page = await browser.get(removed.headers["location"])
        assert "Passkey removed." in page.text
        assert "Travel phone" not in page.text
        assert "You have no passkeys yet." in page.text
    async with site.client() as browser:
        refused = await passkey_sign_in(browser, device)
        assert refused.status_code == 400


@pytest.mark.parametrize("route", ["/login/passkey/options", "/login/passkey"])
async def test_passkey_sign_in_routes_refuse_other_methods(site: Site, route: str) -> None:
    async with site.client() as browser:
        assert (await browser.get(route)).status_code == 405


async def test_passkey_is_the_second_step_after_the_password(site: Site) -> None:
    device = await enrolled_alice(site)
    async with site.client() as browser:
        password_step = await login(browser, "alice", next_path="/account/sessions")
        assert password_step.status_code == 303
        assert password_step.headers["location"] == "/login/verify"
        page = await browser.get("/login/verify")
        assert "Use a passkey" in page.text
        token = await meta_token(browser, "/login/verify")
        options = await post_json(browser, "/login/verify/passkey/options", token)
        assert options.status_code == 200, options.text
        allowed = [c["id"] for c in options.json()["publicKey"]["allowCredentials"]]
        assert allowed == [device.credential_ids()[0]]
        answer = device.get(options.json())
        done = await post_json(browser, "/login/verify/passkey", token, {"credential": answer})
        assert done.status_code == 200, done.text
        assert done.json() == {"redirect": "/account/sessions"}
        me = (await browser.get("/api/me")).json()
        assert me["amr"] == ["pwd", "hwk", "user", "mfa"]
        # The pending state was used up: its answer cannot be replayed (the old CSRF token
        # died with the pre-session; the session's own gets no further).
        again = await post_json(browser, "/login/verify/passkey", token, {"credential": answer})
        assert again.status_code == 403
        token = await meta_token(browser, "/dashboard")
        again = await post_json(browser, "/login/verify/passkey", token, {"credential": answer})
        assert again.status_code == 400
        assert again.json()["redirect"] == "/login?done=verify-expired"


async def test_another_users_passkey_is_no_second_factor(site: Site) -> None:
    await enrolled_alice(site)
    await site.create_user("bob")
    bobs = SoftAuthenticator(BASE)
    async with site.client() as browser:
        await login(browser, "bob")
        assert (await add_passkey(browser, bobs)).status_code == 201
    async with site.client() as browser:
        await login(browser, "alice")
        token = await meta_token(browser, "/login/verify")
        options = (await post_json(browser, "/login/verify/passkey/options", token)).json()
        answer = bobs.get({"publicKey": {**options["publicKey"], "allowCredentials": []}})
        refused = await post_json(browser, "/login/verify/passkey", token, {"credential": answer})
        assert refused.status_code == 400
        assert refused.json()["error"] == "passkey_refused"
        assert (await browser.get("/api/me")).status_code == 401
    audit = await site.bastion.services.users.list_audit(limit=20)
    assert "mfa.failure" in {event.event for event in audit}


async def test_passkey_confirms_it_is_you_when_the_window_has_passed(site: Site) -> None:
    device = await enrolled_alice(site)
    services = site.bastion.services
    async with site.client() as browser:
        # Signed in with the passkey alone, long enough ago to need re-authentication.
        assert (await passkey_sign_in(browser, device)).status_code == 200
        alice = await services.users.get_by_username("alice")
        assert alice is not None
        for session in await services.sessions.list_for_user(alice.id):
            await services.sessions.update(session, auth_time=session.auth_time - 86_400)
        token = await meta_token(browser, "/dashboard")
        outside = await post_json(browser, "/account/passkeys/options", token)
        assert outside.status_code == 401
        assert "insufficient_user_authentication" in outside.headers["www-authenticate"]
        page = await browser.get("/reauth?next=/account/security")
        assert "Confirm with a passkey" in page.text
        token = await meta_token(browser, "/reauth?next=/account/security")
        options = await post_json(browser, "/reauth/passkey/options", token)
        answer = device.get(options.json())
        body = {"credential": answer, "next": "/account/security"}
        done = await post_json(browser, "/reauth/passkey", token, body)
        assert done.status_code == 200, done.text
        assert done.json() == {"redirect": "/account/security"}
        token = await meta_token(browser, "/dashboard")
        assert (await post_json(browser, "/account/passkeys/options", token)).status_code == 200


async def test_a_passkey_completes_the_enrolment_that_bastion_mfa_requires(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(mfa="required"))
    await site.create_user("alice")
    async with site.client() as browser:
        enrolment = await login(browser, "alice")
        assert enrolment.headers["location"] == "/account/security"
        assert (await browser.get("/dashboard")).headers["location"] == "/account/security"
        added = await add_passkey(browser, SoftAuthenticator(BASE))
        assert added.status_code == 201, added.text
        assert (await browser.get("/dashboard")).status_code == 200
        assert (await browser.get("/api/me")).json()["amr"] == ["pwd", "hwk", "user", "mfa"]
