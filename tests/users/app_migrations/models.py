"""The application's tables: its own ``users`` and ``notes`` owned by Bastion's users."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, Text

from bastion.users.schema import users_table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
users_table(metadata)  # Bastion's, so that the foreign key below resolves

members = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("nickname", String(50), nullable=False),
)

notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    # A user's notes go with the user, whoever deletes them (the admin pages, the CLI).
    Column(
        "user_id",
        Integer,
        ForeignKey("bastion_users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("body", Text, nullable=False),
)
