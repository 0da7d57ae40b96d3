"""Alembic's environment for the notes application: on the database Bastion uses, with
Bastion's tables left to Bastion."""

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from notes.models import Base
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.settings import Settings
from bastion.users.schema import include_name, include_object

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# --8<-- [start:url]
# BASTION_DATABASE_URL (or the embedded SQLite file of BASTION_DATA_DIR).
url = Settings().resolved_database_url
# --8<-- [end:url]


# --8<-- [start:configure]
def configure(**options: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        include_name=include_name,  # do not reflect Bastion's tables
        include_object=include_object,  # nor compare the bastion_users of users_table()
        **options,
    )
    # --8<-- [end:configure]


def run_migrations(connection: Connection) -> None:
    # SQLite cannot ALTER most things: autogenerate writes batch operations for it.
    configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:  # one transaction, committed at the end
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():  # `alembic upgrade head --sql` prints the SQL instead
    configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())
