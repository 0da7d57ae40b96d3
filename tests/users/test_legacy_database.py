"""A database made by Bastion's first release is brought to today's names by ``upgrade``.

That release named its tables ``users``, ``roles``, ``user_roles`` and ``audit_events`` and
kept its revision in Alembic's default ``alembic_version``. The database is made here by
the release's own DDL, frozen in ``legacy_0001_<dialect>.sql``, and filled with rows in
every table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Integer, LargeBinary, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import column, table

from bastion.db import create_engine
from bastion.migrate import database_revision, head_revision, upgrade
from bastion.users.models import UTCDateTime
from bastion.users.repository import UserRepository
from tests.users.conftest import make_sqlite_folder, on_connection, schema_differences

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
AT = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
# Old name -> today's.
RENAMED = {
    "users": "bastion_users",
    "roles": "bastion_roles",
    "user_roles": "bastion_user_roles",
    "audit_events": "bastion_audit_events",
    "bastion_kv": "bastion_kv",
    "bastion_kv_member": "bastion_kv_member",
}

# The first release's tables, as far as the rows below need them.
_users = table(
    "users",
    column("username"),
    column("username_key"),
    column("email"),
    column("email_key"),
    column("password_hash"),
    column("is_active", Boolean),
    column("created_at", UTCDateTime()),
    column("last_login_at", UTCDateTime()),
    column("password_changed_at", UTCDateTime()),
)
_roles = table("roles", column("id", Integer), column("name"))
_user_roles = table("user_roles", column("user_id", Integer), column("role_id", Integer))
_audit = table(
    "audit_events",
    column("at", UTCDateTime()),
    column("event"),
    column("user_id", Integer),
    column("username"),
    column("actor_id", Integer),
    column("ip"),
    column("user_agent"),
    column("session_ref"),
    column("detail"),
)
_kv = table("bastion_kv", column("namespace"), column("key"), column("value", LargeBinary))
_kv_member = table("bastion_kv_member", column("namespace"), column("key"), column("member"))


def _user(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "username": name,
        "username_key": name.casefold(),
        "email": None,
        "email_key": None,
        "password_hash": HASH,
        "is_active": True,
        "created_at": AT,
        "last_login_at": None,
        "password_changed_at": AT,
        **extra,
    }


def _event(event: str, user_id: int, name: str, **extra: Any) -> dict[str, Any]:
    empty = dict.fromkeys(("actor_id", "ip", "user_agent", "session_ref", "detail"))
    return {**empty, "at": AT, "event": event, "user_id": user_id, "username": name, **extra}


async def _first_release_database(url: str, roles: list[str]) -> None:
    """The first release's schema at ``url``, with rows in every table: users alice (1)
    and bob (2) (carol, 3, was deleted: no id below 4 is free), ``roles``, and
    alice's sign-in in the audit log, next to bob's disabling by alice."""
    make_sqlite_folder(url)
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    sql = (Path(__file__).parent / f"legacy_0001_{dialect}.sql").read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in filter(None, (part.strip() for part in body.split(";"))):
                await conn.exec_driver_sql(statement)
            # Ids as the release handed them out (1, 2, 3 in order), from its sequences.
            await conn.execute(
                _users.insert(),
                [
                    _user("alice", email="alice@example.org", email_key="alice@example.org",
                          last_login_at=AT),
                    _user("bob", is_active=False),
                    _user("carol"),
                ],
            )  # fmt: skip
            await conn.execute(_roles.insert(), [{"name": name} for name in roles])
            rows = await conn.execute(text("SELECT name, id FROM roles"))
            role_ids: dict[str, int] = {name: role_id for name, role_id in rows}
            await conn.execute(
                _user_roles.insert(),
                [
                    {"user_id": user_id, "role_id": role_ids[role]}
                    for user_id, role in ((1, roles[0]), (1, "staff"), (2, "staff"), (3, "staff"))
                ],
            )
            await conn.execute(
                _audit.insert(),
                [
                    _event("login.success", 1, "alice", ip="192.0.2.7", user_agent="Firefox/126",
                           session_ref="3f9a", detail='{"method": "password"}'),
                    _event("user.disabled", 2, "bob", actor_id=1),
                    _event("user.created", 3, "carol", actor_id=1),
                ],
            )  # fmt: skip
            await conn.execute(
                _kv.insert(),
                [
                    {"namespace": "session", "key": "s:1", "value": b"\x00\xffsession"},
                    {"namespace": "ratelimit", "key": "login:alice", "value": b"3"},
                ],
            )
            await conn.execute(
                _kv_member.insert(), [{"namespace": "session", "key": "user:1", "member": "s:1"}]
            )
            # Deleting carol: her role link goes with her, her audit row stays without her id.
            await conn.execute(text("DELETE FROM users WHERE id = 3"))
    finally:
        await engine.dispose()


async def _rows(url: str, tables: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of each of ``tables``, as the driver returns it, keyed by column."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = {}
            for name in tables:
                rows = (await conn.execute(text(f"SELECT * FROM {name}"))).mappings().all()
                found[name] = sorted((dict(row) for row in rows), key=repr)
            return found
    finally:
        await engine.dispose()


# Columns later revisions add: not in the first release's rows.
ADDED_LATER = frozenset(
    {"username_skeleton", "description", "email_verified_at", "webauthn_user_handle", "language"}
)


def _without_added_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ADDED_LATER} for row in rows]


@pytest.mark.parametrize("roles", [["admin", "staff"], ["auditor", "staff"]])
async def test_upgrade_keeps_every_row_and_id_of_a_first_release_database(
    database_url: str, roles: list[str]
) -> None:
    await _first_release_database(database_url, roles)
    before = await _rows(database_url, list(RENAMED))
    assert all(before.values())  # rows in every table

    await upgrade(database_url)

    after = await _rows(database_url, list(RENAMED.values()))
    for old, new in RENAMED.items():
        kept = after[new]
        if new == "bastion_roles" and "admin" not in roles:
            kept = [row for row in kept if row["name"] != "admin"]  # built in now, added
        assert _without_added_columns(kept) == before[old], new
    assert {row["name"] for row in after["bastion_roles"]} == {*roles, "admin"}
    # Nothing proved the addresses of existing accounts: they start unverified (0005).
    assert all(row["email_verified_at"] is None for row in after["bastion_users"])
    assert await database_revision(database_url) == head_revision()


async def test_a_first_release_database_works_on_after_the_upgrade(database_url: str) -> None:
    await _first_release_database(database_url, ["admin", "staff"])

    await upgrade(database_url)

    engine = create_engine(database_url)
    try:
        repo = UserRepository(engine)
        alice = await repo.get_by_username("ALICE")
        bob = await repo.get_by_username("bob")
        dave = await repo.create_user("dave", HASH, roles=["staff"])
        event_id = await _new_audit_id(repo, engine)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO bastion_roles (name) VALUES ('editor')"))
            editor = await conn.scalar(text("SELECT id FROM bastion_roles WHERE name = 'editor'"))
        await repo.delete_user(1)  # alice: her role links go, audit rows keep her name only
        async with engine.connect() as conn:
            links = (await conn.execute(text("SELECT user_id FROM bastion_user_roles"))).all()
            audit = await conn.execute(
                text("SELECT id, user_id, actor_id FROM bastion_audit_events ORDER BY id")
            )
            references = [tuple(row) for row in audit]
    finally:
        await engine.dispose()

    assert alice is not None
    assert (alice.id, alice.email, alice.roles, alice.last_login_at) == (
        1, "alice@example.org", frozenset({"admin", "staff"}), AT
    )  # fmt: skip
    assert bob is not None
    assert (bob.id, bob.is_active, bob.roles) == (2, False, frozenset({"staff"}))
    assert dave.id == 4  # after carol's 3, deleted before the upgrade
    assert editor == 3  # after admin and staff
    assert event_id == 4
    assert sorted(link.user_id for link in links) == [2, 4]
    assert references == [(1, None, None), (2, 2, None), (3, None, None), (4, 4, None)]


async def _new_audit_id(repo: UserRepository, engine: AsyncEngine) -> int:
    await repo.add_audit("user.created", user_id=4, username="dave")
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT max(id) FROM bastion_audit_events")))


async def test_a_first_release_revision_moves_to_bastions_version_table(
    database_url: str,
) -> None:
    await _first_release_database(database_url, ["admin", "staff"])
    assert await database_revision(database_url) is None  # to `bastion db upgrade`: unmigrated

    await upgrade(database_url)

    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    found = await on_connection(database_url, tables)
    assert "alembic_version" not in found  # it held only Bastion's row: Bastion's, gone
    assert not found & {"users", "roles", "user_roles", "audit_events"}
    assert await database_revision(database_url) == head_revision()


async def test_an_upgraded_first_release_database_has_the_schema_of_a_new_one(
    database_url: str, second_database_url: str
) -> None:
    await _first_release_database(database_url, ["admin", "staff"])

    await upgrade(database_url)
    await upgrade(second_database_url)

    assert await on_connection(database_url, _schema) == await on_connection(
        second_database_url, _schema
    )
    assert await on_connection(database_url, schema_differences) == []


async def test_the_application_can_take_the_first_releases_names_after_the_upgrade(
    database_url: str,
) -> None:
    await _first_release_database(database_url, ["admin", "staff"])
    await upgrade(database_url)
    serial = "INTEGER PRIMARY KEY" if database_url.startswith("sqlite") else "SERIAL PRIMARY KEY"

    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:  # on PostgreSQL, with its users_id_seq
            await conn.execute(text(f"CREATE TABLE users (id {serial}, nickname TEXT)"))
            await conn.execute(text("CREATE TABLE roles (id INTEGER PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO users (nickname) VALUES ('app user')"))
    finally:
        await engine.dispose()


def _schema(conn: Connection) -> dict[str, Any]:
    """Every name and shape of the database's tables: columns, keys, indexes, and how ids
    are made (SQLite AUTOINCREMENT, PostgreSQL sequences)."""
    inspector = inspect(conn)
    schema: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        schema[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(name)
            ],
            "primary key": inspector.get_pk_constraint(name),
            "foreign keys": sorted(inspector.get_foreign_keys(name), key=lambda fk: fk["name"]),
            "indexes": sorted(inspector.get_indexes(name), key=lambda ix: ix["name"]),
            "unique": inspector.get_unique_constraints(name),
        }
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%' ORDER BY name"
        schema["autoincrement"] = conn.execute(text(query)).scalars().all()
    else:
        query = "SELECT sequence_name FROM information_schema.sequences ORDER BY 1"
        schema["sequences"] = conn.execute(text(query)).scalars().all()
    return schema
