"""The user tables as revision 0001 creates them, shared by revisions 0001 and 0002.

0001 creates them in a new database. 0002 creates them in a SQLite database made before
Bastion's tables had the ``bastion_`` prefix and copies the rows across, since SQLite cannot
rename constraints. Frozen with revision 0001: later revisions change these tables in their
own files, never here. Constraint and index names are those of ``bastion.db.metadata``'s
naming convention, so the schema is the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Roles every database has from the start: the admin pages require "admin".
BUILTIN_ROLES = ("admin",)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def create_user_tables() -> None:
    """Create bastion_users, bastion_roles, bastion_user_roles and bastion_audit_events."""
    op.create_table(
        "bastion_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("username_key", sa.String(150), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("email_key", sa.String(254), nullable=True),
        sa.Column("password_hash", sa.String(1024), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("last_login_at", _utc(), nullable=True),
        sa.Column("password_changed_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_users")),
        # SQLite AUTOINCREMENT: ids of deleted users are never handed out again.
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_bastion_users_username_key"), "bastion_users", ["username_key"], unique=True
    )
    op.create_index(op.f("ix_bastion_users_email_key"), "bastion_users", ["email_key"], unique=True)

    op.create_table(
        "bastion_roles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_roles")),
    )
    op.create_index(op.f("ix_bastion_roles_name"), "bastion_roles", ["name"], unique=True)

    op.create_table(
        "bastion_user_roles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_bastion_user_roles_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["role_id"],
            ["bastion_roles.id"],
            name=op.f("fk_bastion_user_roles_role_id_bastion_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "role_id", name=op.f("pk_bastion_user_roles")),
    )
    op.create_index(op.f("ix_bastion_user_roles_role_id"), "bastion_user_roles", ["role_id"])

    op.create_table(
        "bastion_audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("session_ref", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_bastion_audit_events_user_id_bastion_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["bastion_users.id"],
            name=op.f("fk_bastion_audit_events_actor_id_bastion_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_audit_events")),
    )
    op.create_index(op.f("ix_bastion_audit_events_at"), "bastion_audit_events", ["at"])
    op.create_index(op.f("ix_bastion_audit_events_user_id"), "bastion_audit_events", ["user_id"])
    op.create_index(op.f("ix_bastion_audit_events_actor_id"), "bastion_audit_events", ["actor_id"])


def add_builtin_roles() -> None:
    """Add the built-in roles that bastion_roles does not hold yet."""
    for name in BUILTIN_ROLES:
        op.execute(
            sa.text(
                "INSERT INTO bastion_roles (name) SELECT :name WHERE NOT EXISTS "
                "(SELECT 1 FROM bastion_roles WHERE name = :name)"
            ).bindparams(name=name)
        )


def drop_user_tables() -> None:
    """Drop the tables of :func:`create_user_tables`, those that refer to others first."""
    for table in ("bastion_audit_events", "bastion_user_roles", "bastion_roles", "bastion_users"):
        op.drop_table(table)
