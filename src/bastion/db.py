"""Database plumbing shared by the SQL store and the user repository."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


def create_engine(url: str, *, timeout: float = 2.0, **kwargs: Any) -> AsyncEngine:
    """An async engine whose connects and statements give up after ``timeout`` seconds."""
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
        # Seconds SQLite waits on a locked database before giving up.
        connect_args = {"timeout": timeout}
    # Never put bound values (password hashes, names) into error messages or logs.
    kwargs.setdefault("hide_parameters", True)
    engine = create_async_engine(url, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
    # SQLite leaves foreign keys off per connection (no ON DELETE CASCADE without this);
    # WAL lets readers proceed while one writer commits. In-memory databases keep "memory".
    # synchronous=NORMAL is WAL's recommended pairing: no corruption on power loss, only the
    # last commits may be lost; it saves an fsync per commit (two per sign-in).
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
