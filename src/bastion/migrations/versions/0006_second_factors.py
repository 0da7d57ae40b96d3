"""Second factors: ``bastion_totp``, ``bastion_recovery_codes``, ``bastion_passkeys``, and
``bastion_users.webauthn_user_handle``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

New tables only, and one nullable column: no existing row changes. Users have no second
factor until they enrol one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _owner() -> sa.Column[int]:
    return sa.Column("user_id", sa.Integer(), nullable=False)


def _owner_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"],
        ["bastion_users.id"],
        name=op.f(f"fk_{table}_user_id_bastion_users"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.add_column("bastion_users", sa.Column("webauthn_user_handle", sa.String(86), nullable=True))
    op.create_index(
        op.f("ix_bastion_users_webauthn_user_handle"),
        "bastion_users",
        ["webauthn_user_handle"],
        unique=True,
    )
    op.create_table(
        "bastion_totp",
        _owner(),
        sa.Column("secret", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        _owner_fk("bastion_totp"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_bastion_totp")),
    )
    op.create_table(
        "bastion_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        _owner(),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        _owner_fk("bastion_recovery_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_recovery_codes")),
        sa.UniqueConstraint("user_id", "code_hash", name=op.f("uq_bastion_recovery_codes_user_id")),
    )
    op.create_index(
        op.f("ix_bastion_recovery_codes_user_id"), "bastion_recovery_codes", ["user_id"]
    )
    op.create_table(
        "bastion_passkeys",
        sa.Column("id", sa.Integer(), nullable=False),
        _owner(),
        sa.Column("credential_id", sa.String(1400), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("transports", sa.String(200), nullable=True),
        sa.Column("aaguid", sa.String(36), nullable=True),
        sa.Column("backup_eligible", sa.Boolean(), nullable=False),
        sa.Column("backed_up", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        _owner_fk("bastion_passkeys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bastion_passkeys")),
    )
    op.create_index(op.f("ix_bastion_passkeys_user_id"), "bastion_passkeys", ["user_id"])
    op.create_index(
        op.f("ix_bastion_passkeys_credential_id"),
        "bastion_passkeys",
        ["credential_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("bastion_passkeys")
    op.drop_table("bastion_recovery_codes")
    op.drop_table("bastion_totp")
    op.drop_index(op.f("ix_bastion_users_webauthn_user_handle"), table_name="bastion_users")
    op.drop_column("bastion_users", "webauthn_user_handle")
