"""Fixtures for the users layer, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from bastion.clock import FakeClock
from bastion.db import create_engine
from bastion.migrate import upgrade
from bastion.users.repository import UserRepository

# Every table of bastion.db.metadata; emptied between repository tests on PostgreSQL.
_TABLES = "audit_events, user_roles, roles, users, bastion_kv_member, bastion_kv"


def _sibling(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _admin(url: str, sql: str) -> None:
    # AUTOCOMMIT: CREATE/DROP DATABASE refuse to run inside a transaction.
    engine = create_engine(url, timeout=10.0, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.backend("postgres"))]
)
def backend(request: pytest.FixtureRequest) -> str:
    """'sqlite', or the URL of the session's database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return "sqlite"
    # Resolved here, in a plain fixture: `postgres_url` runs its own event loop.
    return str(request.getfixturevalue("postgres_url"))


@pytest_asyncio.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database of this test's own (migration tests start from here)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bastion.db'}"
        return
    name = f"bastion_users_{secrets.token_hex(6)}"
    await _admin(backend, f'CREATE DATABASE "{name}"')
    try:
        yield _sibling(backend, name)
    finally:
        await _admin(backend, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _migrated_postgres(postgres_url: str) -> Iterator[str]:
    # One migrated database for all repository tests; creating one per test costs ~0.5 s.
    name = f"bastion_repo_{secrets.token_hex(6)}"
    url = _sibling(postgres_url, name)
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def migrated_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
        asyncio.run(upgrade(url))
        return url
    url = str(request.getfixturevalue("_migrated_postgres"))
    asyncio.run(_admin(url, f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def repo(migrated_url: str, clock: FakeClock) -> AsyncIterator[UserRepository]:
    """A repository on a migrated database with no rows."""
    engine = create_engine(migrated_url)
    try:
        yield UserRepository(engine, clock=clock)
    finally:
        await engine.dispose()
