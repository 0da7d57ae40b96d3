"""``@cached`` and the reference app's cached routes, over ASGI, on every session store.

The cache store is the memory store here (``tests/faults`` runs the route on a real Redis
that is killed mid-test). Besides the reference routes (``/api/profile``,
``/api/summary``), the ``routes`` fixture mounts the endpoints below under ``/t/``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import (
    BackgroundTasks,
    Cookie,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    Security,
)
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer

from bastion.cache import Cache
from bastion.fastapi import CacheScopeError, CurrentUser, OptionalUser, cached, require_role
from bastion.fastapi.caching import get_cache, reads_no_identity
from bastion.fastapi.dependencies import current_user, optional_user, page_user
from bastion.fastapi.install import BastionDep
from bastion.i18n import gettext
from tests.e2e.conftest import ORIGIN, PASSWORD, Site, csrf_token, login

RUNS: Counter[str] = Counter()
SHARED_BODY: dict[str, Any] = {}


# -- endpoints under test ----------------------------------------------------------------


@cached(ttl=60, scope="public")
async def public_counter() -> dict[str, int]:
    RUNS["public"] += 1
    return {"n": RUNS["public"]}


@cached(ttl=60, scope="user", vary=["q"])
async def search(user: CurrentUser, q: str = "") -> dict[str, Any]:
    RUNS["search"] += 1
    return {"user": user.username, "q": q, "n": RUNS["search"]}


@cached(ttl=60, scope="user")
async def sets_cookie_on_its_response(user: CurrentUser) -> JSONResponse:
    RUNS["cookie-response"] += 1
    response = JSONResponse({"n": RUNS["cookie-response"]})
    response.set_cookie("theme", "dark")
    return response


@cached(ttl=60, scope="user")
async def sets_cookie_on_the_injected_response(
    user: CurrentUser, response: Response
) -> dict[str, int]:
    RUNS["cookie-injected"] += 1
    response.set_cookie("seen", "1")
    return {"n": RUNS["cookie-injected"]}


@cached(ttl=60, scope="user")
async def answers_404_with_a_status(user: CurrentUser, response: Response) -> dict[str, int]:
    RUNS["status-404"] += 1
    response.status_code = 404
    return {"n": RUNS["status-404"]}


@cached(ttl=60, scope="user")
async def answers_404_with_a_response(user: CurrentUser) -> JSONResponse:
    RUNS["response-404"] += 1
    return JSONResponse({"n": RUNS["response-404"]}, status_code=404)


@cached(ttl=60, scope="user")
async def raises_404(user: CurrentUser) -> dict[str, int]:
    RUNS["raise-404"] += 1
    raise HTTPException(404, "nothing here")


@cached(ttl=60, scope="user")
async def says_no_store(user: CurrentUser, response: Response) -> dict[str, int]:
    RUNS["no-store"] += 1
    response.headers["Cache-Control"] = "no-store"
    return {"n": RUNS["no-store"]}


@cached(ttl=60, scope="user")
async def plain_response(user: CurrentUser) -> PlainTextResponse:
    RUNS["plain"] += 1
    return PlainTextResponse(
        f"run {RUNS['plain']} for {user.username}", status_code=201, headers={"X-Kind": "plain"}
    )


@cached(ttl=60, scope="user")
async def with_header(user: CurrentUser, response: Response) -> dict[str, int]:
    RUNS["header"] += 1
    response.headers["X-Run"] = str(RUNS["header"])
    response.status_code = 202
    return {"n": RUNS["header"]}


@cached(ttl=60, scope="user")
async def optional_caller(user: OptionalUser) -> dict[str, Any]:
    RUNS["optional"] += 1
    return {"user": user.username if user else None, "n": RUNS["optional"]}


@cached(ttl=60, scope="user")
async def shared_object(user: CurrentUser) -> dict[str, Any]:
    # One dict object for every request, as a careless endpoint might return: the cache
    # must keep what it was at the time, not a reference that the next request changes.
    SHARED_BODY.clear()
    SHARED_BODY["user"] = user.username
    return SHARED_BODY


@cached(ttl=60, scope="user")
async def slow(user: CurrentUser) -> dict[str, Any]:
    RUNS["slow"] += 1
    await asyncio.sleep(0.05)
    return {"user": user.username}


@cached(ttl=60, scope="role")
async def role_reads_username(user: CurrentUser) -> dict[str, str]:
    return {"user": user.username}


@cached(ttl=60, scope="user")
async def user_reads_session(user: CurrentUser) -> dict[str, str]:
    return {"session": user.session_id}


@cached(ttl=60, scope="user")
def sync_endpoint(user: CurrentUser) -> dict[str, Any]:
    RUNS["sync"] += 1
    return {"user": user.username, "n": RUNS["sync"]}


# -- dependencies that can or cannot tell callers apart -----------------------------------


def profile_of(user: CurrentUser) -> dict[str, Any]:
    return {"user": user.username}


class ProfileOf:
    def __init__(self, user: CurrentUser) -> None:
        self.username = user.username


def nested_profile(profile: Annotated[dict[str, Any], Depends(profile_of)]) -> dict[str, Any]:
    return profile


def language(request: Request) -> str:
    return request.headers.get("accept-language", "")


def bearer_header(authorization: Annotated[str, Header()] = "") -> str:
    return authorization


def session_cookie(session: Annotated[str, Cookie(alias="bastion_session")] = "") -> str:
    return session


bearer_scheme = HTTPBearer(auto_error=False)


@reads_no_identity
def app_title(request: Request) -> str:
    title: str = request.app.title
    return title


@reads_no_identity
def vouched_but_built_on_the_user(request: Request, user: CurrentUser) -> str:
    return user.username


class Chain:
    """A dependency on itself: FastAPI could never solve it, but the check must end."""

    def __init__(self, chain: Annotated[Chain, Depends()]) -> None:
        self.chain = chain


@cached(ttl=60, scope="public")
async def gated_public(title: Annotated[str, Depends(app_title)]) -> dict[str, Any]:
    RUNS["gated"] += 1
    return {"title": title, "n": RUNS["gated"]}


@cached(ttl=60, scope="user")
async def unannotated_principal(  # type: ignore[no-untyped-def]
    user=Depends(current_user),  # noqa: B008 - FastAPI's own way to declare it
    profile: dict[str, Any] = Depends(profile_of),  # noqa: B008
) -> dict[str, Any]:
    RUNS["unannotated"] += 1
    return {"user": user.username, "profile": profile["user"], "n": RUNS["unannotated"]}


@cached(ttl=60, scope="user")
async def translated(user: CurrentUser) -> dict[str, Any]:
    RUNS["translated"] += 1
    return {"text": gettext("Sign out"), "n": RUNS["translated"]}


@cached(ttl=60, scope="public")
async def translated_public() -> dict[str, Any]:
    RUNS["translated-public"] += 1
    return {"text": gettext("Sign out"), "n": RUNS["translated-public"]}


TEST_ROUTES: dict[str, Callable[..., Any]] = {
    "/t/translated": translated,
    "/t/translated-public": translated_public,
    "/t/public": public_counter,
    "/t/search": search,
    "/t/cookie-response": sets_cookie_on_its_response,
    "/t/cookie-injected": sets_cookie_on_the_injected_response,
    "/t/status-404": answers_404_with_a_status,
    "/t/response-404": answers_404_with_a_response,
    "/t/raise-404": raises_404,
    "/t/no-store": says_no_store,
    "/t/plain": plain_response,
    "/t/header": with_header,
    "/t/optional": optional_caller,
    "/t/shared-object": shared_object,
    "/t/slow": slow,
    "/t/role-reads-username": role_reads_username,
    "/t/user-reads-session": user_reads_session,
    "/t/sync": sync_endpoint,
    "/t/unannotated": unannotated_principal,
}


@pytest.fixture
def routes(site: Site) -> Site:
    RUNS.clear()
    for path, endpoint in TEST_ROUTES.items():
        site.app.get(path)(endpoint)
    site.app.get("/t/gated", dependencies=[Depends(current_user)])(gated_public)
    return site


# -- helpers -----------------------------------------------------------------------------


async def bearer_for(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> dict[str, Any]:
    response = await client.post(
        "/api/token", data={"grant_type": "password", "username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return {"Authorization": f"Bearer {body['access_token']}", "refresh": body["refresh_token"]}


def auth(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": tokens["Authorization"]}


async def profile(client: httpx.AsyncClient, tokens: dict[str, str] | None = None) -> Any:
    response = await client.get("/api/profile", headers=auth(tokens) if tokens else None)
    assert response.status_code == 200, response.text
    return response.json()


# -- the reference app: /api/profile -----------------------------------------------------


async def test_profile_follows_the_contract(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice", roles=("staff",))
    tokens = await bearer_for(client, "alice")
    first = await client.get("/api/profile", headers=auth(tokens))
    second = await client.get("/api/profile", headers=auth(tokens))
    assert first.status_code == second.status_code == 200
    body = first.json()
    assert set(body) == {"username", "roles", "cached_at"}
    assert body["username"] == "alice"
    assert body["roles"] == ["staff"]
    assert second.json() == body  # cached: the same cached_at
    for response in (first, second):
        directives = [d.strip() for d in response.headers["cache-control"].split(",")]
        assert "private" in directives
        max_age = int(next(d for d in directives if d.startswith("max-age="))[8:])
        assert 0 < max_age <= 300
        vary = {v.strip().lower() for v in response.headers["vary"].split(",")}
        assert {"authorization", "cookie"} <= vary


async def test_alice_never_receives_bobs_profile(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice", roles=("admin",))
    await site.create_user("bob")
    alice, bob = await bearer_for(client, "alice"), await bearer_for(client, "bob")
    for _ in range(3):
        assert (await profile(client, alice))["username"] == "alice"
        assert (await profile(client, bob))["username"] == "bob"
    assert (await profile(client, bob))["roles"] == []


async def test_cookie_and_bearer_sessions_of_one_user_share_the_entry(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    by_cookie = await profile(client)
    async with site.client() as api:
        by_token = await profile(api, await bearer_for(api, "alice"))
    assert by_token == by_cookie


async def test_authentication_runs_before_the_cache(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    tokens = await bearer_for(client, "alice")
    await profile(client, tokens)  # alice's entry is now cached
    anonymous = await client.get("/api/profile")
    forged = await client.get("/api/profile", headers={"Authorization": "Bearer a.b.c"})
    assert anonymous.status_code == forged.status_code == 401
    await client.post("/api/token/revoke", data={"token": tokens["refresh"]})
    ended = await client.get("/api/profile", headers=auth(tokens))
    assert ended.status_code == 401
    assert "cached_at" not in ended.text


async def test_a_new_session_reuses_the_users_entry(site: Site, client: httpx.AsyncClient) -> None:
    # The control for the invalidation tests below: without an invalidation event, a
    # second sign-in of the same user is a hit.
    await site.create_user("alice")
    first = await profile(client, await bearer_for(client, "alice"))
    assert await profile(client, await bearer_for(client, "alice")) == first


async def test_logout_drops_the_users_entries(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice")
    await login(client, "alice")
    before = await profile(client)
    logout = await client.post(
        "/logout", data={"csrf_token": await csrf_token(client)}, headers=ORIGIN
    )
    assert logout.status_code == 303
    await login(client, "alice")
    assert (await profile(client))["cached_at"] != before["cached_at"]


async def test_token_revocation_drops_the_users_entries(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice")
    tokens = await bearer_for(client, "alice")
    before = await profile(client, tokens)
    await client.post("/api/token/revoke", data={"token": tokens["refresh"]})
    after = await profile(client, await bearer_for(client, "alice"))
    assert after["cached_at"] != before["cached_at"]


async def test_password_change_drops_the_users_entries(
    site: Site, client: httpx.AsyncClient
) -> None:
    user_id = await site.create_user("alice")
    before = await profile(client, await bearer_for(client, "alice"))
    new_password = "a completely different passphrase"
    await site.bastion.accounts.change_password(user_id, new_password)
    after = await profile(client, await bearer_for(client, "alice", new_password))
    assert after["cached_at"] != before["cached_at"]


async def test_role_change_drops_the_users_entries(site: Site, client: httpx.AsyncClient) -> None:
    user_id = await site.create_user("alice")
    tokens = await bearer_for(client, "alice")
    before = await profile(client, tokens)
    await site.bastion.accounts.set_roles(user_id, ["admin"])
    # Gaining a role ends the session; a new one must not see the cached answer.
    after = await profile(client, await bearer_for(client, "alice"))
    assert after["roles"] == ["admin"]
    assert after["cached_at"] != before["cached_at"]


async def test_disabling_drops_the_users_entries(site: Site, client: httpx.AsyncClient) -> None:
    user_id = await site.create_user("alice")
    before = await profile(client, await bearer_for(client, "alice"))
    await site.bastion.accounts.set_active(user_id, False)
    await site.bastion.accounts.set_active(user_id, True)
    after = await profile(client, await bearer_for(client, "alice"))
    assert after["cached_at"] != before["cached_at"]


# -- the reference app: /api/summary (role scope) ----------------------------------------


async def test_summary_is_shared_by_users_with_the_same_roles_only(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice", roles=("admin",))
    await site.create_user("carol", roles=("admin",))
    await site.create_user("bob")
    answers = {}
    for name in ("alice", "carol", "bob"):
        response = await client.get("/api/summary", headers=auth(await bearer_for(client, name)))
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("private")
        answers[name] = response.json()
    assert answers["alice"] == answers["carol"]
    assert answers["alice"]["view"] == "admin"
    assert answers["bob"]["view"] == "user"
    assert answers["bob"]["generated_at"] != answers["alice"]["generated_at"]
    admin_links = {s["href"] for s in answers["alice"]["sections"]}
    user_links = {s["href"] for s in answers["bob"]["sections"]}
    assert "/admin/users" in admin_links
    assert "/admin/users" not in user_links


async def test_a_user_given_a_role_moves_to_that_roles_summary(
    site: Site, client: httpx.AsyncClient
) -> None:
    await site.create_user("alice", roles=("admin",))
    bob_id = await site.create_user("bob")
    admins = (
        await client.get("/api/summary", headers=auth(await bearer_for(client, "alice")))
    ).json()
    bob = await bearer_for(client, "bob")
    assert (await client.get("/api/summary", headers=auth(bob))).json()["view"] == "user"
    await site.bastion.accounts.set_roles(bob_id, ["admin"])
    bob = await bearer_for(client, "bob")  # the role change ended bob's session
    assert (await client.get("/api/summary", headers=auth(bob))).json() == admins


async def test_invalidating_a_role_drops_its_summary(site: Site, client: httpx.AsyncClient) -> None:
    await site.create_user("alice", roles=("admin",))
    tokens = await bearer_for(client, "alice")
    before = (await client.get("/api/summary", headers=auth(tokens))).json()
    await site.bastion.services.cache.invalidate_role("admin")
    after = (await client.get("/api/summary", headers=auth(tokens))).json()
    assert after["generated_at"] != before["generated_at"]


# -- what is never stored ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/t/cookie-response", "/t/cookie-injected"])
async def test_a_response_that_sets_a_cookie_is_never_stored(
    routes: Site, client: httpx.AsyncClient, path: str
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    answers = [await client.get(path, headers=auth(tokens)) for _ in range(3)]
    assert [a.json()["n"] for a in answers] == [1, 2, 3]
    for answer in answers:
        assert "set-cookie" in answer.headers
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/t/status-404", "/t/response-404", "/t/raise-404"])
async def test_non_2xx_answers_are_never_stored(
    routes: Site, client: httpx.AsyncClient, path: str
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    for _ in range(3):
        answer = await client.get(path, headers=auth(tokens))
        assert answer.status_code == 404
        assert answer.headers["cache-control"] == "no-store"
    assert RUNS[path.removeprefix("/t/")] == 3


async def test_an_endpoint_that_says_no_store_is_not_stored(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    answers = [await client.get("/t/no-store", headers=auth(tokens)) for _ in range(2)]
    assert [a.json()["n"] for a in answers] == [1, 2]
    assert all(a.headers["cache-control"] == "no-store" for a in answers)


async def test_a_cookie_the_session_middleware_sets_is_never_replayed(
    routes: Site, client: httpx.AsyncClient
) -> None:
    # The middleware clears a stale session cookie on the way out, outside the endpoint:
    # that response is no-store, and the entry it left holds the endpoint's value only.
    async with routes.client(cookies={"bastion_session": "x" * 43}) as stale:
        first = await stale.get("/t/public")
    assert "bastion_session=" in first.headers["set-cookie"]
    assert first.headers["cache-control"] == "no-store"
    second = await client.get("/t/public")
    assert second.json() == first.json()  # a hit...
    assert "set-cookie" not in second.headers  # ...without the other caller's cookie
    assert second.headers["cache-control"].startswith("public, max-age=")


# -- languages -------------------------------------------------------------------------


def vary_of(response: httpx.Response) -> set[str]:
    return {
        v.strip().lower() for line in response.headers.get_list("vary") for v in line.split(",")
    }


async def test_an_answer_is_never_served_in_another_language(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    chinese = {**auth(tokens), "Accept-Language": "zh-CN,zh;q=0.9"}
    answers = [
        await client.get("/t/translated", headers=auth(tokens)),
        await client.get("/t/translated", headers=chinese),
        await client.get("/t/translated", headers=auth(tokens)),
        await client.get("/t/translated", headers=chinese),
        await client.get("/t/translated", params={"lang": "zh-CN"}, headers=auth(tokens)),
    ]
    texts = [a.json()["text"] for a in answers]
    assert texts == ["Sign out", "退出登录", "Sign out", "退出登录", "退出登录"]
    # One entry per language, each computed once.
    assert [a.json()["n"] for a in answers] == [1, 2, 1, 2, 2]
    for answer in answers:
        assert {"authorization", "cookie", "accept-language"} <= vary_of(answer)


async def test_a_public_answer_is_keyed_and_varied_by_language(
    routes: Site, client: httpx.AsyncClient
) -> None:
    english = await client.get("/t/translated-public")
    chinese = await client.get("/t/translated-public", headers={"Accept-Language": "zh-CN"})
    again = await client.get("/t/translated-public")
    assert (english.json(), chinese.json(), again.json()) == (
        {"text": "Sign out", "n": 1},
        {"text": "退出登录", "n": 2},
        {"text": "Sign out", "n": 1},
    )
    # A shared cache must tell the languages apart too: what chooses one is in Vary.
    for answer in (english, chinese, again):
        assert answer.headers["cache-control"].startswith("public, max-age=")
        assert {"accept-language", "cookie"} <= vary_of(answer)


# -- what is stored, and how it comes back -----------------------------------------------


async def test_a_plain_response_is_replayed_exactly(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    first, second = [await client.get("/t/plain", headers=auth(tokens)) for _ in range(2)]
    assert RUNS["plain"] == 1
    assert second.status_code == first.status_code == 201
    assert second.content == first.content == b"run 1 for alice"
    assert second.headers["x-kind"] == "plain"
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["cache-control"].startswith("private, max-age=")


async def test_status_and_headers_set_by_the_endpoint_are_replayed(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    first, second = [await client.get("/t/header", headers=auth(tokens)) for _ in range(2)]
    assert RUNS["header"] == 1
    assert first.status_code == second.status_code == 202
    assert first.headers["x-run"] == second.headers["x-run"] == "1"
    assert second.json() == {"n": 1}


async def test_vary_parameters_get_entries_of_their_own(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    seen = [
        (await client.get("/t/search", params={"q": q}, headers=auth(tokens))).json()
        for q in ("a", "b", "a")
    ]
    assert [s["q"] for s in seen] == ["a", "b", "a"]
    assert [s["n"] for s in seen] == [1, 2, 1]


async def test_a_shared_python_object_returned_by_the_endpoint_cannot_leak(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    await routes.create_user("bob")
    alice, bob = await bearer_for(client, "alice"), await bearer_for(client, "bob")
    assert (await client.get("/t/shared-object", headers=auth(alice))).json()["user"] == "alice"
    assert (await client.get("/t/shared-object", headers=auth(bob))).json()["user"] == "bob"
    assert (await client.get("/t/shared-object", headers=auth(alice))).json()["user"] == "alice"


async def test_a_sync_endpoint_is_cached_too(routes: Site, client: httpx.AsyncClient) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    answers = [(await client.get("/t/sync", headers=auth(tokens))).json() for _ in range(2)]
    assert answers == [{"user": "alice", "n": 1}] * 2


async def test_anonymous_callers_of_a_user_scoped_route_are_not_cached(
    routes: Site, client: httpx.AsyncClient
) -> None:
    answers = [await client.get("/t/optional") for _ in range(2)]
    assert [a.json() for a in answers] == [{"user": None, "n": 1}, {"user": None, "n": 2}]
    assert all(a.headers["cache-control"] == "no-store" for a in answers)


async def test_twenty_concurrent_requests_compute_once(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    answers = await asyncio.gather(
        *(client.get("/t/slow", headers=auth(tokens)) for _ in range(20))
    )
    assert all(a.status_code == 200 and a.json() == {"user": "alice"} for a in answers)
    assert RUNS["slow"] == 1


async def test_each_user_gets_their_own_answer_through_an_unannotated_principal(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    await routes.create_user("bob")
    alice, bob = await bearer_for(client, "alice"), await bearer_for(client, "bob")
    seen = [
        (await client.get("/t/unannotated", headers=auth(tokens))).json()
        for tokens in (alice, bob, alice, bob)
    ]
    assert [(s["user"], s["profile"]) for s in seen] == [("alice", "alice"), ("bob", "bob")] * 2
    assert RUNS["unannotated"] == 2  # one entry per user, each a hit the second time


async def test_a_public_route_gated_by_a_route_dependency_is_shared_by_signed_in_users(
    routes: Site, client: httpx.AsyncClient
) -> None:
    await routes.create_user("alice")
    await routes.create_user("bob")
    assert (await client.get("/t/gated")).status_code == 401
    answers = [
        await client.get("/t/gated", headers=auth(await bearer_for(client, name)))
        for name in ("alice", "bob")
    ]
    assert [a.json()["n"] for a in answers] == [1, 1]
    assert all(a.headers["cache-control"].startswith("public, max-age=") for a in answers)


# -- what a cached endpoint may see -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [("/t/role-reads-username", "scope='role'"), ("/t/user-reads-session", "scope='user'")],
)
async def test_a_cached_endpoint_cannot_read_what_its_key_does_not_cover(
    routes: Site, client: httpx.AsyncClient, path: str, message: str
) -> None:
    await routes.create_user("alice")
    tokens = await bearer_for(client, "alice")
    with pytest.raises(CacheScopeError, match=message):
        await client.get(path, headers=auth(tokens))


# -- checks at decoration time (no app needed) -------------------------------------------


def test_user_and_role_scopes_need_a_principal_parameter() -> None:
    async def anonymous(q: str) -> dict[str, str]:
        return {}

    for scope in ("user", "role"):
        with pytest.raises(TypeError, match="needs a principal parameter"):
            cached(ttl=60, scope=scope, vary=["q"])(anonymous)


def test_public_scope_refuses_an_endpoint_that_sees_the_caller() -> None:
    async def mine(user: OptionalUser) -> dict[str, str]:
        return {}

    with pytest.raises(TypeError, match="scope='public' would share"):
        cached(ttl=60, scope="public")(mine)


async def sees_user(user=Depends(current_user)) -> None:  # type: ignore[no-untyped-def]  # noqa: B008
    return None


async def sees_optional_user(user=Depends(optional_user)) -> None:  # type: ignore[no-untyped-def]  # noqa: B008
    return None


async def sees_page_user(user=Depends(page_user)) -> None:  # type: ignore[no-untyped-def]  # noqa: B008
    return None


async def sees_admin(user=Depends(require_role("admin"))) -> None:  # type: ignore[no-untyped-def]  # noqa: B008
    return None


async def sees_user_by_security(user=Security(current_user)) -> None:  # type: ignore[no-untyped-def]  # noqa: B008
    return None


async def profile_by_default(profile: dict[str, Any] = Depends(profile_of)) -> None:  # noqa: B008
    return None


async def profile_by_metadata(profile: Annotated[dict[str, Any], Depends(profile_of)]) -> None:
    return None


async def profile_by_class(profile: Annotated[ProfileOf, Depends()]) -> None:
    return None


async def profile_by_class_default(profile: ProfileOf = Depends()) -> None:  # noqa: B008
    return None


async def profile_two_levels_down(profile: Annotated[Any, Depends(nested_profile)]) -> None:
    return None


async def reads_the_request(lang: Annotated[str, Depends(language)]) -> None:
    return None


async def reads_the_authorization_header(token: Annotated[str, Depends(bearer_header)]) -> None:
    return None


async def reads_the_session_cookie(session: Annotated[str, Depends(session_cookie)]) -> None:
    return None


async def uses_a_security_scheme(credentials: Annotated[Any, Depends(bearer_scheme)]) -> None:
    return None


async def vouched_request_over_the_user(
    name: Annotated[str, Depends(vouched_but_built_on_the_user)],
) -> None:
    return None


@pytest.mark.parametrize(
    "endpoint",
    [
        sees_user,
        sees_optional_user,
        sees_page_user,
        sees_admin,
        sees_user_by_security,
        profile_by_default,
        profile_by_metadata,
        profile_by_class,
        profile_by_class_default,
        profile_two_levels_down,
        reads_the_request,
        reads_the_authorization_header,
        reads_the_session_cookie,
        uses_a_security_scheme,
        vouched_request_over_the_user,
    ],
    ids=lambda endpoint: endpoint.__name__,
)
def test_public_scope_refuses_every_dependency_that_can_tell_callers_apart(
    endpoint: Callable[..., Any],
) -> None:
    with pytest.raises(TypeError, match="scope='public' would share an answer computed for one"):
        cached(ttl=60, scope="public")(endpoint)


def test_public_scope_refuses_an_endpoint_that_reads_credentials_itself() -> None:
    async def by_cookie(session: Annotated[str, Cookie(alias="bastion_session")] = "") -> None:
        return None

    async def by_header(authorization: Annotated[str, Header()] = "") -> None:
        return None

    async def by_language(accept_language: Annotated[str, Header()] = "") -> None:
        return None

    for endpoint, name in ((by_cookie, "session"), (by_header, "authorization")):
        with pytest.raises(TypeError, match="scope='public' would share an answer computed"):
            cached(ttl=60, scope="public", vary=[name])(endpoint)
    cached(ttl=60, scope="public", vary=["accept_language"])(by_language)


def test_public_scope_accepts_dependencies_that_cannot_tell_callers_apart() -> None:
    async def shared(
        title: Annotated[str, Depends(app_title)],
        bastion: BastionDep,
        cache: Annotated[Cache, Depends(get_cache)],
        chain: Annotated[Chain, Depends()],
    ) -> None:
        return None

    cached(ttl=60, scope="public")(shared)


def test_the_refusal_names_the_path_to_the_caller() -> None:
    with pytest.raises(
        TypeError, match=r"'profile'.*nested_profile -> profile_of -> the signed-in"
    ):
        cached(ttl=60, scope="public")(profile_two_levels_down)


def test_user_and_role_scopes_find_an_unannotated_principal() -> None:
    for scope in ("user", "role"):
        for endpoint in (sees_user, sees_optional_user, sees_admin, sees_user_by_security):
            cached(ttl=60, scope=scope)(endpoint)


def test_role_scope_refuses_a_dependency_built_on_the_user() -> None:
    async def summary(user: CurrentUser, profile: dict[str, Any] = Depends(profile_of)) -> None:  # noqa: B008
        return None

    with pytest.raises(TypeError, match="scope='role' shares one answer"):
        cached(ttl=60, scope="role")(summary)
    cached(ttl=60, scope="user")(summary)  # one entry per user may depend on the user


def test_every_plain_parameter_must_be_in_vary() -> None:
    async def listing(user: CurrentUser, page: int, size: Annotated[int, Query()] = 10) -> None:
        return None

    with pytest.raises(TypeError, match=r"\['page', 'size'\]"):
        cached(ttl=60, scope="user")(listing)
    with pytest.raises(TypeError, match=r"\['size'\]"):
        cached(ttl=60, scope="user", vary=["page"])(listing)
    cached(ttl=60, scope="user", vary=["page", "size"])(listing)


def paging(page: int = 1, size: Annotated[int, Query()] = 10) -> tuple[int, int]:
    return page, size


def paging_two_levels_down(window: Annotated[tuple[int, int], Depends(paging)]) -> int:
    return window[0]


def later(tasks: BackgroundTasks) -> bool:
    tasks.add_task(print, "sent")
    return True


def test_inputs_read_by_dependencies_must_be_in_vary() -> None:
    """A dependency reading ?page= changes the answer as much as the endpoint reading it:
    without it in the key, the first caller's page would be served for every page."""

    async def listing(
        user: CurrentUser, window: Annotated[int, Depends(paging_two_levels_down)]
    ) -> None:
        return None

    async def covered(
        user: CurrentUser,
        window: Annotated[int, Depends(paging_two_levels_down)],
        page: int = 1,
        size: int = 10,
    ) -> None:
        return None

    async def public_listing(window: Annotated[int, Depends(paging)]) -> None:
        return None

    with pytest.raises(TypeError, match=r"paging_two_levels_down -> paging's input 'page'"):
        cached(ttl=60, scope="user")(listing)
    with pytest.raises(TypeError, match=r"input 'size'"):
        cached(ttl=60, scope="user", vary=["page"])(covered)
    cached(ttl=60, scope="user", vary=["page", "size"])(covered)
    with pytest.raises(TypeError, match=r"paging's input 'page'"):
        cached(ttl=60, scope="public")(public_listing)


def test_background_tasks_of_a_dependency_are_refused() -> None:
    async def endpoint(user: CurrentUser, scheduled: Annotated[bool, Depends(later)]) -> None:
        return None

    with pytest.raises(TypeError, match="background tasks, which would not run on a cache hit"):
        cached(ttl=60, scope="user")(endpoint)


async def test_a_dependency_input_in_vary_gets_an_entry_per_value(site: Site) -> None:
    """End to end: two pages read through a dependency are two entries, not one."""
    calls: Counter[int] = Counter()

    @site.app.get("/api/pages")
    @cached(ttl=60, scope="user", vary=["page", "size"])
    async def pages(
        user: CurrentUser,
        window: Annotated[tuple[int, int], Depends(paging)],
        page: int = 1,
        size: int = 10,
    ) -> dict[str, int]:
        calls[window[0]] += 1
        return {"page": window[0]}

    await site.create_user("alice")
    async with site.client() as client:
        await login(client, "alice")
        for page in (1, 2, 1, 2):
            answer = await client.get(f"/api/pages?page={page}")
            assert answer.json() == {"page": page}
    assert calls == Counter({1: 1, 2: 1})


def test_ttl_must_be_a_positive_number_of_seconds() -> None:
    for ttl in (0, -1, float("inf"), None):
        with pytest.raises(ValueError, match="ttl must be a positive"):
            cached(ttl=ttl, scope="public")  # type: ignore[arg-type]


def test_vary_must_name_real_parameters() -> None:
    async def listing(user: CurrentUser) -> None:
        return None

    with pytest.raises(TypeError, match="unknown parameters"):
        cached(ttl=60, scope="user", vary=["pgae"])(listing)
    with pytest.raises(TypeError, match="list of parameter names"):
        cached(ttl=60, scope="user", vary="page")


def test_request_and_background_task_parameters_are_refused() -> None:
    async def with_request(user: CurrentUser, request: Request) -> None:
        return None

    async def with_tasks(user: CurrentUser, tasks: BackgroundTasks) -> None:
        return None

    with pytest.raises(TypeError, match="Request parameter"):
        cached(ttl=60, scope="user")(with_request)
    with pytest.raises(TypeError, match="background tasks"):
        cached(ttl=60, scope="user")(with_tasks)
