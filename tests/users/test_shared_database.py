"""Bastion in an application's database: beside its ``users`` table and its own Alembic
history, with the application's tables referring to Bastion's users by foreign key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.db import create_engine
from bastion.migrate import database_revision, downgrade, head_revision, upgrade
from bastion.users.repository import UserRepository, UserStillReferenced
from bastion.users.schema import BastionTableError, include_name, include_object
from tests.users.app_migrations.models import metadata as app_metadata
from tests.users.app_migrations.models import notes
from tests.users.conftest import make_sqlite_folder, on_connection

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
APP_MIGRATIONS = Path(__file__).with_name("app_migrations")


async def _sql(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` in one transaction; the rows of the last one."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


def _serial(url: str) -> str:
    return "INTEGER PRIMARY KEY" if url.startswith("sqlite") else "SERIAL PRIMARY KEY"


# ---- the application's users and alembic_version ----------------------------------------


@pytest.mark.parametrize(
    "app_revision",
    [
        "9c1f2e3d4b5a",
        # The id of Bastion's first revision, by chance: still the application's, since the
        # first release's tables are not there.
        "0001",
    ],
)
async def test_upgrade_leaves_the_applications_users_and_alembic_version_untouched(
    database_url: str, app_revision: str
) -> None:
    make_sqlite_folder(database_url)
    await _sql(
        database_url,
        f"CREATE TABLE users (id {_serial(database_url)}, nickname VARCHAR(50) NOT NULL)",
        "INSERT INTO users (nickname) VALUES ('ann'), ('ben')",
        "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
        f"INSERT INTO alembic_version VALUES ('{app_revision}')",
    )

    await upgrade(database_url)

    assert await _sql(database_url, "SELECT id, nickname FROM users ORDER BY id") == [
        (1, "ann"),
        (2, "ben"),
    ]
    assert await _sql(database_url, "SELECT version_num FROM alembic_version") == [(app_revision,)]
    assert await database_revision(database_url) == head_revision()
    engine = create_engine(database_url)
    try:
        alice = await UserRepository(engine).create_user("alice", HASH)
    finally:
        await engine.dispose()
    assert alice.id == 1  # Bastion's first user, in bastion_users
    assert await _sql(database_url, "SELECT count(*) FROM users") == [(2,)]


# ---- the application's own Alembic history ------------------------------------------------


async def _app_alembic(url: str, action: Callable[..., Any], *args: Any) -> Any:
    """Run an ``alembic.command`` of the application's history on the database at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(APP_MIGRATIONS))
    engine = create_engine(url)

    def run(connection: Connection) -> Any:
        config.attributes["connection"] = connection
        return action(config, *args)

    try:
        async with engine.begin() as conn:
            return await conn.run_sync(run)
    finally:
        await engine.dispose()


def _app_changes(connection: Connection, *, filtered: bool = True) -> list[Any]:
    """What ``alembic revision --autogenerate`` would write for the application."""
    opts: dict[str, Any] = {"compare_type": True}
    if filtered:
        opts.update(include_name=include_name, include_object=include_object)
    context = MigrationContext.configure(connection, opts=opts)
    return list(compare_metadata(context, app_metadata))


def _named(changes: list[Any]) -> set[tuple[str, str]]:
    """Autogenerate's changes as (kind, what): ("add_table", "notes"), ("remove_column",
    "bastion_users.username"), ("modify", "bastion_users.id")."""
    named = set()
    for change in changes:
        if isinstance(change, list):  # changes to one column: (kind, schema, table, column...)
            named.add(("modify", f"{change[0][2]}.{change[0][3]}"))
        elif change[0].endswith("_column"):  # (kind, schema, table, column)
            named.add((change[0], f"{change[2]}.{change[3].name}"))
        else:
            named.add((change[0], change[1].name))
    return named


async def test_the_applications_alembic_and_bastions_run_side_by_side(database_url: str) -> None:
    make_sqlite_folder(database_url)
    await _app_alembic(database_url, command.upgrade, "app1")
    await _sql(database_url, "INSERT INTO users (nickname) VALUES ('ann')")

    await upgrade(database_url)
    pending = await on_connection(database_url, _app_changes)
    await _app_alembic(database_url, command.upgrade, "head")

    assert await _sql(database_url, "SELECT version_num FROM alembic_version") == [("app2",)]
    assert await database_revision(database_url) == head_revision()
    assert await _sql(database_url, "SELECT nickname FROM users") == [("ann",)]
    # Autogenerate at app1 proposed the application's next table and nothing of Bastion's;
    # at app2 it proposes nothing.
    assert _named(pending) == {("add_table", "notes"), ("add_index", "ix_notes_user_id")}
    assert await on_connection(database_url, _app_changes) == []

    await _app_alembic(database_url, command.downgrade, "base")
    assert await database_revision(database_url) == head_revision()
    await downgrade(database_url, "base")
    assert await _sql(database_url, "SELECT count(*) FROM alembic_version") == [(0,)]


async def test_without_the_filters_autogenerate_would_take_over_bastions_tables(
    database_url: str,
) -> None:
    await upgrade(database_url)
    await _app_alembic(database_url, command.upgrade, "head")

    def unfiltered(connection: Connection) -> list[Any]:
        return _app_changes(connection, filtered=False)

    changes = _named(await on_connection(database_url, unfiltered))

    # It would drop Bastion's other tables and the columns bastion_users has beyond id.
    assert ("remove_table", "bastion_kv") in changes
    assert ("remove_table", "bastion_alembic_version") in changes
    assert ("remove_column", "bastion_users.username") in changes


async def test_an_application_row_goes_with_its_bastion_user(database_url: str) -> None:
    await upgrade(database_url)
    await _app_alembic(database_url, command.upgrade, "head")
    engine = create_engine(database_url)
    try:
        repo = UserRepository(engine)
        alice = await repo.create_user("alice", HASH)
        bob = await repo.create_user("bob", HASH)
        async with engine.begin() as conn:
            await conn.execute(
                insert(notes),
                [
                    {"user_id": alice.id, "body": "alice's"},
                    {"user_id": bob.id, "body": "bob's"},
                ],
            )

        await repo.delete_user(alice.id)  # as the admin pages and `bastion users delete` do

        async with engine.connect() as conn:
            left = (await conn.execute(select(notes.c.body))).scalars().all()
    finally:
        await engine.dispose()

    assert left == ["bob's"]


async def test_a_user_the_application_still_refers_to_without_on_delete_stays(
    database_url: str,
) -> None:
    await upgrade(database_url)
    await _sql(
        database_url,
        f"CREATE TABLE invoices (id {_serial(database_url)}, "
        "user_id INTEGER NOT NULL REFERENCES bastion_users (id))",
    )
    engine = create_engine(database_url)
    try:
        repo = UserRepository(engine)
        alice = await repo.create_user("alice", HASH)
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO invoices (user_id) VALUES (:id)"), {"id": alice.id}
            )

        with pytest.raises(UserStillReferenced, match="application still holds data of this user"):
            await repo.delete_user(alice.id)
        kept = await repo.get_by_id(alice.id)
    finally:
        await engine.dispose()

    assert kept is not None


async def test_the_foreign_key_refuses_a_note_of_no_user(database_url: str) -> None:
    await upgrade(database_url)
    await _app_alembic(database_url, command.upgrade, "head")
    engine = create_engine(database_url)
    try:
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            async with engine.begin() as conn:
                await conn.execute(insert(notes).values(user_id=42, body="nobody's"))
    finally:
        await engine.dispose()


# ---- the application's metadata.create_all ---------------------------------------------


async def _create_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(app_metadata.create_all)


async def test_create_all_refuses_to_make_bastion_users_before_bastion_does(
    database_url: str,
) -> None:
    make_sqlite_folder(database_url)
    engine = create_engine(database_url)
    try:
        with pytest.raises(BastionTableError, match="run `bastion db upgrade`"):
            await _create_all(engine)
    finally:
        await engine.dispose()

    await upgrade(database_url)  # not stopped by a one-column impostor
    engine = create_engine(database_url)
    try:
        await _create_all(engine)
    finally:
        await engine.dispose()

    def columns(connection: Connection) -> int:
        return len(inspect(connection).get_columns("bastion_users"))

    assert await database_revision(database_url) == head_revision()
    assert await on_connection(database_url, columns) > 1  # Bastion's, as its migrations made it
    assert await _sql(database_url, "SELECT count(*) FROM notes") == [(0,)]
