"""Alembic migrations of the whole schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

import bastion.federation.models
import bastion.mfa.models
import bastion.users.models  # noqa: F401  (the user tables join the shared metadata)
from bastion.db import create_engine, metadata
from bastion.exceptions import UserError
from bastion.files import exclusive_lock
from bastion.migrate import (
    MIGRATIONS_DIR,
    current_revision,
    database_revision,
    downgrade,
    head_revision,
    upgrade,
)
from bastion.users.models import User, username_skeleton
from bastion.users.repository import UserRepository
from tests.users.conftest import on_connection, schema_differences

EXPECTED_TABLES = {
    "bastion_alembic_version",
    "bastion_audit_events",
    "bastion_external_identities",
    "bastion_kv",
    "bastion_kv_member",
    "bastion_passkeys",
    "bastion_recovery_codes",
    "bastion_roles",
    "bastion_totp",
    "bastion_user_roles",
    "bastion_users",
}


def _table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def test_upgrade_from_empty_creates_every_table(database_url: str) -> None:
    assert await database_revision(database_url) is None

    await upgrade(database_url)

    assert await on_connection(database_url, _table_names) == EXPECTED_TABLES
    assert set(metadata.tables) == EXPECTED_TABLES - {"bastion_alembic_version"}
    assert await database_revision(database_url) == head_revision()


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    await upgrade(database_url)

    assert await on_connection(database_url, schema_differences) == []


async def test_upgrading_twice_is_a_no_op(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO bastion_roles (name) VALUES ('survivor')"),
            )
        await upgrade(database_url)
        async with engine.connect() as conn:
            query = text("SELECT name FROM bastion_roles ORDER BY name")
            roles = (await conn.execute(query)).scalars().all()
            revision = await conn.run_sync(current_revision)
    finally:
        await engine.dispose()

    assert roles == ["admin", "survivor"]
    assert revision == head_revision()


async def test_concurrent_upgrades_wait_for_each_other(database_url: str) -> None:
    await asyncio.gather(*(upgrade(database_url) for _ in range(3)))

    assert await database_revision(database_url) == head_revision()
    assert await on_connection(database_url, schema_differences) == []


async def test_a_start_waits_for_the_process_already_migrating_a_fresh_sqlite_file(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "data" / "bastion.db"
    db_file.parent.mkdir()
    url = f"sqlite+aiosqlite:///{db_file}"
    # Another process in the middle of its first start: it holds the migration lock beside
    # the file and the fresh file's write lock, before the file is in WAL mode. SQLite
    # refuses at once, with no busy wait, a connection that asks for WAL at this moment.
    async with exclusive_lock(db_file.with_name("bastion.db.lock"), give_up_after=5):
        other = sqlite3.connect(db_file, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE first_start (x)")
        starting = asyncio.create_task(upgrade(url))
        await asyncio.sleep(0.5)  # a start that does not wait has failed by now
        waited = not starting.done()
        other.execute("ROLLBACK")
        other.close()
    await starting

    assert waited
    assert await database_revision(url) == head_revision()


# A process starting Bastion on SQLite: migrate, then read. It reads one database URL per
# line and answers with the revision it found, or the error.
_START = """
import asyncio, sys
from bastion.migrate import database_revision, upgrade

async def start(url):
    await upgrade(url)
    return await database_revision(url)

print("ready", flush=True)
for line in sys.stdin:
    try:
        print(asyncio.run(start(line.strip())), flush=True)
    except Exception as error:
        print(f"{type(error).__name__}: {error}".splitlines()[0], flush=True)
"""


@pytest.mark.slow
def test_processes_starting_at_once_on_a_fresh_sqlite_file_all_come_up(tmp_path: Path) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _START], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outcomes: list[str] = []
    try:
        for process in processes:  # imports done: the starts below race each other closely
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for attempt in range(10):
            url = f"sqlite+aiosqlite:///{tmp_path / str(attempt) / 'bastion.db'}"
            for process in processes:
                assert process.stdin is not None
                process.stdin.write(url + "\n")
                process.stdin.flush()
            for process in processes:
                assert process.stdout is not None
                outcomes.append(process.stdout.readline().strip())
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=60)

    assert outcomes == [head_revision()] * 40


async def test_constraints_carry_the_naming_convention_names(database_url: str) -> None:
    await upgrade(database_url)

    def names(conn: Connection) -> dict[str, Any]:
        inspector = inspect(conn)
        return {
            "fks": {fk["name"] for fk in inspector.get_foreign_keys("bastion_user_roles")},
            "indexes": {ix["name"] for ix in inspector.get_indexes("bastion_users")},
        }

    found = await on_connection(database_url, names)

    assert found["fks"] == {
        "fk_bastion_user_roles_user_id_bastion_users",
        "fk_bastion_user_roles_role_id_bastion_roles",
    }
    assert found["indexes"] == {
        "ix_bastion_users_username_key",
        "ix_bastion_users_email_key",
        "ix_bastion_users_username_skeleton",
        "ix_bastion_users_webauthn_user_handle",
    }


async def _users_at_0002(url: str, names: list[str]) -> None:
    """A database at revision 0002 holding users ``names`` (ids 1, 2, ... in that order)."""
    await upgrade(url, "0002")
    now = datetime.now(UTC)
    rows = [
        {
            "username": name,
            "username_key": name.casefold(),
            "password_hash": "x",
            "is_active": True,
            "created_at": now,
            "password_changed_at": now,
        }
        for name in names
    ]
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for row in rows:  # one by one: ids follow the list
                await conn.execute(insert(User).values(row))
    finally:
        await engine.dispose()


async def test_upgrade_to_0003_keeps_look_alike_accounts_and_the_oldest_guards_the_name(
    database_url: str,
) -> None:
    # Made before look-alikes were refused: "admın" has a dotless i.
    await _users_at_0002(database_url, ["admin", "bob", "adm\u0131n"])

    await upgrade(database_url)

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(User.id, User.username_skeleton).order_by(User.id)
            skeletons = (await conn.execute(query)).all()
        repo = UserRepository(engine)
        with pytest.raises(UserError, match="already exists"):
            await repo.create_user("ADM\u0130N", "x")
        younger = await repo.get_by_username("adm\u0131n")
    finally:
        await engine.dispose()

    assert skeletons == [
        (1, username_skeleton("admin")),
        (2, username_skeleton("bob")),
        (3, None),  # looks like user 1, who keeps the digest
    ]
    assert younger is not None  # the younger look-alike still signs in
    assert younger.id == 3


async def test_downgrade_from_0003_keeps_the_users(database_url: str) -> None:
    await _users_at_0002(database_url, ["alice"])
    await upgrade(database_url)

    await downgrade(database_url, "0002")

    def columns(conn: Connection) -> set[str]:
        return {column["name"] for column in inspect(conn).get_columns("bastion_users")}

    assert "username_skeleton" not in await on_connection(database_url, columns)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = text("SELECT username FROM bastion_users")
            names = (await conn.execute(query)).scalars().all()
    finally:
        await engine.dispose()
    assert names == ["alice"]


async def test_downgrade_to_base_removes_every_table(database_url: str) -> None:
    await upgrade(database_url)

    await downgrade(database_url, "base")

    assert await on_connection(database_url, _table_names) == {"bastion_alembic_version"}
    assert await database_revision(database_url) is None


async def test_unmigrated_database_has_no_revision(database_url: str) -> None:
    assert await database_revision(database_url) is None


async def test_sqlite_upgrade_creates_the_missing_data_folder(tmp_path: Path) -> None:
    db_file = tmp_path / "nested" / "data" / "bastion.db"

    await upgrade(f"sqlite+aiosqlite:///{db_file}")

    assert db_file.is_file()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
async def test_a_new_sqlite_database_and_its_folder_are_private_to_the_owner(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{folder / 'bastion.db'}"

    await upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:  # in WAL mode: -wal and -shm exist meanwhile
            await conn.execute(text("SELECT count(*) FROM bastion_users"))
            modes = {path.name: _mode(path) for path in folder.iterdir()}
    finally:
        await engine.dispose()

    assert _mode(folder) == 0o700
    assert modes == {
        "bastion.db": 0o600,
        "bastion.db-wal": 0o600,
        "bastion.db-shm": 0o600,
        "bastion.db.lock": 0o600,
    }


@pytest.mark.usefixtures("umask_022")
async def test_an_engine_creates_a_missing_sqlite_file_private(tmp_path: Path) -> None:
    db_file = tmp_path / "store.db"
    engine = create_engine(f"sqlite+aiosqlite:///{db_file}")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("CREATE TABLE t (x)"))
    finally:
        await engine.dispose()

    assert _mode(db_file) == 0o600


async def test_revision_of_a_missing_sqlite_file_is_none_without_creating_it(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "absent.db"

    assert await database_revision(f"sqlite+aiosqlite:///{db_file}") is None
    assert not db_file.exists()


async def test_sqlite_engines_enforce_foreign_keys_and_use_wal(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pragmas.db'}")
    try:
        async with engine.connect() as conn:
            foreign_keys = await conn.scalar(text("PRAGMA foreign_keys"))
            journal_mode = await conn.scalar(text("PRAGMA journal_mode"))
    finally:
        await engine.dispose()

    assert foreign_keys == 1
    assert journal_mode == "wal"


async def test_a_failed_sqlite_connect_has_finished_when_its_error_arrives(
    tmp_path: Path,
) -> None:
    # aiosqlite's worker thread would otherwise report to this event loop after the error,
    # and fail with "Event loop is closed" once the loop is gone.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'bastion.db'}")
    try:
        with pytest.raises(OperationalError, match="unable to open database file"):
            async with engine.connect():
                pass
        still_running = [t for t in threading.enumerate() if t.name.endswith("_worker_thread)")]
    finally:
        await engine.dispose()

    assert still_running == []


def test_migration_files_ship_inside_the_package() -> None:
    packaged = resources.files("bastion") / "migrations"

    assert (packaged / "script.py.mako").is_file()
    assert (packaged / "env.py").is_file()
    assert (packaged / "versions" / "0001_initial.py").is_file()
    assert (packaged / "versions" / "0002_bastion_names.py").is_file()
    assert (packaged / "versions" / "0003_username_skeleton.py").is_file()
    assert (packaged / "versions" / "0007_external_identities.py").is_file()
    assert (packaged / "initial_schema.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert head_revision() == "0008"


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
async def test_in_memory_sqlite_is_migrated_without_touching_the_disk(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    await upgrade(url)

    assert _entries(tmp_path) == []


def _entries(folder: Path) -> list[Path]:
    return list(folder.iterdir())
