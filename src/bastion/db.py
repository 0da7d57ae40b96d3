"""Database plumbing shared by the SQL store and the user repository."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bastion.files import create_private_file

# Longest wait, seconds, for aiosqlite's worker thread to stop after a failed connect (it
# has only to close a file that did not open).
_THREAD_JOIN_TIMEOUT = 5.0

# The async drivers Bastion ships with, by database.
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}

# Every table of Bastion's starts with TABLE_PREFIX (its indexes and constraints too, by the
# naming convention below), and Alembic keeps Bastion's revision in VERSION_TABLE: Bastion
# shares a database with an application's own tables and own Alembic history.
TABLE_PREFIX = "bastion_"
VERSION_TABLE = "bastion_alembic_version"

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Key-value rows of the SQL store. `expires_at` is epoch seconds; NULL never expires.
kv_table = Table(
    "bastion_kv",
    metadata,
    Column("namespace", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("expires_at", Float, nullable=True, index=True),
)

# Set members of the SQL store (the per-user session index). The set's expiry is kept on
# every member row of the set.
kv_member_table = Table(
    "bastion_kv_member",
    metadata,
    Column("namespace", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("member", String(255), primary_key=True),
    Column("expires_at", Float, nullable=True, index=True),
)


def normalize_url(url: str) -> str:
    """``url`` with the async driver Bastion uses, as other tools accept database URLs.

    ``postgres://`` and ``postgresql://`` (libpq style, as Heroku and many PaaS hand them
    out) mean PostgreSQL through asyncpg, with libpq's ``sslmode`` renamed to asyncpg's
    ``ssl`` (same values); ``sqlite://`` means aiosqlite. A URL naming another database or
    a synchronous driver is refused with a ValueError whose message never holds the URL
    (it may carry a password).
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("not a database URL (want postgresql://... or sqlite:///...)") from None
    backend = "postgresql" if parsed.get_backend_name() == "postgres" else parsed.get_backend_name()
    driver = ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise ValueError(f"unsupported database {backend!r}: use PostgreSQL or SQLite")
    given = parsed.get_driver_name() if "+" in parsed.drivername else driver
    if given != driver:
        raise ValueError(f"{backend}+{given} is not supported: use {backend}+{driver}")
    normalized = parsed.set(drivername=f"{backend}+{driver}")
    if backend == "postgresql" and "sslmode" in normalized.query:
        query = dict(normalized.query)
        query.setdefault("ssl", query.pop("sslmode"))
        normalized = normalized.set(query=query)
    if normalized == parsed:
        return url  # untouched, byte for byte
    return normalized.render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def same_database(first: str | URL, second: str | URL) -> bool:
    """Whether two URLs name one database, whatever their user, driver and options.

    In-memory SQLite databases are never the same: each connection has its own.
    """
    one, other = make_url(first), make_url(second)
    backend = one.get_backend_name()
    if backend != other.get_backend_name():
        return False
    if backend == "sqlite":
        one_file = sqlite_file(one.render_as_string(hide_password=False))
        other_file = sqlite_file(other.render_as_string(hide_password=False))
        if one_file is None or other_file is None:
            return False
        return one_file.resolve() == other_file.resolve()
    return _server_database(one) == _server_database(other)


def _server_database(url: URL) -> tuple[str, int, str | None]:
    # Not the user: the application may sign in with another role than the migrations.
    return (url.host or "localhost", url.port or 5432, url.database)


def create_engine(url: str, *, timeout: float = 2.0, **kwargs: Any) -> AsyncEngine:
    """An async engine whose connects and statements give up after ``timeout`` seconds.

    A SQLite database file is created with mode 0600 (its -wal and -shm files take the
    same mode), and waits ``timeout`` seconds on another connection's lock.
    """
    backend = make_url(url).get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args = {
            "timeout": timeout,
            "command_timeout": timeout,
            "server_settings": {"statement_timeout": str(int(timeout * 1000))},
        }
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_timeout", timeout)
    elif backend == "sqlite":
        # sqlite3 sets this busy timeout as it opens the file, before any statement runs.
        connect_args = {"timeout": timeout}
    # Never put bound values (password hashes, names) into error messages or logs.
    kwargs.setdefault("hide_parameters", True)
    engine = create_async_engine(url, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        _connect_sqlite_through(engine, sqlite_file(url))
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def _connect_sqlite_through(engine: AsyncEngine, path: Path | None) -> None:
    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if path is not None:
            # SQLite would create a missing file with 0644 under the usual umask; made here
            # first it keeps 0600, and SQLite gives its -wal and -shm files the same mode.
            create_private_file(path)
        return dialect.loaded_dbapi.connect(*cargs, async_creator_fn=_open_aiosqlite, **cparams)


async def _open_aiosqlite(*args: Any, **kwargs: Any) -> Any:
    """aiosqlite's connect, except that a failed or cancelled connect leaves nothing running.

    aiosqlite opens the file on a worker thread; when that fails (a missing folder, a
    database outage) or the caller gives up, it stops the thread without waiting, and the
    thread reports its stop to the event loop afterwards, possibly after that loop has
    closed ("RuntimeError: Event loop is closed" in the thread). Waiting for the thread
    before the error goes on means every connect is finished when it returns.
    """
    import aiosqlite

    connecting = aiosqlite.connect(*args, **kwargs)
    # The worker thread (before aiosqlite 0.22 the connection itself was the thread).
    worker = cast(threading.Thread, getattr(connecting, "_thread", connecting))
    worker.daemon = True  # as SQLAlchemy sets it: an unclosed connection never blocks exit
    try:
        return await connecting
    except BaseException:
        if worker.is_alive():
            await asyncio.shield(asyncio.to_thread(worker.join, _THREAD_JOIN_TIMEOUT))
        raise


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
    # SQLite leaves foreign keys off per connection (no ON DELETE CASCADE without this);
    # WAL lets readers proceed while one writer commits. In-memory databases keep "memory".
    # synchronous=NORMAL is WAL's recommended pairing: no corruption on power loss, only the
    # last commits may be lost; it saves an fsync per commit (two per sign-in).
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL is a property of the file: set once, it stays. Switching needs an exclusive
        # lock that SQLite may refuse at once ("database is locked", no busy wait) while
        # another connection is switching or writing, so it is only asked for when needed.
        # Several processes on a fresh file switch it one at a time: see bastion.migrate.
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] not in ("wal", "memory"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
