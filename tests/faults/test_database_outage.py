"""PostgreSQL outages against a real ``bastion serve``: the server reaches its database
through a proxy that the test cuts (connections refused and reset) or silences (nothing
answers), while the shared PostgreSQL server itself keeps running.

Whatever needs the database (sign-in, admin pages, sessions kept in SQL) gets a 503 that
names it, within a bounded time, never a 500, and nobody is let in; ``/readyz`` says the
database is down. Sessions kept in Redis go on working for pages that only read the
session. Once the proxy is restored, service resumes by itself within 10 s.
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
    ProxiedDatabase,
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
from tests.faults.servers import TcpProxy
from tests.live import LiveServer, live_server

pytestmark = [pytest.mark.backend("postgres"), pytest.mark.slow]

OUTAGES = ["cut", "silence"]
"""How PostgreSQL becomes unreachable: "cut" refuses and resets connections at once,
"silence" keeps them open and never answers (the timeout path)."""


@dataclass(frozen=True)
class Site:
    live: LiveServer
    data_dir: Path
    database: ProxiedDatabase
    user: str
    redis_prefix: str = ""

    def forbidden(self) -> list[str]:
        """Backend details no answer may show."""
        db = self.database
        words = [str(db.proxy.port), str(db.upstream_port), db.url.rsplit("/", 1)[1]]
        return [*words, "postgres@", str(self.data_dir), self.redis_prefix]


@contextmanager
def _site(
    tmp_path_factory: pytest.TempPathFactory,
    database: ProxiedDatabase,
    user: str,
    extra: dict[str, str],
) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("serve") / "data"
    data.mkdir()
    env = server_env({"BASTION_DATABASE_URL": database.url, **extra})
    with live_server(data, env) as live:
        create_user(live, user, "admin")
        yield Site(live, data, database, user, extra.get("BASTION_REDIS_PREFIX", ""))


@pytest.fixture(scope="module")
def redis_sessions_site(
    tmp_path_factory: pytest.TempPathFactory,
    proxied_database: ProxiedDatabase,
    redis_url: str,
    redis_prefix: str,
) -> Iterator[Site]:
    """Users in PostgreSQL (through the proxy); sessions, cache and limits in Redis."""
    extra = {
        "BASTION_REDIS_URL": redis_url,
        "BASTION_REDIS_PREFIX": f"{redis_prefix}:faults-{secrets.token_hex(4)}",
    }
    with _site(tmp_path_factory, proxied_database, "alice", extra) as site:
        yield site


@pytest.fixture(scope="module")
def sql_sessions_site(
    tmp_path_factory: pytest.TempPathFactory, proxied_database: ProxiedDatabase
) -> Iterator[Site]:
    """Everything in PostgreSQL (through the proxy): users and sessions; no Redis."""
    extra = {"BASTION_SESSION_STORE": "sql"}
    with _site(tmp_path_factory, proxied_database, "bob", extra) as site:
        yield site


@contextmanager
def postgres_unreachable(proxy: TcpProxy, how: str) -> Iterator[None]:
    """The database cannot be reached (``how``: "cut" or "silence"); restored on exit."""
    if how == "cut":
        proxy.cut()
    else:
        proxy.silence()
    try:
        yield
    finally:
        proxy.restore()


def _sign_in_attempt(site: Site, client: httpx.Client, watch: Watch) -> httpx.Response:
    page = watch.get(client, "/login")
    assert page.status_code == 200  # the form needs neither the database nor a store
    form = {"username": site.user, "password": PASSWORD, "csrf_token": csrf_from(page.text)}
    return watch.post(client, "/login", data=form, headers={"Origin": site.live.url})


def _password_grant(site: Site, client: httpx.Client, watch: Watch) -> httpx.Response:
    grant = {"grant_type": "password", "username": site.user, "password": PASSWORD}
    return watch.post(client, "/api/token", data=grant)


def _sign_in_works(site: Site, watch: Watch) -> bool:
    with browser(site.live) as client:
        if watch.get(client, "/readyz").status_code != 200:
            return False
        return _sign_in_attempt(site, client, watch).status_code == 303


@pytest.mark.parametrize("how", OUTAGES)
def test_sign_in_gets_503_without_the_database_while_redis_sessions_keep_working(
    redis_sessions_site: Site, how: str
) -> None:
    site = redis_sessions_site
    signed_in = sign_in(site.live, site.user)
    bearer = {"Authorization": f"Bearer {access_token(site.live, site.user)}"}
    cookie_before = signed_in.cookies[SESSION_COOKIE]
    watch = Watch()

    with postgres_unreachable(site.database.proxy, how), browser(site.live) as anonymous:
        # Signing in needs the user record: 503, and no session is issued.
        attempt = _sign_in_attempt(site, anonymous, watch)
        assert_not_signed_in(attempt)
        assert_unavailable(attempt, "database")
        tokens = _password_grant(site, anonymous, watch)
        assert_unavailable(tokens, "database")
        assert tokens.json() == {"detail": "database unavailable"}

        for client in (anonymous, signed_in):
            ready = watch.get(client, "/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "database": "down", "redis": "up"}

        # Pages and API calls that only read the session (kept in Redis) still answer.
        dashboard = watch.get(signed_in, "/dashboard")
        assert dashboard.status_code == 200
        assert f"Welcome {site.user}" in dashboard.text
        assert watch.get(signed_in, "/account/sessions").status_code == 200
        assert watch.get(signed_in, "/api/sessions").status_code == 200
        me = watch.get(anonymous, "/api/me", headers=bearer)
        assert me.status_code == 200
        assert me.json()["username"] == site.user

        # An admin page lists users from the database: 503 naming it.
        assert_unavailable(watch.get(signed_in, "/admin/users"), "database")

        # Many at once (more than the connection pool holds): bounded, never a 500.
        paths = ["/admin/users", "/admin/audit", "/dashboard"] * 6
        with ThreadPoolExecutor(max_workers=len(paths)) as pool:
            burst = list(pool.map(lambda path: watch.get(signed_in, path), paths))
        for path, answer in zip(paths, burst, strict=True):
            assert answer.status_code == (200 if path == "/dashboard" else 503), path

    assert wait_until(lambda: _sign_in_works(site, watch)) < RECOVERY_BOUND
    assert watch.get(signed_in, "/admin/users").status_code == 200
    assert signed_in.cookies[SESSION_COOKIE] == cookie_before
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
    assert "Traceback" not in server_log(site.live, site.data_dir)


@pytest.mark.parametrize("how", OUTAGES)
def test_sessions_in_the_database_get_503_while_it_is_unreachable_and_resume_after(
    sql_sessions_site: Site, how: str
) -> None:
    site = sql_sessions_site
    signed_in = sign_in(site.live, site.user)
    bearer = {"Authorization": f"Bearer {access_token(site.live, site.user)}"}
    cookie_before = signed_in.cookies[SESSION_COOKIE]
    watch = Watch()

    with postgres_unreachable(site.database.proxy, how), browser(site.live) as anonymous:
        page = watch.get(signed_in, "/dashboard")
        assert_unavailable(page, "session store")
        assert page.headers["content-type"].startswith("text/html")
        api = watch.get(anonymous, "/api/me", headers=bearer)
        assert_unavailable(api, "session store")
        assert api.json() == {"detail": "session store unavailable"}

        attempt = _sign_in_attempt(site, anonymous, watch)
        assert_not_signed_in(attempt)
        assert "unavailable" in attempt.text
        assert _password_grant(site, anonymous, watch).status_code == 503

        for client in (anonymous, signed_in):
            ready = watch.get(client, "/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable", "database": "down"}
            assert watch.get(client, "/healthz").status_code == 200

    def session_works_again() -> bool:
        page = watch.get(signed_in, "/dashboard")
        return page.status_code == 200 and f"Welcome {site.user}" in page.text

    assert wait_until(session_works_again) < RECOVERY_BOUND
    assert signed_in.cookies[SESSION_COOKIE] == cookie_before
    assert watch.get(signed_in, "/api/me").json()["username"] == site.user
    with browser(site.live) as api_client:
        assert watch.get(api_client, "/api/me", headers=bearer).status_code == 200
    assert wait_until(lambda: _sign_in_works(site, watch)) < RECOVERY_BOUND
    watch.assert_clean_errors(site.forbidden())
    assert 500 not in watch.statuses()
    assert "Traceback" not in server_log(site.live, site.data_dir)
