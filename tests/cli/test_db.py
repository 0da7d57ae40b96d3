"""``bastion db upgrade`` on the embedded SQLite file and on the real PostgreSQL server."""

from __future__ import annotations

import asyncio

import pytest

from bastion.migrate import database_revision, head_revision
from tests.cli.conftest import USERS_HEADER, Cli, Library, assert_handled_error, assert_ok, table


def test_db_upgrade_migrates_a_fresh_data_dir_and_again_is_a_no_op(
    cli: Cli, library: Library
) -> None:
    url = f"sqlite+aiosqlite:///{cli.data_dir / 'bastion.db'}"

    first = cli.script("db", "upgrade")

    assert_ok(first)
    assert "up to date" in first.stdout
    assert asyncio.run(database_revision(url)) == head_revision()
    library.add_user("alice")

    again = cli.invoke("db", "upgrade")

    assert_ok(again)
    assert asyncio.run(database_revision(url)) == head_revision()
    assert library.usernames() == ["alice"]


@pytest.mark.backend("postgres")
def test_db_upgrade_then_user_commands_work_on_postgresql(
    cli: Cli, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", fresh_postgres_url)
    before = cli.invoke("users", "list")  # PostgreSQL is never migrated implicitly

    upgraded = cli.script("db", "upgrade")
    created = cli.script(
        "users", "create", "pgalice", "--role", "admin", "--password-stdin",
        input="pg-password-1\n",
    )  # fmt: skip
    listed = cli.invoke("users", "list")
    again = cli.invoke("db", "upgrade")

    assert_handled_error(before, "the database is not migrated; run `bastion db upgrade`")
    assert_ok(upgraded)
    assert asyncio.run(database_revision(fresh_postgres_url)) == head_revision()
    assert_ok(created)
    assert_ok(listed)
    assert table(listed.stdout, USERS_HEADER) == [["pgalice", "-", "active", "admin"]]
    assert_ok(again)
    assert not (cli.data_dir / "bastion.db").exists()  # nothing went to the SQLite default
