"""Languages: ``bastion_users.language``, nullable.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

The language a user chose for pages and emails (``en``, ``zh-CN``). Existing accounts have
chosen none (NULL): their browser's languages decide, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("bastion_users", sa.Column("language", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("bastion_users", "language")
