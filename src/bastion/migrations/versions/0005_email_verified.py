"""E-mail verification: ``bastion_users.email_verified_at``, nullable.

Revision ID: 0005
Revises: 0004
Create Date: 2025-06-10

When the account's current address was proven by following a link sent to it. Existing
accounts start unverified (NULL): nothing proved their addresses.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "bastion_users",
        sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite 3.35+), like 0004's: no table rebuild.
    op.drop_column("bastion_users", "email_verified_at")
