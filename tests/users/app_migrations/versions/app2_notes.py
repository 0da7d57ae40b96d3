"""Notes, owned by Bastion's users: written as ``alembic revision --autogenerate`` makes it
with the application's env.py (nothing about Bastion's own tables).

Revision ID: app2
Revises: app1
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "app2"
down_revision = "app1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_notes_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    op.create_index(op.f("ix_notes_user_id"), "notes", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_notes_user_id"), table_name="notes")
    op.drop_table("notes")
