"""Two `bastion serve` processes on different ports, sharing Redis and PostgreSQL.

Each test runs twice: with the standalone Redis (under a prefix of its own) and with the
three-master Redis Cluster that ``redis_cluster_url`` starts for the run. Both processes use
one fresh PostgreSQL database (migrated with ``bastion db upgrade``), one JWK set file and
one secret key, and nothing else in common: each has its own data folder. Whatever one
process signs in, ends or counts, the other must see, and an ended session must be refused
everywhere within a second.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import redis

from bastion.db import create_engine
from bastion.passwords import Passwords
from bastion.sessions import session_key
from bastion.users.repository import UserRepository
from tests.e2e.conftest import csrf_from
from tests.live import BASTION, LiveServer, live_server, server_env

PASSWORD = "two processes, one truth"
WRONG = "not the password at all"
COOKIE = "bastion_session"
WITHIN = 1.0  # seconds: an ended session is refused on every process within this


@dataclass
class Pair:
    """Processes A and B, and where their shared Redis keys live."""

    a: LiveServer
    b: LiveServer
    redis_url: str
    redis_prefix: str


# -- setup -------------------------------------------------------------------------------


def _admin(url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _create_users(database_url: str, *names: str) -> None:
    """Through the library, in this process: a `bastion users create` each would cost a
    few seconds of interpreter start on a busy machine."""

    async def run() -> None:
        engine = create_engine(database_url)
        try:
            users, passwords = UserRepository(engine), Passwords()
            for name in names:
                await users.create_user(name, await passwords.hash_async(PASSWORD))
        finally:
            await engine.dispose()

    asyncio.run(run())


def _bastion(env: Mapping[str, str], *args: str) -> None:
    done = subprocess.run(
        [BASTION, *args], env=dict(env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"bastion {' '.join(args)}: {done.stderr.strip()}"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("redis", marks=pytest.mark.backend("redis")),
        pytest.param("redis-cluster", marks=pytest.mark.backend("redis")),
    ],
)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[Pair]:
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        prefix = f"{request.getfixturevalue('redis_prefix')}:scale"
    else:
        redis_url = request.getfixturevalue("redis_cluster_url")
        prefix = "bastion-scale"
    root = tmp_path_factory.mktemp(f"two-{request.param}")
    # A database of their own: the run's `postgres_url` database also holds tables the
    # store and user suites create without Alembic, which `db upgrade` would collide with.
    database = f"bastion_scale_{secrets.token_hex(6)}"
    _admin(postgres_url, f'CREATE DATABASE "{database}"')
    shared = {
        "BASTION_DATABASE_URL": postgres_url.rsplit("/", 1)[0] + "/" + database,
        "BASTION_REDIS_URL": redis_url,
        "BASTION_REDIS_PREFIX": prefix,
        "BASTION_SECRET_KEY": secrets.token_urlsafe(48),
        "BASTION_JWT_KEYS_FILE": str(root / "shared" / "jwks.json"),
        "BASTION_LOGIN_MAX_FAILURES": "2",
        # Every request comes from 127.0.0.1: keep the per-address limit out of the way.
        "BASTION_LOGIN_IP_LIMIT": "1000/minute",
    }
    try:
        with ExitStack() as stack:
            _bastion(server_env(root / "setup", shared), "db", "upgrade")
            _create_users(shared["BASTION_DATABASE_URL"], "alice", "carol")
            folders = [root / "a", root / "b"]
            for folder in folders:
                folder.mkdir()
            # Both start at once, so they also race to create the shared key file.
            with ThreadPoolExecutor(2) as pool:
                starting = [
                    pool.submit(stack.enter_context, live_server(folder, shared))
                    for folder in folders
                ]
                a, b = (future.result() for future in starting)
            yield Pair(a, b, redis_url, prefix)
    finally:
        _admin(postgres_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# -- helpers -----------------------------------------------------------------------------


def client(server: LiveServer, raw_cookie: str | None = None) -> httpx.Client:
    cookies = {COOKIE: raw_cookie} if raw_cookie else None
    return httpx.Client(base_url=server.url, cookies=cookies, follow_redirects=False, timeout=10)


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


def grant(server: LiveServer, username: str = "alice", password: str = PASSWORD) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    with client(server) as api:
        return api.post("/api/token", data=form)


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
