"""Bastion on the application's own ``AsyncEngine``: one pool, which stays the application's."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.db import create_engine, same_database
from bastion.exceptions import ConfigError
from bastion.fastapi import install
from bastion.services import open_services
from bastion.settings import Settings

PASSWORD = "a shared engine password 1"


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, env="test", data_dir=tmp_path / "data", database_url=url)


async def test_services_on_the_applications_engine_use_it_and_leave_it_open(
    migrated_url: str, tmp_path: Path
) -> None:
    engine = create_engine(migrated_url)  # the application's
    pool = engine.sync_engine.pool
    try:
        services = await open_services(_settings(migrated_url, tmp_path), engine=engine)
        try:
            user = await services.users.create_user("alice", "x")
            await services.sessions.create(user.id, username="alice")  # into the SQL store
        finally:
            await services.aclose()
        async with engine.connect() as conn:
            stored = await conn.scalar(text("SELECT count(*) FROM bastion_kv"))

        assert services.engine is engine
        assert engine.sync_engine.pool is pool  # never disposed: the application's to close
        assert stored == 1
    finally:
        await engine.dispose()


async def test_install_signs_in_through_the_applications_engine(
    migrated_url: str, tmp_path: Path
) -> None:
    engine = create_engine(migrated_url)
    pool = engine.sync_engine.pool
    app = FastAPI()
    bastion = install(app, _settings(migrated_url, tmp_path), engine=engine)
    try:
        async with app.router.lifespan_context(app):
            services = bastion.services
            hashed = await services.passwords.hash_async(PASSWORD)
            await services.users.create_user("alice", hashed)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                response = await http.post(
                    "/api/token",
                    data={"grant_type": "password", "username": "alice", "password": PASSWORD},
                )
            assert services.engine is engine
        assert response.status_code == 200, response.text
        assert engine.sync_engine.pool is pool
        async with engine.connect() as conn:  # still the application's, still open
            assert await conn.scalar(text("SELECT count(*) FROM bastion_users")) == 1
    finally:
        await engine.dispose()


async def test_an_engine_on_another_database_is_refused(migrated_url: str, tmp_path: Path) -> None:
    elsewhere = make_url(migrated_url)
    elsewhere = elsewhere.set(
        database=str(tmp_path / "other.db") if elsewhere.drivername.startswith("sqlite") else "app"
    )
    engine = create_engine(elsewhere.render_as_string(hide_password=False))
    try:
        with pytest.raises(ConfigError, match="not on the database of BASTION_DATABASE_URL"):
            await open_services(_settings(migrated_url, tmp_path), engine=engine)
    finally:
        await engine.dispose()


async def test_a_sqlite_engine_without_foreign_keys_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    engine = create_async_engine(url)  # SQLite's default: foreign keys off
    try:
        with pytest.raises(ConfigError, match="leaves foreign keys off"):
            await open_services(_settings(url, tmp_path), engine=engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("sqlite+aiosqlite:////srv/app/db.sqlite", "sqlite:////srv/app/./db.sqlite", True),
        ("sqlite+aiosqlite:////srv/app/db.sqlite", "sqlite+aiosqlite:////srv/db.sqlite", False),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://", False),  # each connection its own
        ("postgresql+asyncpg://app:secret@db/app", "postgresql://app@db:5432/app?ssl=1", True),
        ("postgresql+asyncpg://app@db/app", "postgresql+asyncpg://app@db/other", False),
        ("postgresql+asyncpg://app@db/app", "postgresql+asyncpg://owner@db/app", True),
        ("postgresql+asyncpg://app@db/app", "postgresql+asyncpg://app@db2/app", False),
        ("postgresql+asyncpg://app@db/app", "sqlite+aiosqlite:////srv/app", False),
    ],
)
def test_same_database_compares_where_the_data_lives(first: str, second: str, same: bool) -> None:
    assert same_database(first, second) is same
