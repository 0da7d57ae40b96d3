"""Bastion's names in a database made by its first release: ``users`` becomes
``bastion_users``, and so on for every table, index, constraint and sequence.

Revision ID: 0002
Revises: 0001
Create Date: 2025-05-01

Bastion's first release created ``users``, ``roles``, ``user_roles`` and ``audit_events``
without the ``bastion_`` prefix, and kept its revision in Alembic's default
``alembic_version``, the names an application is most likely to use itself.
:mod:`bastion.migrate` moves that revision into ``bastion_alembic_version`` first; this
revision then gives the tables and everything in them the names 0001 creates today, every
row and id kept. In a database made by today's 0001 (``bastion_users`` exists) it does
nothing, and stepping back from it changes nothing either: revision 0001 means the prefixed
names.

PostgreSQL renames in place. SQLite cannot rename constraints, so the tables are made again
under the new names (as 0001 makes them), the rows copied, the old tables dropped: children
after their parents on the way in, before them on the way out, so foreign keys (enforced on
Bastion's connections) hold at every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.migrations.initial_schema import add_builtin_roles, create_user_tables

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Old name -> new name; parents before the tables that refer to them.
TABLES = {
    "users": "bastion_users",
    "roles": "bastion_roles",
    "user_roles": "bastion_user_roles",
    "audit_events": "bastion_audit_events",
}
INDEXES = {
    "ix_users_username_key": "ix_bastion_users_username_key",
    "ix_users_email_key": "ix_bastion_users_email_key",
    "ix_roles_name": "ix_bastion_roles_name",
    "ix_user_roles_role_id": "ix_bastion_user_roles_role_id",
    "ix_audit_events_at": "ix_bastion_audit_events_at",
    "ix_audit_events_user_id": "ix_bastion_audit_events_user_id",
    "ix_audit_events_actor_id": "ix_bastion_audit_events_actor_id",
}
# Per table (new name): old constraint name -> new.
CONSTRAINTS = {
    "bastion_users": {"pk_users": "pk_bastion_users"},
    "bastion_roles": {"pk_roles": "pk_bastion_roles"},
    "bastion_user_roles": {
        "pk_user_roles": "pk_bastion_user_roles",
        "fk_user_roles_user_id_users": "fk_bastion_user_roles_user_id_bastion_users",
        "fk_user_roles_role_id_roles": "fk_bastion_user_roles_role_id_bastion_roles",
    },
    "bastion_audit_events": {
        "pk_audit_events": "pk_bastion_audit_events",
        "fk_audit_events_user_id_users": "fk_bastion_audit_events_user_id_bastion_users",
        "fk_audit_events_actor_id_users": "fk_bastion_audit_events_actor_id_bastion_users",
    },
}
# Tables whose id comes from a PostgreSQL sequence (SERIAL, BIGSERIAL).
SERIAL_TABLES = ("bastion_users", "bastion_roles", "bastion_audit_events")


def upgrade() -> None:
    if op.get_context().as_sql:
        return  # `--sql` prints the DDL of a new database, whose 0001 made the new names
    bind = op.get_bind()
    tables = set(sa.inspect(bind).get_table_names())
    if "bastion_users" in tables:
        return  # made by today's 0001
    missing = sorted(TABLES.keys() - tables)
    if missing:
        raise RuntimeError(
            "the database is at Bastion's revision 0001 but has neither bastion_users "
            f"nor the first release's tables (missing: {', '.join(missing)})"
        )
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite(bind)
    else:
        _rename_postgresql(bind)
    add_builtin_roles()


def downgrade() -> None:
    pass  # revision 0001 has the new names too


def _rename_postgresql(bind: sa.Connection) -> None:
    for old, new in TABLES.items():
        op.rename_table(old, new)
    for old, new in INDEXES.items():
        op.execute(f"ALTER INDEX {old} RENAME TO {new}")
    for table, renames in CONSTRAINTS.items():
        for old, new in renames.items():
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")
    for table in SERIAL_TABLES:
        # The name PostgreSQL gives a new table's sequence, so that an application can
        # create its own `users` (and `users_id_seq`) later.
        sequence = bind.scalar(sa.select(sa.func.pg_get_serial_sequence(table, "id")))
        if sequence is not None:  # None: an id column changed by hand, left as it is
            op.execute(f"ALTER SEQUENCE {sequence} RENAME TO {table}_id_seq")


def _rebuild_sqlite(bind: sa.Connection) -> None:
    create_user_tables()
    inspector = sa.inspect(bind)
    for old, new in TABLES.items():
        names = [column["name"] for column in inspector.get_columns(old)]
        source = sa.table(old, *(sa.column(name) for name in names))
        target = sa.table(new, *(sa.column(name) for name in names))
        op.execute(sa.insert(target).from_select(names, sa.select(*source.c)))
    # users had AUTOINCREMENT: the highest id ever handed out, its row perhaps deleted since,
    # stays the floor of new ids.
    op.execute("DELETE FROM sqlite_sequence WHERE name = 'bastion_users'")
    op.execute(
        "INSERT INTO sqlite_sequence (name, seq) "
        "SELECT 'bastion_users', seq FROM sqlite_sequence WHERE name = 'users'"
    )
    for old in reversed(TABLES):
        op.drop_table(old)
