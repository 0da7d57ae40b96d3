"""Alembic environment for Bastion's schema.

Normally run through :mod:`bastion.migrate`, which passes an open connection in
``config.attributes["connection"]``. Without one (the plain ``alembic`` command), an async
engine is made from the ``sqlalchemy.url`` option.
"""

from __future__ import annotations

import asyncio

from alembic import context
from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from sqlalchemy.engine import Connection

import bastion.federation.models
import bastion.mfa.models
import bastion.users.models  # noqa: F401  (registers the user tables in the metadata)
from bastion.db import VERSION_TABLE, create_engine, metadata
from bastion.users.schema import is_bastion_table

config = context.config


def _bastion_tables_only(
    name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames
) -> bool:
    # Autogenerate in a database shared with an application: its tables are not ours.
    return type_ != "table" or is_bastion_table(name)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # Not Alembic's default "alembic_version": that one is the application's.
        version_table=VERSION_TABLE,
        include_name=_bastion_tables_only,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables in later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine(url: str) -> None:
    engine = create_engine(url, timeout=60.0)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _offline() -> None:
    # `alembic upgrade --sql`: print the DDL instead of running it.
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or set sqlalchemy.url")
    asyncio.run(_run_with_new_engine(url))


if context.is_offline_mode():
    _offline()
else:
    _online()
