"""Two `bastion serve` processes on different ports, sharing Redis and PostgreSQL.

Each test runs twice: with the standalone Redis (under a prefix of its own) and with the
three-master Redis Cluster that ``redis_cluster_url`` starts for the run. Both processes use
one fresh PostgreSQL database (migrated with ``bastion db upgrade``), one JWK set file and
one secret key, and nothing else in common: each has its own data folder. Whatever one
process signs in, ends or counts, the other must see, and an ended session must be refused
everywhere within a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx
import pytest
import redis

from bastion.sessions import session_key
from tests.e2e.conftest import csrf_from
from tests.live import LiveServer
from tests.scale.conftest import COOKIE, PASSWORD, Pair, client, grant

WRONG = "not the password at all"
WITHIN = 1.0  # seconds: an ended session is refused on every process within this


# -- helpers -----------------------------------------------------------------------------


def sign_in(server: LiveServer, username: str = "alice", password: str = PASSWORD) -> str:
    """Sign in through the browser form (with its CSRF token); the raw session cookie."""
    with client(server) as browser:
        response = post_login(browser, server, csrf_from(browser.get("/login").text), username)
        assert response.status_code == 303, response.text
        return browser.cookies[COOKIE]


def post_login(
    browser: httpx.Client, server: LiveServer, csrf: str, username: str, password: str = PASSWORD
) -> httpx.Response:
    form = {"username": username, "password": password, "csrf_token": csrf}
    return browser.post("/login", data=form, headers={"Origin": server.url})


def bearer(server: LiveServer) -> dict[str, str]:
    tokens = grant(server)
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}


def dashboard_status(server: LiveServer, raw_cookie: str) -> int:
    with client(server, raw_cookie) as browser:
        return browser.get("/dashboard").status_code


def me_status(server: LiveServer, headers: Mapping[str, str]) -> int:
    with client(server) as api:
        return api.get("/api/me", headers=headers).status_code


def refused_within(seconds: float, refused: Callable[[], bool]) -> float:
    """Poll ``refused`` until it holds and return when (from now) the request that first
    saw it was sent. Fails when no request sent within ``seconds`` was refused."""
    start = time.monotonic()
    while True:
        sent = time.monotonic() - start
        if sent > seconds:
            pytest.fail(f"still accepted {seconds:g} s later")
        if refused():
            return sent
        time.sleep(0.02)


def shared_redis(url: str) -> redis.Redis | redis.RedisCluster:
    if url.startswith("redis+cluster://"):
        # One node is enough: the client learns the others from it.
        host, _, port = url.removeprefix("redis+cluster://").split(",")[0].rpartition(":")
        return redis.RedisCluster(host=host, port=int(port))
    return redis.Redis.from_url(url)


# -- tests -------------------------------------------------------------------------------


def test_both_processes_are_ready_on_the_shared_database_and_redis(pair: Pair) -> None:
    for server in (pair.a, pair.b):
        with client(server) as probe:
            ready = probe.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["database"] == "up"
        assert ready.json()["redis"] == "up"


def test_cookie_from_a_signs_in_on_b_and_lives_in_redis(pair: Pair) -> None:
    raw = sign_in(pair.a)

    with client(pair.b, raw) as browser:
        page = browser.get("/dashboard")

    assert page.status_code == 200
    assert "Welcome alice" in page.text
    # In Redis (not the shared database), under the hash of the id: the Redis URL is used.
    store = shared_redis(pair.redis_url)
    try:
        assert store.exists(f"{pair.redis_prefix}:session:s:{session_key(raw)}") == 1
    finally:
        store.close()


def test_bearer_token_from_a_is_accepted_on_b(pair: Pair) -> None:
    headers = bearer(pair.a)

    with client(pair.b) as api:
        me = api.get("/api/me", headers=headers)

    assert me.status_code == 200
    assert me.json()["username"] == "alice"


def test_refresh_token_from_a_rotates_on_b_and_is_then_spent_on_a(pair: Pair) -> None:
    tokens = grant(pair.a).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}

    with client(pair.b) as api:
        rotated = api.post("/api/token", data=refresh)
    with client(pair.a) as api:
        replayed = api.post("/api/token", data=refresh)

    assert rotated.status_code == 200
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"
    # Reuse of a spent token ends the whole session, on every process.
    new_access = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
    refused_within(WITHIN, lambda: me_status(pair.b, new_access) == 401)


def test_session_revoked_on_b_is_refused_on_a_within_a_second(pair: Pair) -> None:
    raw = sign_in(pair.a)
    with client(pair.a, raw) as browser:
        me = browser.get("/api/me")
    assert me.status_code == 200
    assert dashboard_status(pair.a, raw) == 200

    with client(pair.b) as api:
        revoked = api.delete(f"/api/sessions/{me.json()['session_id']}", headers=bearer(pair.b))
    assert revoked.status_code == 204

    refused_within(WITHIN, lambda: dashboard_status(pair.a, raw) == 303)


def test_bearer_session_revoked_by_form_on_b_is_refused_on_a_within_a_second(
    pair: Pair,
) -> None:
    headers = bearer(pair.a)
    with client(pair.a) as api:
        session_id = api.get("/api/me", headers=headers).json()["session_id"]

    with client(pair.b, sign_in(pair.b)) as browser:
        csrf = csrf_from(browser.get("/account/sessions").text)
        revoked = browser.post(
            f"/account/sessions/{session_id}/revoke",
            data={"csrf_token": csrf},
            headers={"Origin": pair.b.url},
        )
    assert revoked.status_code == 303
    assert revoked.headers["location"].startswith("/account/sessions")

    refused_within(WITHIN, lambda: me_status(pair.a, headers) == 401)


def test_logout_on_a_refuses_the_cookie_on_b_within_a_second(pair: Pair) -> None:
    raw = sign_in(pair.a)
    assert dashboard_status(pair.b, raw) == 200

    with client(pair.a, raw) as browser:
        csrf = csrf_from(browser.get("/dashboard").text)
        out = browser.post("/logout", data={"csrf_token": csrf}, headers={"Origin": pair.a.url})
    assert out.status_code == 303

    refused_within(WITHIN, lambda: dashboard_status(pair.b, raw) == 303)


def test_login_failures_on_both_processes_add_up_to_one_back_off(pair: Pair) -> None:
    # BASTION_LOGIN_MAX_FAILURES=2: the second failure starts a 1 s back-off. One failure
    # on each process reaches it only if both count in the same place.
    with client(pair.a) as browser_a, client(pair.b) as browser_b:
        csrf_a = csrf_from(browser_a.get("/login").text)
        csrf_b = csrf_from(browser_b.get("/login").text)

        first = post_login(browser_a, pair.a, csrf_a, "carol", WRONG)
        second = post_login(browser_b, pair.b, csrf_b, "carol", WRONG)
        # The correct password, at once, on the other process and on the token endpoint.
        page_a = post_login(browser_a, pair.a, csrf_a, "carol")
        token_b = grant(pair.b, "carol")

    assert (first.status_code, second.status_code) == (400, 400)
    assert page_a.status_code == 429
    assert int(page_a.headers["retry-after"]) >= 1
    assert token_b.status_code == 429
    assert COOKIE not in page_a.cookies
