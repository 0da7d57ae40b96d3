"""External sign-in: ``bastion_external_identities``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A new table only: no existing row changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bastion_external_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["bastion_users.id"],
            name=op.f("fk_bastion_external_identities_user_id_bastion_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_external_identities")),
        sa.UniqueConstraint(
            "issuer", "subject", name=op.f("uq_bastion_external_identities_issuer")
        ),
    )
    op.create_index(
        op.f("ix_bastion_external_identities_user_id"),
        "bastion_external_identities",
        ["user_id"],
    )


def downgrade() -> None:
    op.drop_table("bastion_external_identities")
