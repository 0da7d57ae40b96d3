"""The application's Alembic environment: its own version table (Alembic's default) and
autogenerate blind to Bastion's tables. Runs on the connection in
``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from bastion.users.schema import include_name, include_object
from tests.users.app_migrations.models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    include_name=include_name,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
