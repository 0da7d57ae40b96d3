"""Fixtures for the users layer, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

import bastion.federation.models
import bastion.mfa.models
import bastion.users.models  # noqa: F401  (the user tables join the shared metadata)
from bastion.clock import FakeClock
from bastion.db import VERSION_TABLE, create_engine, metadata, sqlite_file
from bastion.migrate import upgrade
from bastion.users.repository import UserRepository
from tests.conftest import empty_bastion_tables, fresh_database

T = TypeVar("T")


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.backend("postgres"))]
)
def backend(request: pytest.FixtureRequest) -> str:
    """'sqlite', or the URL of the session's database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return "sqlite"
    # Resolved here, in a plain fixture: `postgres_url` runs its own event loop.
    return str(request.getfixturevalue("postgres_url"))


async def on_connection(url: str, fn: Callable[[Connection], T]) -> T:
    """``fn(connection)`` on a connection to the database at ``url`` (to inspect it)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def schema_differences(conn: Connection) -> list[Any]:
    """What Alembic's autogenerate finds between the database and Bastion's models."""
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
    )
    return list(compare_metadata(context, metadata))


def make_sqlite_folder(url: str) -> None:
    """The folder of a SQLite database file, made before an engine opens it (an upgrade
    makes it itself)."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def empty_database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of an empty database: ``bastion.db`` in ``folder`` (neither made yet) on
    SQLite, a new database on the PostgreSQL server of ``backend``, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'bastion.db'}"
        return
    with fresh_database(backend) as url:
        yield url


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of this test's own (migration tests start from here)."""
    with empty_database(backend, tmp_path / "data") as url:
        yield url


@pytest.fixture
def second_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database, on the same server as ``database_url``."""
    with empty_database(backend, tmp_path / "second") as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_postgres(postgres_url: str) -> Iterator[str]:
    # One migrated database for all repository tests; creating one per test costs ~0.5 s.
    with fresh_database(postgres_url) as url:
        asyncio.run(upgrade(url))
        yield url


@pytest.fixture
def migrated_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
        asyncio.run(upgrade(url))
        return url
    url = str(request.getfixturevalue("_migrated_postgres"))
    empty_bastion_tables(url)
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
