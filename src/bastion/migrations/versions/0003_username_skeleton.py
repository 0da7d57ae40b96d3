"""Look-alike user names: ``bastion_users.username_skeleton``, unique.

Revision ID: 0003
Revises: 0002
Create Date: 2025-06-01

Each user gets the digest of the UTS #39 skeleton of its name key (see
``bastion.confusables``). Accounts that already look alike cannot all hold the same digest
under a unique index, and a migration must not fail on data it did not make: the oldest
account of each look-alike group (lowest id) keeps the digest, the younger ones get NULL.
NULLs never collide, and the oldest account's digest still refuses every new look-alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.users.models import username_skeleton

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_users = sa.table(
    "bastion_users",
    sa.column("id", sa.Integer()),
    sa.column("username_key", sa.String(150)),
    sa.column("username_skeleton", sa.String(64)),
)


def upgrade() -> None:
    op.add_column("bastion_users", sa.Column("username_skeleton", sa.String(64), nullable=True))
    connection = op.get_bind()
    taken: set[str] = set()
    rows = connection.execute(sa.select(_users.c.id, _users.c.username_key).order_by(_users.c.id))
    updates = []
    for user_id, key in rows.all():
        digest = username_skeleton(key)
        if digest not in taken:
            taken.add(digest)
            updates.append({"user_id": user_id, "digest": digest})
    if updates:
        connection.execute(
            _users.update()
            .where(_users.c.id == sa.bindparam("user_id"))
            .values(username_skeleton=sa.bindparam("digest")),
            updates,
        )
    op.create_index(
        op.f("ix_bastion_users_username_skeleton"),
        "bastion_users",
        ["username_skeleton"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_bastion_users_username_skeleton"), table_name="bastion_users")
    # A plain ALTER TABLE (SQLite 3.35+): batch mode would rebuild the table from its
    # reflection and lose SQLite's AUTOINCREMENT.
    op.drop_column("bastion_users", "username_skeleton")
