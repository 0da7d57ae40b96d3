"""Apply Bastion's Alembic migrations from code (``bastion db upgrade``, ``serve`` on start).

No ``alembic.ini`` is needed: the configuration is built here and points at the migrations
shipped inside the package. Migrations run in one transaction; concurrent upgrades of one
database (several workers starting at once) wait for each other instead of colliding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url

from bastion.db import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while migrating (any constant will do; this is
# "bastion" in ASCII).
_PG_LOCK_KEY = 0x62617374696F6E

# Bounds connects and each statement; DDL and waiting for another migrator take a while.
_MIGRATION_TIMEOUT = 60.0


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for Bastion's migrations (for ``alembic.command``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal "%" (e.g. in a password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision shipped with this version of Bastion."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise RuntimeError("no migrations found")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None when never migrated); use via ``run_sync``."""
    return MigrationContext.configure(connection).get_current_revision()


async def database_revision(url: str) -> str | None:
    """The revision of the database at ``url``; None when never migrated.

    A SQLite file that does not exist yet is reported as None, not created.
    """
    sqlite_path = _sqlite_file(url)
    if sqlite_path is not None and not sqlite_path.exists():
        return None
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(current_revision)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``; a no-op when it is there already.

    For SQLite the database file and its folder are created when missing.
    """
    await _run(url, command.upgrade, revision)


async def downgrade(url: str, revision: str) -> None:
    """Step the database back to ``revision`` (``"base"`` drops every Bastion table)."""
    await _run(url, command.downgrade, revision)


async def _run(url: str, action: Any, revision: str) -> None:
    sqlite_path = _sqlite_file(url)
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, timeout=_MIGRATION_TIMEOUT)
    if make_url(url).get_backend_name() == "sqlite":
        _sqlite_transactional_ddl(engine.sync_engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, action, revision)
    finally:
        await engine.dispose()


def _migrate(connection: Connection, action: Any, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held to the end of the transaction: a second migrator waits here, then finds the
        # database at head and does nothing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = connection
    action(config, revision)


def _sqlite_transactional_ddl(sync_engine: Any) -> None:
    """Make SQLite run the migration in one real transaction, taken with a write lock.

    The sqlite3 driver only opens transactions before INSERT/UPDATE/DELETE, so DDL would
    commit statement by statement; a failed migration would leave half a schema behind,
    and two processes migrating at once would both try to create the tables.
    """

    @event.listens_for(sync_engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "database_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
