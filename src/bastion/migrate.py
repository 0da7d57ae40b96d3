"""Apply Bastion's Alembic migrations from code (``bastion db upgrade``, ``serve`` on start).

No ``alembic.ini`` is needed: the configuration is built here and points at the migrations
shipped inside the package. Migrations run in one transaction; concurrent upgrades of one
database (several processes starting at once) wait for each other instead of colliding: on
PostgreSQL through an advisory lock, on SQLite through a lock file beside the database, taken
before the first connection (SQLite refuses, rather than waits, a second connection that
switches a fresh file to WAL while another does).

Bastion's revision lives in ``bastion_alembic_version``, beside an application's own
Alembic history in ``alembic_version``. Bastion's first release kept it in
``alembic_version``: an upgrade moves it first (:func:`adopt_legacy_revision`), and
revision 0002 gives the tables their ``bastion_`` names.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import column, event, func, inspect, select, table, text
from sqlalchemy.engine import Connection, make_url

from bastion.db import VERSION_TABLE, create_engine, sqlite_file
from bastion.files import exclusive_lock, make_private_dir

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Alembic's default version table, where Bastion's first release kept its revision.
LEGACY_VERSION_TABLE = "alembic_version"
# The revisions Bastion's first release could have recorded there.
_LEGACY_REVISIONS = frozenset({"0001"})
# The tables of Bastion's first release, and columns its `users` table had (an
# application's own `users` is unlikely to have them all, and never with `bastion_kv`).
_LEGACY_TABLES = frozenset(
    {"users", "roles", "user_roles", "audit_events", "bastion_kv", "bastion_kv_member"}
)
_LEGACY_USER_COLUMNS = frozenset(
    {"id", "username", "username_key", "email_key", "password_hash", "password_changed_at"}
)

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
    return _context(connection).get_current_revision()


def _context(connection: Connection, version_table: str = VERSION_TABLE) -> MigrationContext:
    return MigrationContext.configure(connection, opts={"version_table": version_table})


def adopt_legacy_revision(connection: Connection) -> str | None:
    """Move the revision of a database made by Bastion's first release from
    ``alembic_version`` into ``bastion_alembic_version``; returns it, or None when there
    is none to move. Run inside the migration's lock and transaction.

    Only a database whose Bastion version table holds no revision, whose
    ``alembic_version`` holds a revision of Bastion's first release, and which has that
    release's tables (``users`` with Bastion's columns, ``bastion_kv``...): an
    application's own ``users`` and ``alembic_version`` are never touched. Bastion's row
    leaves ``alembic_version``; the table goes too when that row was its only one, since
    the table was then Bastion's.
    """
    if current_revision(connection) is not None:
        return None
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if LEGACY_VERSION_TABLE not in tables or not _LEGACY_TABLES.issubset(tables):
        return None
    if not _LEGACY_USER_COLUMNS.issubset(c["name"] for c in inspector.get_columns("users")):
        return None
    heads = set(_context(connection, LEGACY_VERSION_TABLE).get_current_heads())
    found = heads & _LEGACY_REVISIONS
    if len(found) != 1:
        return None
    (revision,) = found
    _context(connection).stamp(ScriptDirectory.from_config(alembic_config()), revision)
    legacy = table(LEGACY_VERSION_TABLE, column("version_num"))
    connection.execute(legacy.delete().where(legacy.c.version_num == revision))
    if connection.scalar(select(func.count()).select_from(legacy)) == 0:
        connection.execute(text("DROP TABLE alembic_version"))
    log.info("moved Bastion's revision %s from alembic_version to %s", revision, VERSION_TABLE)
    return revision


async def database_revision(url: str, *, give_up_after: float = 2.0) -> str | None:
    """The revision of the database at ``url``; None when never migrated.

    A SQLite file that does not exist yet is reported as None, not created. Connecting
    gives up after ``give_up_after`` seconds.
    """
    sqlite_path = sqlite_file(url)
    if sqlite_path is not None and not sqlite_path.exists():
        return None
    engine = create_engine(url, timeout=give_up_after)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(current_revision)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``; a no-op when it is there already.

    For SQLite the database file (mode 0600) and its folder (0700) are created when
    missing.
    """
    await _run(url, command.upgrade, revision, adopt_legacy=True)


async def downgrade(url: str, revision: str) -> None:
    """Step the database back to ``revision`` (``"base"`` drops every Bastion table)."""
    await _run(url, command.downgrade, revision)


async def _run(url: str, action: Any, revision: str, *, adopt_legacy: bool = False) -> None:
    async with _sqlite_migration_lock(url):
        engine = create_engine(url, timeout=_MIGRATION_TIMEOUT)
        if make_url(url).get_backend_name() == "sqlite":
            _sqlite_transactional_ddl(engine.sync_engine)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(_migrate, action, revision, adopt_legacy)
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def _sqlite_migration_lock(url: str) -> AsyncIterator[None]:
    """For a SQLite file: its private folder, and ``<file>.lock`` held across processes
    from before the first connection to after the last; a no-op for other databases."""
    path = sqlite_file(url)
    if path is None:
        yield
        return
    make_private_dir(path.parent)
    lock_file = path.with_name(path.name + ".lock")
    async with exclusive_lock(lock_file, give_up_after=_MIGRATION_TIMEOUT):
        yield


def _migrate(connection: Connection, action: Any, revision: str, adopt_legacy: bool) -> None:
    if connection.dialect.name == "postgresql":
        # Held to the end of the transaction: a second migrator waits here, then finds the
        # database at head and does nothing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    if adopt_legacy:
        adopt_legacy_revision(connection)
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


__all__ = [
    "LEGACY_VERSION_TABLE",
    "MIGRATIONS_DIR",
    "adopt_legacy_revision",
    "alembic_config",
    "current_revision",
    "database_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
