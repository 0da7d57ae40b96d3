"""Role descriptions: ``bastion_roles.description``, optional.

Revision ID: 0004
Revises: 0003
Create Date: 2025-06-02

Shown next to each role on the admin pages and by ``bastion roles list``. Existing roles
get none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("bastion_roles", sa.Column("description", sa.String(200), nullable=True))


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite 3.35+), like 0003's: no table rebuild.
    op.drop_column("bastion_roles", "description")
