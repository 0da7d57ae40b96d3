"""The token endpoint for users with a second factor: the password grant answers
mfa_required with an mfa_token, the urn:bastion:grant-type:mfa grant completes it. On every
session store and both databases."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import PASSWORD, MakeSettings, Site, SiteFactory, login
from tests.e2e.test_two_step import PENDING_COOKIE, user_with_totp

MFA_GRANT = "urn:bastion:grant-type:mfa"


async def password_grant(client: httpx.AsyncClient, username: str = "alice") -> httpx.Response:
    return await client.post(
        "/api/token", data={"grant_type": "password", "username": username, "password": PASSWORD}
    )


async def mfa_grant(client: httpx.AsyncClient, mfa_token: str, **factor: str) -> httpx.Response:
    return await client.post(
        "/api/token", data={"grant_type": MFA_GRANT, "mfa_token": mfa_token, **factor}
    )


async def test_the_password_grant_asks_for_the_second_factor_and_the_mfa_grant_gives_tokens(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    first = await password_grant(client)
    assert first.status_code == 400
    body = first.json()
    assert body["error"] == "mfa_required"
    assert "access_token" not in body
    assert first.headers["cache-control"] == "no-store"
    assert await site.bastion.services.sessions.list_all() == []

    second = await mfa_grant(client, body["mfa_token"], otp=phone.code())
    assert second.status_code == 200, second.text
    tokens = second.json()
    claims = site.bastion.services.access_tokens.decode(tokens["access_token"])
    assert claims.extra["amr"] == ["pwd", "otp", "mfa"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["amr"] == ["pwd", "otp", "mfa"]
    # Refreshed tokens keep saying how the user signed in.
    refreshed = await client.post(
        "/api/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    refreshed_claims = site.bastion.services.access_tokens.decode(refreshed.json()["access_token"])
    assert refreshed_claims.extra["amr"] == ["pwd", "otp", "mfa"]


async def test_an_mfa_token_works_once(site: Site, client: httpx.AsyncClient) -> None:
    phone, _ = await user_with_totp(site)
    mfa_token = (await password_grant(client)).json()["mfa_token"]
    assert (await mfa_grant(client, mfa_token, otp=phone.code())).status_code == 200
    replay = await mfa_grant(client, mfa_token, otp=phone.code())
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert len(await site.bastion.services.sessions.list_all()) == 1


async def test_a_wrong_code_keeps_the_mfa_token_and_is_audited(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    mfa_token = (await password_grant(client)).json()["mfa_token"]
    wrong = await mfa_grant(client, mfa_token, otp="00000x")
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    failure = next(
        e for e in await site.bastion.services.users.list_audit(0, 20) if e.event == "mfa.failure"
    )
    assert failure.detail == {"method": "totp", "channel": "api", "reason": "code"}
    assert (await mfa_grant(client, mfa_token, otp=phone.code())).status_code == 200


async def test_a_recovery_code_completes_the_grant_once(
    site: Site, client: httpx.AsyncClient
) -> None:
    _, codes = await user_with_totp(site)
    mfa_token = (await password_grant(client)).json()["mfa_token"]
    done = await mfa_grant(client, mfa_token, recovery_code=codes[3])
    assert done.status_code == 200
    claims = site.bastion.services.access_tokens.decode(done.json()["access_token"])
    assert claims.extra["amr"] == ["pwd", "rec", "mfa"]
    again = (await password_grant(client)).json()["mfa_token"]
    assert (await mfa_grant(client, again, recovery_code=codes[3])).json()["error"] == (
        "invalid_grant"
    )


async def test_the_mfa_grant_is_throttled_like_the_password_grant(
    site_factory: SiteFactory, make_settings: MakeSettings
) -> None:
    site = await site_factory(make_settings(login_max_failures=3, login_max_backoff=60))
    phone, _ = await user_with_totp(site)
    async with site.client() as client:
        mfa_token = (await password_grant(client)).json()["mfa_token"]
        assert (await mfa_grant(client, mfa_token, otp="11111x")).status_code == 400
        assert (await mfa_grant(client, mfa_token, otp="11111y")).status_code == 400
        throttled = await mfa_grant(client, mfa_token, otp=phone.code())
        assert throttled.status_code == 429
        assert throttled.json()["error"] == "invalid_grant"
        assert "Retry-After" in throttled.headers
        assert (await password_grant(client)).status_code == 429


async def test_a_browsers_pending_state_is_no_mfa_token(
    site: Site, client: httpx.AsyncClient
) -> None:
    phone, _ = await user_with_totp(site)
    await login(client, "alice")
    browser_state = client.cookies[PENDING_COOKIE]
    async with site.client() as api:
        refused = await mfa_grant(api, browser_state, otp=phone.code())
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
    # Nor is an mfa_token a browser's pending state.
    mfa_token = (await password_grant(client)).json()["mfa_token"]
    client.cookies.set(PENDING_COOKIE, mfa_token)
    page = await client.get("/login/verify")
    assert page.headers["location"] == "/login?done=verify-expired"


async def test_malformed_mfa_grants_are_invalid_requests(
    site: Site, client: httpx.AsyncClient
) -> None:
    await user_with_totp(site)
    mfa_token = (await password_grant(client)).json()["mfa_token"]
    forms: list[dict[str, Any]] = [
        {"grant_type": MFA_GRANT, "otp": "123456"},
        {"grant_type": MFA_GRANT, "mfa_token": mfa_token},
        {"grant_type": MFA_GRANT, "mfa_token": mfa_token, "otp": "1", "recovery_code": "2"},
    ]
    for form in forms:
        response = await client.post("/api/token", data=form)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
    garbage = await mfa_grant(client, "not-a-token", otp="123456")
    assert garbage.json()["error"] == "invalid_grant"


async def test_the_openapi_schema_documents_both_steps(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/api/token"]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    for field in ("grant_type", "username", "password", "mfa_token", "otp", "recovery_code"):
        assert field in form["properties"]
    assert MFA_GRANT in operation["description"]
    bad_request = operation["responses"]["400"]
    assert "mfa_required" in bad_request["description"]
    assert "MFARequired" in str(bad_request["content"]["application/json"]["schema"])
    assert "mfa_token" in schema["components"]["schemas"]["MFARequired"]["properties"]
