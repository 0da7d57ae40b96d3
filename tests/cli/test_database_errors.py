"""A database problem is named in one line: on the real PostgreSQL server and on SQLite.

``BASTION_DEBUG=1`` adds the driver's words on that line, never a traceback, and no
output ever holds the password of the database URL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bastion.db import create_engine
from bastion.migrate import database_revision, head_revision
from bastion.settings import Settings
from tests.cli.conftest import (
    USERS_HEADER,
    Cli,
    Library,
    assert_handled_error,
    assert_ok,
    table,
)
from tests.conftest import admin_sql

# PostgreSQL trusts local connections here, so the password is never checked: it is in the
# URL only to prove that no message shows it.
PASSWORD = "hunter2-never-shown"


def url_with(url: str, **parts: Any) -> str:
    return make_url(url).set(password=PASSWORD, **parts).render_as_string(hide_password=False)


def assert_no_password(*outcomes: object) -> None:
    for outcome in outcomes:
        assert PASSWORD not in str(outcome)


# ---- PostgreSQL: whom, where, what ---------------------------------------------------------


@pytest.mark.backend("postgres")
@pytest.mark.parametrize("command", ["users list", "db upgrade"])
@pytest.mark.parametrize(
    ("parts", "cause"),
    [
        ({"username": "bastion_no_such_role"}, 'role "bastion_no_such_role" does not exist'),
        (
            {"database": "bastion_no_such_database"},
            'database "bastion_no_such_database" does not exist on 127.0.0.1:5432',
        ),
    ],
    ids=["missing-role", "missing-database"],
)
def test_a_missing_postgresql_role_or_database_is_named(
    cli: Cli, postgres_url: str, command: str, parts: dict[str, str], cause: str
) -> None:
    outcome = cli.script(
        *command.split(), env={"BASTION_DATABASE_URL": url_with(postgres_url, **parts)}
    )

    assert_handled_error(outcome, cause)
    assert_no_password(outcome)


@pytest.mark.parametrize("command", ["users list", "db upgrade", "sessions list"])
def test_a_closed_port_is_named_as_a_refused_connection(
    cli: Cli, closed_port: int, command: str
) -> None:
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{closed_port}/bastion"

    outcome = cli.invoke(*command.split(), env={"BASTION_DATABASE_URL": url})

    assert_handled_error(
        outcome, f"database unavailable: 127.0.0.1:{closed_port} refused the connection"
    )
    assert_no_password(outcome)


@pytest.mark.backend("postgres")
def test_an_unmigrated_postgresql_database_says_to_run_db_upgrade(
    cli: Cli, fresh_postgres_url: str
) -> None:
    outcome = cli.invoke("users", "list", env={"BASTION_DATABASE_URL": fresh_postgres_url})

    assert_handled_error(outcome, "the database is not migrated; run `bastion db upgrade`")


# ---- an application's database -----------------------------------------------------------

# An application's own tables under the names Bastion's first release used, and its own
# Alembic history in Alembic's default version table.
APP_SCHEMA = (
    "CREATE TABLE users (id integer PRIMARY KEY, nickname text)",
    "INSERT INTO users VALUES (1, 'app user')",
    "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('9c1f2e3d4b5a')",
)


async def _app_rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            users = await connection.execute(text("SELECT id, nickname FROM users"))
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return [tuple(row) for row in [*users, *versions]]
    finally:
        await engine.dispose()


@pytest.mark.backend("postgres")
def test_db_upgrade_beside_an_applications_users_and_alembic_version_on_postgresql(
    cli: Cli, fresh_postgres_url: str
) -> None:
    for statement in APP_SCHEMA:
        admin_sql(fresh_postgres_url, statement)

    outcome = cli.script("db", "upgrade", env={"BASTION_DATABASE_URL": fresh_postgres_url})

    assert_ok(outcome)
    assert asyncio.run(database_revision(fresh_postgres_url)) == head_revision()
    assert asyncio.run(_app_rows(fresh_postgres_url)) == [(1, "app user"), ("9c1f2e3d4b5a",)]


def test_db_upgrade_beside_an_applications_users_and_alembic_version_on_sqlite(
    cli: Cli, tmp_path: Path
) -> None:
    app_db = tmp_path / "app.db"
    with sqlite3.connect(app_db) as connection:
        for statement in APP_SCHEMA:
            connection.execute(statement)
    connection.close()
    url = f"sqlite+aiosqlite:///{app_db}"

    outcome = cli.script("db", "upgrade", env={"BASTION_DATABASE_URL": f"sqlite:///{app_db}"})

    assert_ok(outcome)
    assert asyncio.run(database_revision(url)) == head_revision()
    assert asyncio.run(_app_rows(url)) == [(1, "app user"), ("9c1f2e3d4b5a",)]


# ---- a table in the way ----------------------------------------------------------------------


@pytest.mark.backend("postgres")
def test_a_table_in_the_way_is_named_and_left_alone_on_postgresql(
    cli: Cli, fresh_postgres_url: str
) -> None:
    admin_sql(fresh_postgres_url, "CREATE TABLE bastion_users (id int, nickname text)")
    admin_sql(fresh_postgres_url, "INSERT INTO bastion_users VALUES (1, 'app user')")

    outcome = cli.script("db", "upgrade", env={"BASTION_DATABASE_URL": fresh_postgres_url})

    assert_handled_error(outcome, "cannot migrate: table bastion_users already exists")
    assert asyncio.run(database_revision(fresh_postgres_url)) is None  # nothing half-done

    async def app_rows() -> list[tuple[int, str]]:
        engine = create_engine(fresh_postgres_url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(text("SELECT id, nickname FROM bastion_users"))
                return [(row.id, row.nickname) for row in rows]
        finally:
            await engine.dispose()

    assert asyncio.run(app_rows()) == [(1, "app user")]


def test_a_table_in_the_way_is_named_on_sqlite(cli: Cli, tmp_path: Path) -> None:
    app_db = tmp_path / "app.db"
    with sqlite3.connect(app_db) as connection:
        connection.execute("CREATE TABLE bastion_users (id integer, nickname text)")
    connection.close()

    outcome = cli.script("users", "list", env={"BASTION_DATABASE_URL": f"sqlite:///{app_db}"})

    assert_handled_error(outcome, "cannot migrate: table bastion_users already exists")


# ---- URLs as other tools write them ------------------------------------------------------


@pytest.mark.backend("postgres")
@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_postgresql_url_without_a_driver_works_through_asyncpg(
    cli: Cli,
    library: Library,
    fresh_postgres_url: str,
    scheme: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As PaaS hand them out: libpq's scheme and its sslmode parameter.
    url = url_with(fresh_postgres_url, drivername=scheme, query={"sslmode": "disable"})
    monkeypatch.setenv("BASTION_DATABASE_URL", url)

    upgraded = cli.invoke("db", "upgrade")
    created = cli.invoke("users", "create", "alice", "--password-stdin", input="maple-syrup-1\n")
    listed = cli.invoke("users", "list")

    assert_ok(upgraded)
    assert_ok(created)
    assert_ok(listed)
    assert table(listed.stdout, USERS_HEADER) == [["alice", "-", "active", "-"]]
    assert library.usernames() == ["alice"]
    assert not (cli.data_dir / "bastion.db").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"mysql://root:{PASSWORD}@127.0.0.1/app", "unsupported database 'mysql'"),
        (
            f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1/app",
            "postgresql+psycopg2 is not supported: use postgresql+asyncpg",
        ),
        ("not a url", "not a database URL"),
    ],
    ids=["other-database", "synchronous-driver", "garbage"],
)
def test_a_database_url_bastion_cannot_use_is_refused_in_one_line(
    cli: Cli, url: str, message: str
) -> None:
    outcome = cli.script("users", "list", env={"BASTION_DATABASE_URL": url})

    assert_handled_error(outcome, f"invalid setting database_url: Value error, {message}")
    assert_no_password(outcome)


def test_a_refused_database_url_is_never_echoed_by_the_settings_error() -> None:
    # Outside the command line (install(app), uvicorn's log) the whole error is printed.
    with pytest.raises(ValidationError) as refused:
        Settings(database_url=f"mysql://root:{PASSWORD}@127.0.0.1/app")

    assert "unsupported database 'mysql'" in str(refused.value)
    assert_no_password(refused.value)


# ---- BASTION_DEBUG -------------------------------------------------------------------------


@pytest.mark.backend("postgres")
def test_debug_adds_the_drivers_words_on_the_same_line_without_a_traceback(
    cli: Cli, postgres_url: str
) -> None:
    url = url_with(postgres_url, database="bastion_no_such_database")

    outcome = cli.script("users", "list", env={"BASTION_DATABASE_URL": url, "BASTION_DEBUG": "1"})

    line = assert_handled_error(outcome, 'database "bastion_no_such_database" does not exist')
    assert "[asyncpg.exceptions.InvalidCatalogNameError: " in line
    assert_no_password(outcome)


def test_debug_shows_the_drivers_words_for_sqlite_too(cli: Cli, tmp_path: Path) -> None:
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("these are not the tables you are looking for\n" * 100)
    env = {"BASTION_DATABASE_URL": f"sqlite+aiosqlite:///{not_a_database}"}

    plain = cli.invoke("users", "list", env=env)
    debug = cli.invoke("users", "list", env={**env, "BASTION_DEBUG": "1"})

    assert_handled_error(plain, f"{not_a_database} is not a SQLite database")
    line = assert_handled_error(debug, f"{not_a_database} is not a SQLite database")
    assert "[sqlite3.DatabaseError: file is not a database]" in line
