"""End-to-end fixtures: the reference app over ASGI, on every session store and both databases.

Each session-store variant also fixes the database, so every test runs on SQLite and on
PostgreSQL without doubling the suite: ``sql`` and ``memory`` keep the embedded SQLite file,
``redis`` (the usual production pairing) uses the real PostgreSQL server. Test ids name both,
e.g. ``test_login[redis-postgresql]``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from bastion.fastapi.install import Bastion
from bastion.migrate import upgrade
from bastion.settings import Settings
from bastion.webapp.app import create_app
from tests.conftest import empty_bastion_tables, fresh_database
from tests.roles import define_roles

BASE = "http://testserver"
ORIGIN = {"Origin": BASE}
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PASSWORD = "correct horse battery staple"


@dataclass
class Site:
    """The app under test, its Bastion object and helpers to drive it."""

    app: FastAPI
    bastion: Bastion

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=self.app, client=kwargs.pop("client", ("203.0.113.7", 5000))
        )
        return httpx.AsyncClient(transport=transport, base_url=BASE, **kwargs)

    async def create_user(
        self,
        name: str,
        password: str = PASSWORD,
        *,
        roles: tuple[str, ...] = (),
        email: str | None = None,
    ) -> int:
        services = self.bastion.services
        hashed = await services.passwords.hash_async(password)
        await define_roles(services.users, roles)
        user = await services.users.create_user(name, hashed, roles=roles, email=email)
        return int(user.id)


_FORM_ERROR = re.compile(r'<div class="alert alert-error" role="alert"[^>]*>(.*?)</div>', re.S)
_HIDDEN = re.compile(r'<span class="visually-hidden">.*?</span>', re.S)


def form_error(html: str) -> str | None:
    """The text of a page's form error (the error summary), without its hidden "Error:"
    prefix, or None when the page shows none."""
    match = _FORM_ERROR.search(html)
    if match is None:
        return None
    return _HIDDEN.sub("", match.group(1)).strip()


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "page has no csrf_token field"
    return match.group(1)


async def login(
    client: httpx.AsyncClient,
    username: str,
    password: str = PASSWORD,
    *,
    remember: bool = False,
    next_path: str | None = None,
) -> httpx.Response:
    page = await client.get("/login")
    form = {"username": username, "password": password, "csrf_token": csrf_from(page.text)}
    if remember:
        form["remember"] = "on"
    if next_path is not None:
        form["next"] = next_path
    return await client.post("/login", data=form, headers=ORIGIN)


async def csrf_token(client: httpx.AsyncClient, path: str = "/dashboard") -> str:
    return csrf_from((await client.get(path)).text)


async def site_state(site: Site) -> tuple[Any, ...]:
    """Everything a form route could change: users (password hash, state, roles, last
    login), every live session (with its roles and CSRF secret) and the audit log."""
    services = site.bastion.services
    users = await services.users.list_users(None, 0, 100)
    sessions = sorted(
        (s.key, s.user_id, s.roles, s.csrf_secret) for s in await services.sessions.list_all()
    )
    return users, sessions, await services.users.count_audit()


def assert_refused(response: httpx.Response) -> None:
    """A CSRF refusal: 403 and no cookie set (no new session, no cleared one)."""
    assert response.status_code == 403, response.text
    assert "CSRF" in response.text
    assert response.headers.get_list("set-cookie") == []


# The database each session-store variant runs on.
DATABASE_OF_STORE = {"sql": "sqlite", "memory": "sqlite", "redis": "postgresql"}


def store_params(*kinds: str) -> list[Any]:
    """``store_kind`` values with ids naming the store and its database (``redis-postgresql``),
    for tests that parametrize ``store_kind`` themselves."""
    params = []
    for kind in kinds:
        database = DATABASE_OF_STORE[kind]
        marks = [pytest.mark.backend("redis"), pytest.mark.backend("postgres")]
        params.append(
            pytest.param(kind, id=f"{kind}-{database}", marks=marks if kind == "redis" else [])
        )
    return params


def _store_settings(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        return {
            "redis_url": url,
            "redis_prefix": f"{prefix}:{secrets.token_hex(4)}",
            "cache_store": "memory",
            "ratelimit_store": "memory",
        }
    return {"session_store": kind}


@pytest.fixture(params=store_params("sql", "memory", "redis"))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_kind(store_kind: str) -> str:
    """``"sqlite"`` or ``"postgresql"``: the database this test's sites use."""
    return DATABASE_OF_STORE[store_kind]


@pytest.fixture(scope="session")
def e2e_postgres_url(postgres_url: str) -> Iterator[str]:
    """One migrated PostgreSQL database for the e2e tests of this run (per xdist worker)."""
    with fresh_database(postgres_url) as url:
        asyncio.run(upgrade(url))
        yield url


def _database_settings(database: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A PostgreSQL test starts on empty tables (as a SQLite test gets a new file): emptying
    them is much cheaper than a database per test, and the schema stays migrated."""
    if database == "sqlite":
        return {}
    url = str(request.getfixturevalue("e2e_postgres_url"))
    empty_bastion_tables(url)
    return {"database_url": url}


MakeSettings = Callable[..., Settings]
SiteFactory = Callable[[Settings], Awaitable["Site"]]


@pytest.fixture
def make_settings(
    tmp_path: Path, store_kind: str, database_kind: str, request: pytest.FixtureRequest
) -> Callable[..., Settings]:
    database = _database_settings(database_kind, request)

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "test",
            "data_dir": tmp_path / "data",
            **database,
            **_store_settings(store_kind, request),
            **overrides,
        }
        return Settings(**values)

    return build


@pytest_asyncio.fixture
async def site_factory() -> AsyncIterator[SiteFactory]:
    stack: list[Any] = []

    async def start(settings: Settings) -> Site:
        app = create_app(settings)
        bastion: Bastion = app.state.bastion
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        stack.append(lifespan)
        return Site(app, bastion)

    yield start
    for lifespan in reversed(stack):
        await lifespan.__aexit__(None, None, None)


@pytest_asyncio.fixture
async def site(site_factory: SiteFactory, make_settings: MakeSettings) -> Site:
    result: Site = await site_factory(make_settings())
    return result


@pytest_asyncio.fixture
async def client(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with site.client() as http:
        yield http
