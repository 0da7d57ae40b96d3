"""Redis outages against a real ``bastion serve``: a private redis-server is hung (SIGSTOP)
or killed while signed-in browsers and API clients keep asking.

While Redis is gone every request that needs it gets a 503 that names the store, within a
bounded time, never a 500, and nobody is let in; ``/readyz`` says Redis is down. Once
Redis is back, service resumes by itself within 10 s, with the same sessions.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import csrf_from
from tests.faults.conftest import (
    PASSWORD,
    RECOVERY_BOUND,
    SESSION_COOKIE,
    Watch,
    access_token,
    assert_not_signed_in,
    assert_unavailable,
    browser,
    create_user,
    server_env,
    server_log,
    sign_in,
    wait_until,
)
from tests.faults.servers import RedisServer
from tests.live import LiveServer, live_server

pytestmark = [pytest.mark.backend("redis"), pytest.mark.slow]


@dataclass(frozen=True)
class Site:
    live: LiveServer
    data_dir: Path
    redis: RedisServer
    prefix: str

    def forbidden(self) -> list[str]:
        """Backend details no answer may show."""
        return [str(self.redis.port), self.prefix, str(self.data_dir)]


@contextmanager
def _site(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisServer, extra: dict[str, str]
) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("serve") / "data"
    data.mkdir()
    prefix = f"faults-{secrets.token_hex(4)}"
    env = server_env({"BASTION_REDIS_URL": redis.url, "BASTION_REDIS_PREFIX": prefix, **extra})
    with live_server(data, env) as live:
        create_user(live, "alice")
        yield Site(live, data, redis, prefix)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, private_redis: RedisServer) -> Iterator[Site]:
    """Sessions, cache and rate limits in the private Redis; users in SQLite."""
    with _site(tmp_path_factory, private_redis, {}) as site:
        yield site


@pytest.fixture(scope="module")
def limits_only_site(
    tmp_path_factory: pytest.TempPathFactory, private_redis: RedisServer
) -> Iterator[Site]:
    """Only the rate limits in Redis: sessions in SQL, the cache in memory."""
    extra = {"BASTION_SESSION_STORE": "sql", "BASTION_CACHE_STORE": "memory"}
    with _site(tmp_path_factory, private_redis, extra) as site:
        yield site


@contextmanager
def redis_hung(redis: RedisServer) -> Iterator[None]:
    """Redis accepts connections but answers nothing; SIGCONT on the way out."""
    redis.pause()
    try:
        yield
    finally:
        redis.resume()


@contextmanager
def redis_killed(redis: RedisServer) -> Iterator[None]:
    """Redis is gone (connections refused); started again, same port and data, on exit."""
    redis.kill()
    try:
        yield
    finally:
        redis.start()


def _login_form(client: httpx.Client, watch: Watch, username: str) -> dict[str, str]:
    page = watch.get(client, "/login")
    assert page.status_code == 200  # the form needs no store: the CSRF secret is signed
    return {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page.text)}


def check_redis_outage(site: Site, watch: Watch, signed_in: httpx.Client, token: str) -> None:
    """Every way in, while Redis does not answer."""
    url = site.live.url
    bearer = {"Authorization": f"Bearer {token}"}
    cookie_before = signed_in.cookies[SESSION_COOKIE]
    with browser(site.live) as anonymous:
        page = watch.get(signed_in, "/dashboard")
        assert_unavailable(page, "session store")
        assert page.headers["content-type"].startswith("text/html")

        for client, headers in ((signed_in, {}), (anonymous, bearer)):
            api = watch.get(client, "/api/me", headers=headers)
            assert_unavailable(api, "session store")
            assert api.json() == {"detail": "session store unavailable"}

        form = _login_form(anonymous, watch, "alice")
        attempt = watch.post(anonymous, "/login", data=form, headers={"Origin": url})
        assert_not_signed_in(attempt)
        assert "unavailable" in attempt.text
        grant = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        tokens = watch.post(anonymous, "/api/token", data=grant)
        assert tokens.status_code == 503
        assert "access_token" not in tokens.text

        # Probes answer with or without a browser's cookie.
        for client in (anonymous, signed_in):
            ready = watch.get(client, "/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "database": "up", "redis": "down"}
            assert watch.get(client, "/healthz").status_code == 200

        # Many at once: each still gets its bounded 503, none a 500.
        paths = ["/dashboard", "/account/sessions", "/api/me", "/api/sessions"] * 3
        with ThreadPoolExecutor(max_workers=len(paths)) as pool:
            burst = list(pool.map(lambda path: watch.get(signed_in, path), paths))
        assert {r.status_code for r in burst} == {503}

    assert signed_in.cookies[SESSION_COOKIE] == cookie_before


def serves_again(site: Site, watch: Watch, signed_in: httpx.Client, token: str) -> bool:
    with browser(site.live) as anonymous:
        if watch.get(anonymous, "/readyz").status_code != 200:
            return False
        page = watch.get(signed_in, "/dashboard")
        if page.status_code != 200:
            return False
    assert "Welcome alice" in page.text
    me = watch.get(signed_in, "/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    return True


def test_hung_redis_gets_bounded_503s_lets_nobody_in_and_recovers_with_sessions(
    site: Site,
) -> None:
    signed_in = sign_in(site.live, "alice")
    token = access_token(site.live, "alice")
    watch = Watch()

    with redis_hung(site.redis):
        check_redis_outage(site, watch, signed_in, token)

    took = wait_until(lambda: serves_again(site, watch, signed_in, token))
    assert took < RECOVERY_BOUND
    sign_in(site.live, "alice").close()  # new sign-ins work again too
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
    assert "Traceback" not in server_log(site.live, site.data_dir)


def test_killed_redis_gets_503s_and_after_a_restart_the_same_sessions_work(site: Site) -> None:
    signed_in = sign_in(site.live, "alice")
    token = access_token(site.live, "alice")
    watch = Watch()

    with redis_killed(site.redis):
        check_redis_outage(site, watch, signed_in, token)

    took = wait_until(lambda: serves_again(site, watch, signed_in, token))
    assert took < RECOVERY_BOUND
    sign_in(site.live, "alice").close()
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
    assert "Traceback" not in server_log(site.live, site.data_dir)


def test_rate_limits_alone_in_redis_still_make_readyz_and_login_fail_closed(
    limits_only_site: Site,
) -> None:
    site = limits_only_site
    signed_in = sign_in(site.live, "alice")
    watch = Watch()

    with redis_killed(site.redis), browser(site.live) as anonymous:
        ready = watch.get(anonymous, "/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "database": "up", "redis": "down"}
        # The session lives in SQL: a signed-in browser is not affected...
        assert watch.get(signed_in, "/dashboard").status_code == 200
        # ...but nobody signs in without the brute-force counters.
        form = _login_form(anonymous, watch, "alice")
        attempt = watch.post(anonymous, "/login", data=form, headers={"Origin": site.live.url})
        assert_not_signed_in(attempt)
        assert_unavailable(attempt, "rate-limit store")

    def login_works() -> bool:
        with browser(site.live) as client:
            form = _login_form(client, watch, "alice")
            answer = watch.post(client, "/login", data=form, headers={"Origin": site.live.url})
            return answer.status_code == 303

    assert wait_until(login_works) < RECOVERY_BOUND
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()


@pytest.fixture(scope="module")
def sessions_only_site(
    tmp_path_factory: pytest.TempPathFactory, private_redis: RedisServer
) -> Iterator[Site]:
    """Only the sessions in Redis: rate limits and the cache in memory, users in SQLite."""
    extra = {"BASTION_RATELIMIT_STORE": "memory", "BASTION_CACHE_STORE": "memory"}
    with _site(tmp_path_factory, private_redis, extra) as site:
        yield site


def test_no_password_oracle_while_only_the_session_store_is_down(
    sessions_only_site: Site,
) -> None:
    """With the limits in memory, nothing before the password check needs Redis: a right
    password (which needs a session) and a wrong one (which does not) must still get the
    same answer while the session store is down, or the outage tells them apart."""
    site = sessions_only_site
    watch = Watch()
    attempts = {"right": ("alice", PASSWORD), "wrong": ("alice", "not it"), "unknown": ("zed", "x")}
    with redis_killed(site.redis), browser(site.live) as anonymous:
        pages = {}
        grants = {}
        for name, (username, password) in attempts.items():
            form = {**_login_form(anonymous, watch, username), "password": password}
            pages[name] = watch.post(
                anonymous, "/login", data=form, headers={"Origin": site.live.url}
            )
            grant = {"grant_type": "password", "username": username, "password": password}
            grants[name] = watch.post(anonymous, "/api/token", data=grant)
        for answers in (pages, grants):
            assert {a.status_code for a in answers.values()} == {503}
            assert len({a.text for a in answers.values()}) == 1
        for page in pages.values():
            assert_not_signed_in(page)
            assert_unavailable(page, "session store")
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
