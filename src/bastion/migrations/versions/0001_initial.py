"""Initial schema: the SQL store's tables, users, roles (with "admin") and the audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand with the constraint names of ``bastion.db.metadata``'s naming convention,
so the schema is identical on SQLite and PostgreSQL and later migrations can refer to
constraints by name. Every table, index and constraint name starts with ``bastion_`` (or
``ix_bastion_``, ``pk_bastion_``...), so Bastion shares a database with an application.

Bastion's first release created the user tables without the prefix (``users``...): a
database made by it is brought to these names by 0002.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.migrations.initial_schema import (
    add_builtin_roles,
    create_user_tables,
    drop_user_tables,
)

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_kv",
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "key", name=op.f("pk_bastion_kv")),
    )
    op.create_index(op.f("ix_bastion_kv_expires_at"), "bastion_kv", ["expires_at"])

    op.create_table(
        "bastion_kv_member",
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("member", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "key", "member", name=op.f("pk_bastion_kv_member")),
    )
    op.create_index(op.f("ix_bastion_kv_member_expires_at"), "bastion_kv_member", ["expires_at"])

    create_user_tables()
    add_builtin_roles()


def downgrade() -> None:
    drop_user_tables()
    op.drop_table("bastion_kv_member")
    op.drop_table("bastion_kv")
