"""For an application whose own tables refer to Bastion's users, in one database.

Bastion owns identity: its tables (``bastion_*``) are made and changed only by its own
migrations (``bastion db upgrade``). The application keeps its profile data in its own
tables, which refer to a user by ``bastion_users.id``::

    from bastion.users.schema import users_table

    class Base(DeclarativeBase):
        pass

    users_table(Base.metadata)  # lets ForeignKey("bastion_users.id") resolve

    class Profile(Base):
        __tablename__ = "profiles"
        user_id: Mapped[int] = mapped_column(
            ForeignKey("bastion_users.id", ondelete="CASCADE"), primary_key=True
        )

and its Alembic ``env.py`` leaves Bastion's tables to Bastion::

    from bastion.users.schema import include_name, include_object

    context.configure(..., include_name=include_name, include_object=include_object)

See docs/existing-app.md.
"""

from __future__ import annotations

from typing import Any

from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from sqlalchemy import Column, Integer, MetaData, Table, event
from sqlalchemy.schema import SchemaItem

from bastion.db import TABLE_PREFIX

USERS_TABLE = "bastion_users"


class BastionTableError(RuntimeError):
    """The application's metadata was about to create one of Bastion's tables."""


def users_table(metadata: MetaData) -> Table:
    """``bastion_users`` in the application's ``metadata``, with only the column that
    foreign keys refer to (``id``), so ``ForeignKey("bastion_users.id")`` resolves.

    The table stays Bastion's: the helpers below keep the application's Alembic from
    creating, changing or dropping it, and ``metadata.create_all`` refuses to create it
    (run ``bastion db upgrade`` first) rather than make a one-column impostor that would
    stop Bastion's own migration.
    """
    existing = metadata.tables.get(USERS_TABLE)
    if existing is not None:
        return existing
    table = Table(
        USERS_TABLE,
        metadata,
        Column("id", Integer, primary_key=True),
    )
    event.listen(table, "before_create", _refuse_to_create)
    return table


def _refuse_to_create(target: Table, connection: Any, **kw: Any) -> None:
    raise BastionTableError(
        f"{target.name} does not exist yet: run `bastion db upgrade` before creating the "
        "application's tables (Bastion's migrations make it)"
    )


def is_bastion_table(name: str | None) -> bool:
    """Whether ``name`` is one of Bastion's tables (its version table included)."""
    return name is not None and name.startswith(TABLE_PREFIX)


def include_name(
    name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames
) -> bool:
    """For the application's Alembic ``env.py``: do not reflect Bastion's tables."""
    return not (type_ == "table" and is_bastion_table(name))


def include_object(
    obj: SchemaItem,
    name: str | None,
    type_: NameFilterType,
    reflected: bool,
    compare_to: SchemaItem | None,
) -> bool:
    """For the application's Alembic ``env.py``: leave Bastion's tables out of
    autogenerate, those of the database and the ``bastion_users`` of :func:`users_table`
    alike (Alembic would otherwise propose to create, change or drop them)."""
    return not (type_ == "table" and is_bastion_table(name))


__all__ = [
    "USERS_TABLE",
    "BastionTableError",
    "include_name",
    "include_object",
    "is_bastion_table",
    "users_table",
]
