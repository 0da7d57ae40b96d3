"""The JWT API through the ASGI app, on every session store."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from bastion import keys
from tests.e2e.conftest import (
    ORIGIN,
    PASSWORD,
    MakeSettings,
    Site,
    SiteFactory,
    csrf_token,
    login,
)

SWAGGER_HEADERS = {
    "Accept": "application/json, text/plain, */*",
    "Content-Type": "application/x-www-form-urlencoded",
    "X-Requested-With": "XMLHttpRequest",
}


async def password_grant(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/api/token", data={"grant_type": "password", "username": username, "password": password}
    )


async def tokens_for(client: httpx.AsyncClient, username: str = "alice") -> dict[str, str]:
    response = await password_grant(client, username)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_password_grant_returns_oauth_token_response(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice", email="alice@example.com")
    response = await password_grant(client)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == site.bastion.settings.access_token_ttl
    assert body["access_token"].count(".") == 2
    assert "." not in body["refresh_token"]  # opaque


async def test_access_token_carries_the_contract_claims(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await site.create_user("alice")
    token = (await tokens_for(client))["access_token"]
    header_b64, payload_b64, _ = token.split(".")

    def pad(part: str) -> str:
        return part + "=" * (-len(part) % 4)

    header = json.loads(base64.urlsafe_b64decode(pad(header_b64)))
    payload = json.loads(base64.urlsafe_b64decode(pad(payload_b64)))
    assert header["typ"] == "at+jwt"
    assert header["kid"]
    assert {"sub", "sid", "iat", "exp", "iss", "aud", "jti"} <= set(payload)
    assert payload["sub"] == str(user_id)
    assert payload["iss"] == "bastion"
    assert payload["aud"] == "bastion-api"


async def test_bearer_me_reports_the_user_and_session(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice", email="alice@example.com", roles=("staff",))
    token = (await tokens_for(client))["access_token"]
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "alice"
    assert body["email"] == "alice@example.com"
    assert body["roles"] == ["staff"]
    assert len(body["session_id"]) == 64


async def test_wrong_password_and_unknown_user_get_the_same_invalid_grant(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    wrong = await password_grant(client, "alice", "nope nope nope")
    unknown = await password_grant(client, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_grant"


async def test_token_endpoint_errors_follow_rfc_6749(client: httpx.AsyncClient) -> None:
    unsupported = await client.post("/api/token", data={"grant_type": "client_credentials"})
    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"
    missing = await client.post("/api/token", data={"grant_type": "password", "username": "a"})
    assert missing.json()["error"] == "invalid_request"
    no_grant = await client.post("/api/token", data={})
    assert no_grant.json()["error"] == "invalid_request"
    assert no_grant.headers["cache-control"] == "no-store"


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LONG = "x" * 4097


def assert_invalid_request(response: httpx.Response, says: str) -> None:
    """An RFC 6749 section 5.2 answer, never FastAPI's 422 shape."""
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "invalid_request"
    assert says in body["error_description"]


async def test_token_endpoint_with_a_json_body_says_it_needs_form_encoding(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    response = await client.post(
        "/api/token", json={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )
    assert_invalid_request(response, "application/x-www-form-urlencoded")
    assert "JSON" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(f"grant_type={'p' * 65}", "grant_type is longer than 64", id="long-grant"),
        pytest.param(f"grant_type=password&username={LONG}&password=x", "username", id="long-user"),
        pytest.param(f"grant_type=refresh_token&refresh_token={LONG}", "refresh_token", id="long"),
        pytest.param("grant_type=password&grant_type=refresh_token", "grant_type must not", id="2"),
        pytest.param(
            f"grant_type=password&username=alice&password=a&password={PASSWORD}",
            "password must not be sent more than once",
            id="repeated-password",
        ),
        pytest.param("username=alice", "grant_type is required", id="no-grant"),
        pytest.param("grant_type=&username=alice", "grant_type is required", id="empty-grant"),
        pytest.param(
            "grant_type=password&username=alice&password=",
            "username and password are required",
            id="empty-password",
        ),
        pytest.param("grant_type=refresh_token", "refresh_token is required", id="no-refresh"),
        pytest.param("grant_type=password&username=%FF", "UTF-8", id="not-utf-8"),
    ],
)
async def test_token_endpoint_answers_every_invalid_form_as_rfc_6749_invalid_request(
    site: Site, client: httpx.AsyncClient, body: str, says: str
) -> None:
    user_id = await site.create_user("alice")
    response = await client.post("/api/token", content=body, headers=FORM)
    assert_invalid_request(response, says)
    assert await site.bastion.services.sessions.list_for_user(user_id) == []


async def test_token_endpoint_ignores_empty_and_unknown_parameters(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    body = f"grant_type=password&username=alice&password={PASSWORD}&scope=&client_id=swagger"
    response = await client.post("/api/token", content=body, headers=FORM)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        pytest.param("token=a&token=b", FORM, "token must not be sent more than once", id="2"),
        pytest.param(f"token={LONG}", FORM, "token is longer than", id="long"),
        pytest.param("token=", FORM, "token is required", id="empty"),
        pytest.param('{"token": "a"}', {"Content-Type": "application/json"}, "JSON", id="json"),
    ],
)
async def test_revocation_answers_every_invalid_form_as_rfc_6749_invalid_request(
    client: httpx.AsyncClient, body: str, headers: dict[str, str], says: str
) -> None:
    assert_invalid_request(
        await client.post("/api/token/revoke", content=body, headers=headers), says
    )


async def test_openapi_describes_the_oauth_forms_and_their_errors(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path, field in (("/api/token", "grant_type"), ("/api/token/revoke", "token")):
        operation = spec["paths"][path]["post"]
        form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]
        assert field in form["schema"]["properties"]
        assert form["schema"]["required"] == [field]
        assert "422" not in operation["responses"]
        error = operation["responses"]["400"]["content"]["application/json"]["schema"]
        assert {"$ref": "#/components/schemas/OAuthError"} in error["anyOf"]
    assert spec["paths"]["/api/token"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]["properties"]["username"] == {"type": "string", "maxLength": 4096}


async def test_unauthenticated_api_gets_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_garbage_bearer_token_is_401_invalid_token(client: httpx.AsyncClient) -> None:
    for token in ("abc", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "x" * 9000):
        response = await client.get("/api/me", headers=bearer(token))
        assert response.status_code == 401, token
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_non_bearer_authorization_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert response.status_code == 401


async def test_refresh_rotates_and_the_old_token_is_spent(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    first = await tokens_for(client)
    refreshed = await client.post(
        "/api/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert refreshed.status_code == 200
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get("/api/me", headers=bearer(second["access_token"]))).status_code == 200


async def test_refresh_reuse_ends_the_whole_session(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    first = await tokens_for(client)
    second = (
        await client.post(
            "/api/token",
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        )
    ).json()
    replay = await client.post(
        "/api/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # Every token of that session is dead now: access tokens and the newest refresh token.
    for access in (first["access_token"], second["access_token"]):
        assert (await client.get("/api/me", headers=bearer(access))).status_code == 401
    again = await client.post(
        "/api/token", data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
    )
    assert again.status_code == 400
    events = [e.event for e in await site.bastion.services.users.list_audit(0, 50)]
    assert "refresh.reuse_detected" in events


async def test_ten_parallel_refreshes_with_one_token_end_the_session(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    first = await tokens_for(client)
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    answers = await asyncio.gather(*(client.post("/api/token", data=form) for _ in range(10)))
    # At most one refresh spends the token; every other one is a reuse and ends the session,
    # so whatever the winner got is dead too.
    issued = [a.json() for a in answers if a.status_code == 200]
    assert len(issued) <= 1
    assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code != 200)
    for tokens in (first, *issued):
        assert (
            await client.get("/api/me", headers=bearer(tokens["access_token"]))
        ).status_code == 401
    for tokens in issued:
        again = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert (await client.post("/api/token", data=again)).status_code == 400


async def test_refresh_never_outlives_the_session_absolute_end(
    site_factory: SiteFactory, make_settings: MakeSettings, store_kind: str
) -> None:
    site = await site_factory(
        make_settings(session_absolute_timeout=3600, session_idle_timeout=600)
    )
    await site.create_user("alice")
    async with site.client() as client:
        body = await tokens_for(client)
        refreshed = await client.post(
            "/api/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        )
    assert refreshed.status_code == 200
    store = site.bastion.services.session_store
    from bastion.refresh import _digest

    ttl = await store.ttl(f"r:{_digest(refreshed.json()['refresh_token'])}")
    assert ttl is not None
    assert ttl <= 3600


async def test_revocation_ends_the_session_and_its_access_tokens(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    body = await tokens_for(client)
    response = await client.post("/api/token/revoke", data={"token": body["refresh_token"]})
    assert response.status_code == 200
    assert (await client.get("/api/me", headers=bearer(body["access_token"]))).status_code == 401
    unknown = await client.post("/api/token/revoke", data={"token": "not-a-token"})
    assert unknown.status_code == 200


async def test_sessions_api_lists_and_ends_my_sessions(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    one = await tokens_for(client)
    two = await tokens_for(client)
    listed = (await client.get("/api/sessions", headers=bearer(one["access_token"]))).json()
    assert len(listed) == 2
    assert {"id", "current", "created_at", "last_seen_at", "ip", "user_agent", "device"} <= set(
        listed[0]
    )
    assert sum(1 for s in listed if s["current"]) == 1
    other = next(s for s in listed if not s["current"])
    ended = await client.delete(f"/api/sessions/{other['id']}", headers=bearer(one["access_token"]))
    assert ended.status_code == 204
    assert (await client.get("/api/me", headers=bearer(two["access_token"]))).status_code == 401
    assert (await client.get("/api/me", headers=bearer(one["access_token"]))).status_code == 200


async def test_another_users_session_id_is_404(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    await site.create_user("bob")
    alice = await tokens_for(client, "alice")
    bob = await tokens_for(client, "bob")
    bob_sid = (await client.get("/api/me", headers=bearer(bob["access_token"]))).json()[
        "session_id"
    ]
    response = await client.delete(
        f"/api/sessions/{bob_sid}", headers=bearer(alice["access_token"])
    )
    assert response.status_code == 404
    assert (await client.get("/api/me", headers=bearer(bob["access_token"]))).status_code == 200


async def test_cookie_api_calls_with_unsafe_methods_need_the_csrf_header(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    me = (await client.get("/api/me")).json()
    refused = await client.delete(f"/api/sessions/{me['session_id']}", headers=ORIGIN)
    assert refused.status_code == 403
    token = await csrf_token(client)
    allowed = await client.delete(
        f"/api/sessions/{me['session_id']}", headers={**ORIGIN, "X-CSRF-Token": token}
    )
    assert allowed.status_code == 204


async def test_logout_refuses_the_access_token_at_once(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    body = await tokens_for(client)
    me = (await client.get("/api/me", headers=bearer(body["access_token"]))).json()
    await site.bastion.services.sessions.end(me["session_id"])
    assert (await client.get("/api/me", headers=bearer(body["access_token"]))).status_code == 401


async def test_swagger_ui_authorize_flow_works(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    flow = next(iter(schemes.values()))["flows"]["password"]
    assert flow["tokenUrl"] == "/api/token"
    # Exactly what Swagger UI 4/5 posts for the password flow without a client id.
    body = f"grant_type=password&username=alice&password={PASSWORD.replace(' ', '%20')}&scope="
    response = await client.post(flow["tokenUrl"], content=body, headers=SWAGGER_HEADERS)
    assert response.status_code == 200
    token = response.json()["access_token"]
    me = await client.get("/api/me", headers={"Accept": "application/json", **bearer(token)})
    assert me.json()["username"] == "alice"


async def test_docs_page_is_served_from_local_assets(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "cdn." not in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    asset = await client.get("/_bastion/static/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200


async def test_jwks_publishes_no_symmetric_key(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == {"keys": []}


async def test_tokens_from_before_rotation_verify_until_prune(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    old = (await tokens_for(client))["access_token"]
    path = site.bastion.settings.resolved_jwt_keys_file
    keys.rotate(path, "HS256")
    site.bastion.services.keyring.refresh()
    new = (await tokens_for(client))["access_token"]
    old_kid = json.loads(base64.urlsafe_b64decode(old.split(".")[0] + "=="))["kid"]
    new_kid = json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"]
    assert old_kid != new_kid
    assert (await client.get("/api/me", headers=bearer(old))).status_code == 200
    removed = keys.prune(path, 0, clock=lambda: 4_000_000_000.0)
    assert old_kid in removed
    site.bastion.services.keyring.refresh()
    assert (await client.get("/api/me", headers=bearer(old))).status_code == 401
    assert (await client.get("/api/me", headers=bearer(new))).status_code == 200
