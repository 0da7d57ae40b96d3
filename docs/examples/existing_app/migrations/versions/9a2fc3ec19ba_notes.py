"""notes

Revision ID: 9a2fc3ec19ba
Revises:
Create Date: 2026-12-03 15:20:26.645761
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a2fc3ec19ba"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # As `alembic revision --autogenerate -m notes` wrote it: the application's table,
    # nothing of Bastion's (env.py's filters), the foreign key to bastion_users included.
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["bastion_users.id"],
            name=op.f("fk_notes_owner_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notes_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notes_owner_id"))

    op.drop_table("notes")
