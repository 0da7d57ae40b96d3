"""Fault-test fixtures: backends of the test's own that can be broken on purpose, and a
watcher that checks every answer given during an outage.

The shared PostgreSQL and Redis servers are never stopped: Redis faults use a private
``redis-server`` (:func:`tests.faults.servers.redis_server`), database faults put a TCP
proxy between Bastion and PostgreSQL and cut or silence it. Missing servers skip locally
and fail under ``CI=true`` (:func:`tests.conftest.backend_missing`).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url

from bastion.fastapi.errors import unavailable_message
from bastion.services import open_services
from bastion.settings import Settings
from tests.conftest import backend_missing, fresh_database
from tests.e2e.conftest import csrf_from
from tests.faults.servers import RedisServer, TcpProxy, redis_server, tcp_proxy
from tests.live import BASTION, LiveServer
from tests.live import server_env as live_env
from tests.roles import define_roles

STORE_TIMEOUT = 1.0
"""``BASTION_STORE_TIMEOUT`` of every server under test, in seconds."""

ANSWER_BOUND = 2 * STORE_TIMEOUT + 1.0
"""Longest an answer may take during an outage. A call gives up after the store timeout,
but dropping a pooled database connection that hung costs up to one more timeout (see
docs/operations.md); the last second is slack for a busy test machine."""

RECOVERY_BOUND = 10.0
"""Seconds within which service must resume once the backend is back."""

HTTP_TIMEOUT = 15.0
PASSWORD = "fault tolerant password 1"
SESSION_COOKIE = "bastion_session"

# What no error body may ever contain: backend URLs, driver and SQL words, code paths.
ALWAYS_FORBIDDEN = (
    "://",
    "postgresql",
    "asyncpg",
    "sqlalchemy",
    "SELECT",
    "INSERT",
    "UPDATE ",
    "bastion_kv",
    "Traceback",
    'File "',
    ".py",
    "site-packages",
    tempfile.gettempdir(),
    "127.0.0.1",
)


def server_env(extra: dict[str, str]) -> dict[str, str]:
    """Settings common to every server under test, plus ``extra``."""
    return {"BASTION_STORE_TIMEOUT": f"{STORE_TIMEOUT:g}", **extra}


def server_log(live: LiveServer, data_dir: Path) -> str:
    """What ``bastion serve`` wrote so far (tests.live keeps it next to the data folder)."""
    port = urlsplit(live.url).port
    return (data_dir.parent / f"serve-{port}.log").read_text(errors="replace")


def create_user(live: LiveServer, name: str, *roles: str) -> None:
    """Adds a user through Bastion's services on the server's own settings, in this process
    (a ``bastion users create`` run costs seconds of imports on a busy machine)."""
    values: dict[str, Any] = {
        key.removeprefix("BASTION_").lower(): value
        for key, value in live.env.items()
        if key.startswith("BASTION_")
    }
    settings = Settings(_env_file=None, **values)

    async def run() -> None:
        services = await open_services(settings)
        try:
            hashed = await services.passwords.hash_async(PASSWORD)
            await define_roles(services.users, roles)
            await services.users.create_user(name, hashed, roles=roles)
        finally:
            await services.aclose()

    asyncio.run(run())


def browser(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=live.url, timeout=HTTP_TIMEOUT, follow_redirects=False)


def sign_in(live: LiveServer, username: str) -> httpx.Client:
    """A browser signed in through the login form; it keeps its cookies."""
    client = browser(live)
    page = client.get("/login")
    form = {"username": username, "password": PASSWORD, "csrf_token": csrf_from(page.text)}
    answer = client.post("/login", data=form, headers={"Origin": live.url})
    assert answer.status_code == 303, answer.text
    assert client.cookies.get(SESSION_COOKIE)
    return client


def access_token(live: LiveServer, username: str) -> str:
    grant = {"grant_type": "password", "username": username, "password": PASSWORD}
    answer = httpx.post(f"{live.url}/api/token", data=grant, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def wait_until(ready: Callable[[], bool], within: float = RECOVERY_BOUND) -> float:
    """Poll ``ready`` until it holds; seconds it took. Fails after ``within`` seconds."""
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > within:
            pytest.fail(f"not recovered within {within:g} s")
        time.sleep(0.2)
    return time.monotonic() - started


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    seconds: float
    text: str
    set_cookies: tuple[str, ...]


@dataclass
class Watch:
    """Sends requests during an outage and keeps every answer.

    Each answer is checked as it arrives: never a 500, and within :data:`ANSWER_BOUND`.
    :meth:`assert_clean_errors` then scans every error body for leaked internals.
    """

    answers: list[Answer] = field(default_factory=list)

    def send(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        response = client.request(method, path, **kwargs)
        seconds = time.monotonic() - started
        answer = Answer(
            method,
            path,
            response.status_code,
            seconds,
            response.text,
            tuple(response.headers.get_list("set-cookie")),
        )
        self.answers.append(answer)
        assert response.status_code < 500 or response.status_code == 503, answer
        assert seconds < ANSWER_BOUND, f"{method} {path} took {seconds:.2f} s"
        return response

    def get(self, client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
        return self.send(client, "GET", path, **kwargs)

    def post(self, client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
        return self.send(client, "POST", path, **kwargs)

    def statuses(self) -> list[int]:
        return [a.status for a in self.answers]

    def assert_clean_errors(self, forbidden: Iterable[str]) -> None:
        """No 5xx body names a URL, port, key, SQL, path or traceback; no 503 touches the
        session cookie."""
        words = [w for w in (*ALWAYS_FORBIDDEN, *forbidden) if w]
        errors = [a for a in self.answers if a.status >= 500]
        assert errors, "the outage produced no error answer at all"
        for answer in errors:
            for word in words:
                assert word not in answer.text, (word, answer)
            assert not any(SESSION_COOKIE in c for c in answer.set_cookies), answer


def assert_unavailable(response: httpx.Response, component: str) -> None:
    """A 503 with Retry-After that names ``component`` (JSON: "<component> unavailable"; a
    page: its sentence about it) and leaves the session cookie alone."""
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers.get("retry-after", "").isdigit(), response.headers
    if response.headers.get("content-type", "").startswith("text/html"):
        assert str(unavailable_message(component)) in response.text, response.text[:300]
    else:
        assert f"{component} unavailable" in response.text, response.text[:300]
    assert not any(SESSION_COOKIE in c for c in response.headers.get_list("set-cookie"))


def assert_not_signed_in(response: httpx.Response) -> None:
    """A login attempt during an outage: no redirect into the site, no session cookie."""
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert "location" not in response.headers
    for cookie in response.headers.get_list("set-cookie"):
        name, _, value = cookie.partition(";")[0].partition("=")
        assert not (name == SESSION_COOKIE and value), cookie


# -- backends --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own, killed afterwards whatever happened."""
    if shutil.which("redis-server") is None:
        backend_missing("redis-server is not installed")
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@dataclass(frozen=True)
class ProxiedDatabase:
    """An empty database of its own on the shared server, reached through ``proxy``."""

    url: str
    proxy: TcpProxy
    upstream_port: int


@pytest.fixture(scope="module")
def proxied_database(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxiedDatabase]:
    """A fresh database next to the ``postgres_url`` one, migrated with ``bastion db
    upgrade`` and reached through a proxy of this module's own; afterwards the proxy closes
    and the database is dropped."""
    direct = make_url(postgres_url)
    upstream = (direct.host or "127.0.0.1", direct.port or 5432)
    with fresh_database(postgres_url) as fresh, tcp_proxy(*upstream) as proxy:
        url = make_url(fresh).set(host="127.0.0.1", port=proxy.port)
        rendered = url.render_as_string(hide_password=False)
        database = ProxiedDatabase(rendered, proxy, upstream[1])
        env = live_env(tmp_path_factory.mktemp("migrate"), {"BASTION_DATABASE_URL": database.url})
        migrated = subprocess.run(
            [BASTION, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
        )
        assert migrated.returncode == 0, migrated.stderr
        yield database
